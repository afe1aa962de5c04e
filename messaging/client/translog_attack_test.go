package client_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// The malicious server of these tests is kanald's own database and keys
// in the hands of an attacker: it writes rows straight into the database,
// signs certificates with the node's CA key and checkpoints with the
// node's log key, and rewrites what kanald answers on the way out.

// minted is a device the attacker made for someone else's account.
type minted struct {
	id      string
	key     *ecdsa.PrivateKey
	certPEM []byte
	certDER []byte
}

// mintDevice issues a device certificate for account with the node's CA
// key and writes the device into kanald's database, as identity would
// after an enrolment, but appends nothing to the log.
func mintDevice(t *testing.T, s *server, account string) *minted {
	t.Helper()
	authority, _, err := ca.LoadOrCreateDir(filepath.Join(s.DataDir, "ca"), "unused", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	m := &minted{id: "dev_minted" + fmt.Sprint(time.Now().UnixNano()%1e6), key: key}
	cert, err := authority.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: account, DeviceID: m.id, Level: ca.LevelLow, NotBefore: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	m.certDER = cert.Raw
	m.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	d := openKanaldDB(t, s)
	ctx := context.Background()
	now := time.Now().Unix()
	if _, err := d.Exec(ctx, `INSERT INTO identity_devices (id, account_id, name, level, cert_pem, cert_serial, expires_at, created_at)
		VALUES ($1, $2, 'minted', 1, $3, $4, $5, $6)`, m.id, account, string(m.certPEM), cert.SerialNumber.String(), cert.NotAfter.Unix(), now); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, `INSERT INTO identity_device_certs (serial, device_id, not_after) VALUES ($1, $2, $3)`,
		cert.SerialNumber.String(), m.id, cert.NotAfter.Unix()); err != nil {
		t.Fatal(err)
	}
	return m
}

// bundle is a complete, correctly signed claimed bundle of the minted
// device: everything a client checks passes, but the log.
func (m *minted) bundle(t *testing.T, account string) messaging.ClaimedBundle {
	t.Helper()
	id, err := keys.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spk, _ := keys.GenerateSignedPrekey(rand.Reader, 1)
	pq, _ := keys.GeneratePQPrekey(rand.Reader, 2, true)
	opk, _ := keys.GenerateOneTimePrekey(rand.Reader, 3)
	b, err := keys.NewPrekeyBundle(m.id, id, spk, pq, &opk)
	if err != nil {
		t.Fatal(err)
	}
	binding, err := keys.SignIdentity(m.key, id.Public(), m.id)
	if err != nil {
		t.Fatal(err)
	}
	return messaging.ClaimedBundle{AccountID: account, Certificate: string(m.certPEM),
		IdentityBinding: base64.RawURLEncoding.EncodeToString(binding), Bundle: *b}
}

// sdk is the minted device's own messaging client, as the attacker runs
// it, with the session token of any device (the server makes its own).
func (m *minted) sdk(t *testing.T, base, account, token string, caCert *x509.Certificate) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{BaseURL: base, Token: token, AccountID: account, DeviceID: m.id,
		DeviceKey: m.key, DeviceCertificate: m.certPEM, CA: caCert, Store: client.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// logSigner is the node's log key, read from its file.
func logSigner(t *testing.T, s *server) note.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.DataDir, "ca", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	sg, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

func refusedFor(t *testing.T, c *client.Claim, device string) error {
	t.Helper()
	for _, r := range c.Refused {
		if r.DeviceID == device {
			return r.Err
		}
	}
	t.Fatalf("device %s was not refused (bundles %d, refused %+v)", device, len(c.Bundles), c.Refused)
	return nil
}

func onlyBundleOf(t *testing.T, c *client.Claim, device string) {
	t.Helper()
	if len(c.Bundles) != 1 || c.Bundles[0].Device.DeviceID != device {
		t.Fatalf("claim accepted %d bundles, want only %s's", len(c.Bundles), device)
	}
}

// TestAttackUnloggedDeviceRefused: the server mints a device for Bob with
// the node's CA key, writes it into the database, and hands Alice its
// complete, correctly signed bundle: without an inclusion proof, or with
// the proof of Bob's real device. Alice's SDK refuses the minted bundle
// (and keeps Bob's real one), and the device list it verifies leaves the
// minted device out.
func TestAttackUnloggedDeviceRefused(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice := signUp(t, srv, "alice@example.org", false)
		bob := signUp(t, srv, "bob@example.org", true)
		if _, err := bob.SDK(t, srv.URL, client.NewMemoryStore()).Publish(ctx); err != nil {
			t.Fatal(err)
		}
		m := mintDevice(t, srv, bob.AccountID)
		fake := m.bundle(t, bob.AccountID)

		for name, withLog := range map[string]func(real *messaging.ClaimedBundle) *transparency.Attachment{
			"no proof":          func(*messaging.ClaimedBundle) *transparency.Attachment { return nil },
			"real device proof": func(real *messaging.ClaimedBundle) *transparency.Attachment { return real.Log },
		} {
			t.Run(name, func(t *testing.T) {
				proxy := tamperProxy(t, srv.URL, func(cr *messaging.ClaimResponse) {
					if len(cr.Bundles) == 1 && cr.Bundles[0].AccountID == bob.AccountID {
						f := fake
						f.Log = withLog(&cr.Bundles[0])
						cr.Bundles = append(cr.Bundles, f)
					}
				})
				sdk := alice.SDK(t, proxy, client.NewMemoryStore())
				claim, err := sdk.ClaimAccount(ctx, bob.AccountID)
				if err != nil {
					t.Fatal(err)
				}
				err = refusedFor(t, claim, m.id)
				if !errors.Is(err, client.ErrUntrusted) || !errors.Is(err, client.ErrNotLogged) {
					t.Fatalf("minted bundle refused with %v, want ErrUntrusted and ErrNotLogged", err)
				}
				onlyBundleOf(t, claim, bob.DeviceID)
			})
		}

		// The directory lists the minted device (it is in the database),
		// but the verified list does not.
		list, err := alice.SDK(t, srv.URL, client.NewMemoryStore()).Devices(ctx, bob.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Devices) != 1 || list.Devices[0].Device.DeviceID != bob.DeviceID {
			t.Fatalf("verified devices %+v, want only Bob's real one", list.Devices)
		}
		if len(list.Refused) != 1 || list.Refused[0].DeviceID != m.id || !errors.Is(list.Refused[0].Err, client.ErrNotLogged) {
			t.Fatalf("refused %+v, want the minted device as not logged", list.Refused)
		}
	})
}

// TestAttackUnloggedSenderRefused: the minted device of Bob starts a
// session with Alice (the server claims Alice's keys for it). Alice's SDK
// refuses the initial message, since the log shows no such device of
// Bob's, and starts no session; a message from Bob's real device is read.
func TestAttackUnloggedSenderRefused(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice := signUp(t, srv, "alice@example.org", false)
		bob := signUp(t, srv, "bob@example.org", true)
		aliceSDK := alice.SDK(t, srv.URL, client.NewMemoryStore())
		if _, err := aliceSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		m := mintDevice(t, srv, bob.AccountID)
		mallory := m.sdk(t, srv.URL, bob.AccountID, bob.Token, bob.CA)
		claim, err := mallory.ClaimAccount(ctx, alice.AccountID)
		if err != nil || len(claim.Bundles) != 1 {
			t.Fatalf("claim for the minted device: %v %+v", err, claim)
		}
		if err := mallory.StartSession(claim.Bundles[0]); err != nil {
			t.Fatal(err)
		}
		msg, err := mallory.Encrypt(alice.DeviceID, []byte("Hallo Alice, hier ist Bob"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := aliceSDK.Decrypt(ctx, m.id, msg)
		if !errors.Is(err, client.ErrUntrusted) || !errors.Is(err, client.ErrNotLogged) {
			t.Fatalf("message from the minted device: %q, %v; want ErrUntrusted and ErrNotLogged", pt, err)
		}
		if ok, err := aliceSDK.HasSession(m.id); err != nil || ok {
			t.Fatalf("a session with the minted device was kept: %v %v", ok, err)
		}

		bobSDK := bob.SDK(t, srv.URL, client.NewMemoryStore())
		if _, err := bobSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		talk(t, bobSDK, aliceSDK, bob.DeviceID, alice.AccountID, alice.DeviceID, "hier ist wirklich Bob")
	})
}

// rewriteProxy forwards to kanald and lets f replace the body of any
// answer to a path, as a compromised server could.
func rewriteProxy(t *testing.T, target string, f func(r *http.Request, body []byte) []byte) string {
	return rewriteResponse(t, target, func(resp *http.Response, b []byte) []byte { return f(resp.Request, b) })
}

// rewriteResponse is rewriteProxy with the whole answer at hand (status,
// headers).
func rewriteResponse(t *testing.T, target string, f func(resp *http.Response, body []byte) []byte) string {
	t.Helper()
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		b = f(resp, b)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		return nil
	}
	ts := httptest.NewServer(p)
	t.Cleanup(ts.Close)
	return ts.URL
}

// rewriteClaim is rewriteProxy for claim answers.
func rewriteClaim(f func(*messaging.ClaimResponse)) func(*http.Request, []byte) []byte {
	return func(r *http.Request, b []byte) []byte {
		if r.URL.Path != "/v1/prekeys/claim" {
			return b
		}
		var cr messaging.ClaimResponse
		if err := json.Unmarshal(b, &cr); err != nil {
			return b
		}
		f(&cr)
		out, _ := json.Marshal(&cr)
		return out
	}
}

// TestAttackForgedLogRefused: after Alice's SDK stored a checkpoint, the
// server answers with proofs and checkpoints that do not verify, or that
// fork the log (signed with the node's own log key): a proof with a
// changed hash, a checkpoint signed by another key, a checkpoint of
// another tree of the stored size, a newer checkpoint whose tree does not
// extend the stored one, a consistency proof that does not verify, and a
// checkpoint the CheckCheckpoint hook refuses. Each is refused with a
// clear error, and the stored checkpoint stays the last good one; the
// real log is accepted afterwards.
func TestAttackForgedLogRefused(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	alice := signUp(t, srv, "alice@example.org", false)
	bob := signUp(t, srv, "bob@example.org", true)
	if _, err := bob.SDK(t, srv.URL, client.NewMemoryStore()).Publish(ctx); err != nil {
		t.Fatal(err)
	}
	signer := logSigner(t, srv)
	otherKey, _, err := transparency.GenerateKey(rand.Reader, signer.Name())
	if err != nil {
		t.Fatal(err)
	}
	otherSigner, _ := note.NewSigner(otherKey)

	// Alice's store holds a checkpoint; then the log grows (Carol joins).
	store := client.NewMemoryStore()
	good := alice.SDK(t, srv.URL, store)
	claim, err := good.ClaimAccount(ctx, bob.AccountID)
	if err != nil || len(claim.Bundles) != 1 {
		t.Fatalf("good claim: %v %+v", err, claim)
	}
	signUp(t, srv, "carol@example.org", false)
	if _, err := good.UpdateLog(ctx); err != nil {
		t.Fatal(err)
	}
	stored, storedCP, err := good.LogCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}

	forge := func(size int64, hash byte, s note.Signer) string {
		msg, err := transparency.Sign(transparency.Checkpoint{Origin: signer.Name(), Size: size, Hash: [32]byte{hash}}, s)
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	cases := []struct {
		name   string
		tamper func(*messaging.ClaimedBundle)
		want   error
	}{
		{"changed proof hash", func(b *messaging.ClaimedBundle) {
			h, _ := base64.StdEncoding.DecodeString(b.Log.Proof[0])
			h[0] ^= 1
			b.Log.Proof[0] = base64.StdEncoding.EncodeToString(h)
		}, transparency.ErrInclusion},
		{"changed entry", func(b *messaging.ClaimedBundle) {
			b.Log.Entry = bytes.Replace(b.Log.Entry, []byte("time "), []byte("time 1"), 1)
		}, transparency.ErrInclusion},
		{"index beyond the checkpoint", func(b *messaging.ClaimedBundle) { b.Log.Index = 1 << 40 }, transparency.ErrInclusion},
		{"checkpoint by another key", func(b *messaging.ClaimedBundle) { b.Log.Checkpoint = forge(storedCP.Size+1, 7, otherSigner) }, transparency.ErrSignature},
		{"another tree of the stored size", func(b *messaging.ClaimedBundle) { b.Log.Checkpoint = forge(storedCP.Size, 7, signer) }, transparency.ErrConsistency},
		{"newer tree that forks", func(b *messaging.ClaimedBundle) { b.Log.Checkpoint = forge(storedCP.Size+1, 7, signer) }, transparency.ErrConsistency},
		{"malformed proof", func(b *messaging.ClaimedBundle) { b.Log.Proof = []string{"AQID"} }, transparency.ErrProofEncoded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims := rewriteClaim(func(cr *messaging.ClaimResponse) {
				for i := range cr.Bundles {
					tc.tamper(&cr.Bundles[i])
				}
			})
			proxy := rewriteResponse(t, srv.URL, func(resp *http.Response, b []byte) []byte {
				if resp.Request.URL.Path == "/v1/log/proof/consistency" {
					// A proof for the forged tree, as the server would
					// make one up (the real log has no such size).
					q := resp.Request.URL.Query()
					var p transparency.ConsistencyProof
					fmt.Sscan(q.Get("old"), &p.Old)
					fmt.Sscan(q.Get("new"), &p.New)
					p.Hashes = []string{base64.StdEncoding.EncodeToString(make([]byte, 32))}
					resp.StatusCode = http.StatusOK
					resp.Header.Set("Content-Type", "application/json")
					out, _ := json.Marshal(p)
					return out
				}
				return claims(resp.Request, b)
			})
			sdk := alice.SDK(t, proxy, store)
			claim, err := sdk.ClaimAccount(ctx, bob.AccountID)
			if err != nil {
				t.Fatal(err)
			}
			err = refusedFor(t, claim, bob.DeviceID)
			if !errors.Is(err, client.ErrUntrusted) || !errors.Is(err, client.ErrLog) || !errors.Is(err, tc.want) {
				t.Fatalf("refused with %v, want ErrUntrusted, ErrLog and %v", err, tc.want)
			}
			if now, _, err := sdk.LogCheckpoint(ctx); err != nil || !bytes.Equal(now, stored) {
				t.Fatalf("stored checkpoint changed to %q (%v)", now, err)
			}
		})
	}

	// The log grows (Dave joins): the checkpoint route now has news.
	signUp(t, srv, "dave@example.org", false)

	t.Run("consistency proof that does not verify", func(t *testing.T) {
		proxy := rewriteProxy(t, srv.URL, func(r *http.Request, b []byte) []byte {
			if r.URL.Path != "/v1/log/proof/consistency" {
				return b
			}
			var p transparency.ConsistencyProof
			json.Unmarshal(b, &p)
			for i := range p.Hashes {
				p.Hashes[i] = base64.StdEncoding.EncodeToString(make([]byte, 32))
			}
			out, _ := json.Marshal(p)
			return out
		})
		sdk := alice.SDK(t, proxy, store)
		if _, err := sdk.UpdateLog(ctx); !errors.Is(err, client.ErrLog) || !errors.Is(err, transparency.ErrConsistency) {
			t.Fatalf("UpdateLog with a bad consistency proof: %v", err)
		}
		if now, _, _ := sdk.LogCheckpoint(ctx); !bytes.Equal(now, stored) {
			t.Fatal("stored checkpoint changed")
		}
	})

	t.Run("forked checkpoint from the checkpoint route", func(t *testing.T) {
		proxy := rewriteProxy(t, srv.URL, func(r *http.Request, b []byte) []byte {
			if r.URL.Path != "/v1/log/checkpoint" {
				return b
			}
			cp, err := transparency.ParseCheckpoint(strings.SplitN(string(b), "\n\n", 2)[0] + "\n")
			if err != nil {
				t.Error(err)
				return b
			}
			return []byte(forge(cp.Size, 9, signer))
		})
		sdk := alice.SDK(t, proxy, store)
		if _, err := sdk.UpdateLog(ctx); !errors.Is(err, client.ErrLog) || !errors.Is(err, transparency.ErrConsistency) {
			t.Fatalf("UpdateLog with a forked checkpoint: %v", err)
		}
		if now, _, _ := sdk.LogCheckpoint(ctx); !bytes.Equal(now, stored) {
			t.Fatal("stored checkpoint changed")
		}
	})

	t.Run("AdvanceLog", func(t *testing.T) {
		sdk := alice.SDK(t, srv.URL, store)
		if _, err := sdk.AdvanceLog(ctx, []byte(forge(storedCP.Size+5, 1, signer)), nil); !errors.Is(err, transparency.ErrConsistency) {
			t.Fatalf("AdvanceLog without a proof: %v", err)
		}
		older := forge(storedCP.Size-1, 1, signer)
		if _, err := sdk.AdvanceLog(ctx, []byte(older), nil); !errors.Is(err, transparency.ErrConsistency) {
			t.Fatalf("AdvanceLog to an older checkpoint: %v", err)
		}
		if now, _, _ := sdk.LogCheckpoint(ctx); !bytes.Equal(now, stored) {
			t.Fatal("stored checkpoint changed")
		}
	})

	t.Run("hook refuses", func(t *testing.T) {
		var asked []int64
		sdk, err := client.New(client.Options{BaseURL: srv.URL, Token: alice.Token, AccountID: alice.AccountID, DeviceID: alice.DeviceID,
			DeviceKey: alice.Key, DeviceCertificate: alice.Certificate, CA: alice.CA, Store: store,
			CheckCheckpoint: func(msg []byte, c transparency.Checkpoint) error {
				asked = append(asked, c.Size)
				return errors.New("only one cosignature of the two required")
			}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sdk.UpdateLog(ctx); !errors.Is(err, client.ErrLog) || !strings.Contains(err.Error(), "cosignature") {
			t.Fatalf("UpdateLog with the hook refusing: %v", err)
		}
		if len(asked) != 1 || asked[0] <= storedCP.Size {
			t.Fatalf("hook asked about sizes %v", asked)
		}
		if now, _, _ := sdk.LogCheckpoint(ctx); !bytes.Equal(now, stored) {
			t.Fatal("stored checkpoint changed")
		}
	})

	// The real log is still accepted, and advances the stored checkpoint.
	cp, err := alice.SDK(t, srv.URL, store).UpdateLog(ctx)
	if err != nil || cp.Size <= storedCP.Size {
		t.Fatalf("UpdateLog from the real server: %+v %v", cp, err)
	}
	claim, err = alice.SDK(t, srv.URL, store).ClaimAccount(ctx, bob.AccountID)
	if err != nil || len(claim.Bundles) != 1 {
		t.Fatalf("claim after the attacks: %v %+v", err, claim)
	}
}

// TestAttackLogKeySwapRefused: a client pinned the deployment's log key;
// a server that later serves another key (and checkpoints signed by it)
// is refused, and a configured LogKey that differs from the pinned one
// is an error rather than a silent re-pin.
func TestAttackLogKeySwapRefused(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	alice := signUp(t, srv, "alice@example.org", false)
	store := client.NewMemoryStore()
	key, err := alice.SDK(t, srv.URL, store).LogKey(ctx)
	if err != nil || !strings.HasPrefix(key, logSigner(t, srv).Name()+"+") {
		t.Fatalf("pinned key %q: %v", key, err)
	}
	_, other, _ := transparency.GenerateKey(rand.Reader, "kanal/other")
	proxy := rewriteProxy(t, srv.URL, func(r *http.Request, b []byte) []byte {
		if r.URL.Path == "/v1/log/key" {
			return []byte(other + "\n")
		}
		return b
	})
	if k, err := alice.SDK(t, proxy, store).LogKey(ctx); err != nil || k != key {
		t.Fatalf("pinned key after the server swapped it: %q %v", k, err)
	}
	c, err := client.New(client.Options{BaseURL: srv.URL, Token: alice.Token, AccountID: alice.AccountID, DeviceID: alice.DeviceID,
		DeviceKey: alice.Key, DeviceCertificate: alice.Certificate, CA: alice.CA, Store: store, LogKey: other})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LogKey(ctx); !errors.Is(err, client.ErrLog) {
		t.Fatalf("configured key differs from the pinned one: %v", err)
	}
}

// logAsNode appends entries to kanald's transparency log as the node
// would, with the node's log key and database: the attacker who holds the
// node can log what it mints, which every client accepts and the owner's
// monitor sees.
func logAsNode(t *testing.T, s *server, entries ...transparency.Entry) {
	t.Helper()
	ctx := context.Background()
	signer := logSigner(t, s)
	resp, err := http.Get(s.URL + "/v1/log/key")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := openKanaldDB(t, s)
	l, err := translog.New(ctx, translog.Options{DB: d, Signer: signer, Verifier: strings.TrimSpace(string(vkey))})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Tx(ctx, func(tx *sql.Tx) error {
		_, err := l.Append(ctx, tx, entries...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
