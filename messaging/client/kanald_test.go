package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// These tests run the SDK against the real kanald binary: identity's real
// sign-up, enrolment, login and session middleware in front of the prekey
// directory, on SQLite and (with KANAL_TEST_POSTGRES) PostgreSQL.

var kanaldBin string

func TestMain(m *testing.M) { kanaldtest.Main(m, &kanaldBin) }

// server is a running kanald and, with PostgreSQL, the URL of its schema
// (empty: SQLite in DataDir).
type server struct {
	*kanaldtest.Server
	dbURL string
}

// startKanald starts kanald on a free port, with SQLite, or PostgreSQL in
// a fresh schema when postgres is set, and the settings env.
func startKanald(t *testing.T, postgres bool, env ...string) *server {
	t.Helper()
	s := &server{}
	if postgres {
		base := dbtest.PostgresURL(t)
		s.dbURL = dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))
		env = append(env, "KANAL_DATABASE_URL="+s.dbURL)
	}
	s.Server = kanaldtest.Start(t, kanaldBin, env...)
	return s
}

// user is an account with one enrolled, logged-in device.
type user = kanaldtest.Device

// signUp registers email, enrolls a device (P-256 or Ed25519) and logs in
// with a low session, all through identity's real routes.
func signUp(t *testing.T, s *server, email string, p256 bool) *user {
	t.Helper()
	var key crypto.Signer
	if p256 {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	return s.SignUp(t, email, key)
}

func engines(t *testing.T, f func(t *testing.T, postgres bool)) {
	t.Run("sqlite", func(t *testing.T) { f(t, false) })
	t.Run("postgres", func(t *testing.T) {
		dbtest.PostgresURL(t) // skips without KANAL_TEST_POSTGRES, fails under CI
		f(t, true)
	})
}

// send encrypts for the peer and returns the bytes an envelope would carry.
func send(t *testing.T, from *client.Client, to string, text string) []byte {
	t.Helper()
	m, err := from.Encrypt(to, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func receive(t *testing.T, at *client.Client, from string, wire []byte) string {
	t.Helper()
	var m client.Message
	if err := m.UnmarshalBinary(wire); err != nil {
		t.Fatal(err)
	}
	pt, err := at.Decrypt(context.Background(), from, &m)
	if err != nil {
		t.Fatal(err)
	}
	return string(pt)
}

func TestConversationOverKanald(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
		aliceSDK := alice.SDK(t, srv.URL, client.NewMemoryStore())
		bobStore := client.NewMemoryStore()
		bobSDK := bob.SDK(t, srv.URL, bobStore)

		st, err := bobSDK.Publish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Published || st.OneTimePrekeys != client.PrekeyBatch || st.PQPrekeys != client.PrekeyBatch || st.Low {
			t.Fatalf("after publish: %+v", st)
		}
		if _, err := aliceSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}

		claim, err := aliceSDK.ClaimAccount(ctx, bob.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		if len(claim.Bundles) != 1 || len(claim.Refused) != 0 {
			t.Fatalf("claim: %+v", claim)
		}
		b := claim.Bundles[0]
		if b.Device.DeviceID != bob.DeviceID || !b.Prekeys.HasOneTimePrekey() || b.Prekeys.PQPrekey.LastResort() {
			t.Fatalf("bundle: %+v", b.Device)
		}
		if err := aliceSDK.StartSession(b); err != nil {
			t.Fatal(err)
		}

		// Two messages before bob answers (the second arrives first), then
		// an exchange both ways.
		m1 := send(t, aliceSDK, bob.DeviceID, "Guten Tag, Bürgeramt?")
		m2 := send(t, aliceSDK, bob.DeviceID, "Ich brauche einen Termin.")
		if got := receive(t, bobSDK, alice.DeviceID, m2); got != "Ich brauche einen Termin." {
			t.Fatal(got)
		}
		if got := receive(t, bobSDK, alice.DeviceID, m1); got != "Guten Tag, Bürgeramt?" {
			t.Fatal(got)
		}
		for i := range 3 {
			r := send(t, bobSDK, alice.DeviceID, fmt.Sprintf("Antwort %d", i))
			if got := receive(t, aliceSDK, bob.DeviceID, r); got != fmt.Sprintf("Antwort %d", i) {
				t.Fatal(got)
			}
			q := send(t, aliceSDK, bob.DeviceID, fmt.Sprintf("Frage %d", i))
			var m client.Message
			m.UnmarshalBinary(q)
			if m.Initial != nil {
				t.Fatal("initial message still sent after the answer")
			}
			if got := receive(t, bobSDK, alice.DeviceID, q); got != fmt.Sprintf("Frage %d", i) {
				t.Fatal(got)
			}
		}
		// A replay is refused.
		var again client.Message
		again.UnmarshalBinary(m2)
		if _, err := bobSDK.Decrypt(ctx, alice.DeviceID, &again); err == nil {
			t.Fatal("replayed message decrypted")
		}

		// bob's used one-time private key is gone; the directory counts one
		// fewer; Replenish tops up once the count is low.
		if _, err := bobStore.Get(fmt.Sprintf("opk/%d", b.Prekeys.OneTimePrekey.ID())); err != client.ErrNotFound {
			t.Fatalf("used one-time prekey kept: %v", err)
		}
		st, err = bobSDK.Status(ctx)
		if err != nil || st.OneTimePrekeys != client.PrekeyBatch-1 || st.PQPrekeys != client.PrekeyBatch-1 || st.Low {
			t.Fatalf("status: %+v %v", st, err)
		}
		// Claims by three accounts take bob below the low mark; one more
		// claim than the limit allows is refused with 429.
		for i := range 3 {
			u := signUp(t, srv, fmt.Sprintf("claimer%d@example.org", i), false)
			cs := u.SDK(t, srv.URL, client.NewMemoryStore())
			if i == 0 {
				// kanald counts claims in fixed windows of the clock
				// (messaging.ClaimWindow, a minute): claims that straddle a
				// window's end are counted in two, and the one over the
				// limit would pass. The 121 below take about a second
				// under the race detector; start them with ten to spare.
				if left := messaging.ClaimWindow - time.Duration(time.Now().UnixNano())%messaging.ClaimWindow; left < 10*time.Second {
					time.Sleep(left + 100*time.Millisecond)
				}
			}
			for range 27 {
				if _, err := cs.ClaimAccount(ctx, bob.AccountID); err != nil {
					t.Fatal(err)
				}
			}
			if i == 0 {
				for range messaging.MaxClaimsPerWindow - 27 {
					cs.ClaimAccount(ctx, bob.AccountID)
				}
				_, err := cs.ClaimAccount(ctx, bob.AccountID)
				if !idclient.IsProblem(err, string(web.TypeRateLimited)) || idclient.StatusOf(err) != http.StatusTooManyRequests {
					t.Fatalf("claim over the limit: %v", err)
				}
			}
		}
		st, err = bobSDK.Status(ctx)
		if err != nil || !st.Low || st.OneTimePrekeys >= messaging.LowPrekeys {
			t.Fatalf("status after claims: %+v %v", st, err)
		}
		before := st.OneTimePrekeys
		if st, err = bobSDK.Replenish(ctx); err != nil {
			t.Fatal(err)
		}
		if st.OneTimePrekeys != before+client.PrekeyBatch || st.Low {
			t.Fatalf("replenish from %d: %+v", before, st)
		}
	})
}

// tamperProxy forwards to kanald and lets f rewrite claim answers, as a
// compromised server could.
func tamperProxy(t *testing.T, target string, f func(*messaging.ClaimResponse)) string {
	return tamperProxyRaw(t, target, f, nil)
}

// tamperProxyRaw also rewrites the encoded answer with raw, for changes
// that keys.PrekeyBundle refuses to encode (a bundle whose signatures fail).
func tamperProxyRaw(t *testing.T, target string, f func(*messaging.ClaimResponse), raw func([]byte) []byte) string {
	t.Helper()
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/v1/prekeys/claim" || resp.StatusCode != http.StatusOK {
			return nil
		}
		var cr messaging.ClaimResponse
		if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil {
			return err
		}
		resp.Body.Close()
		f(&cr)
		b, err := json.Marshal(&cr)
		if err != nil {
			return err
		}
		if raw != nil {
			b = raw(b)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		return nil
	}
	ts := httptest.NewServer(p)
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestTamperedBundlesRefused(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	alice, bob, mallory := signUp(t, srv, "alice@example.org", false), signUp(t, srv, "bob@example.org", true), signUp(t, srv, "mallory@example.org", false)
	if _, err := bob.SDK(t, srv.URL, client.NewMemoryStore()).Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.SDK(t, srv.URL, client.NewMemoryStore()).Publish(ctx); err != nil {
		t.Fatal(err)
	}
	fake, _ := keys.GenerateIdentity(nil)
	capture := func(account string) messaging.ClaimedBundle {
		var cr messaging.ClaimResponse
		proxy := tamperProxy(t, srv.URL, func(r *messaging.ClaimResponse) { cr = *r })
		if _, err := alice.SDK(t, proxy, client.NewMemoryStore()).ClaimAccount(ctx, account); err != nil {
			t.Fatal(err)
		}
		return cr.Bundles[0]
	}
	malloryBundle, bobBundle := capture(mallory.AccountID), capture(bob.AccountID)

	cases := []struct {
		name   string
		tamper func(b *messaging.ClaimedBundle)
	}{
		{"identity key swapped, prekeys re-signed by it", func(b *messaging.ClaimedBundle) {
			b.Bundle.Identity = fake.Public()
			b.Bundle.SignedPrekeySig, _ = fake.SignSignedPrekey(b.Bundle.SignedPrekey)
			b.Bundle.PQPrekeySig, _ = fake.SignPQPrekey(b.Bundle.PQPrekey)
		}},
		{"binding broken", func(b *messaging.ClaimedBundle) {
			raw := []byte(b.IdentityBinding)
			raw[10] ^= 1
			b.IdentityBinding = string(raw)
		}},
		{"another device's certificate, identity and binding", func(b *messaging.ClaimedBundle) {
			b.Certificate, b.IdentityBinding = malloryBundle.Certificate, malloryBundle.IdentityBinding
			id := malloryBundle.Bundle
			id.DeviceID = b.Bundle.DeviceID
			b.Bundle = id
		}},
		{"certificate missing", func(b *messaging.ClaimedBundle) { b.Certificate = "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy := tamperProxy(t, srv.URL, func(r *messaging.ClaimResponse) {
				for i := range r.Bundles {
					tc.tamper(&r.Bundles[i])
				}
			})
			claim, err := alice.SDK(t, proxy, client.NewMemoryStore()).ClaimAccount(ctx, bob.AccountID)
			if err != nil {
				t.Fatal(err)
			}
			if len(claim.Bundles) != 0 || len(claim.Refused) != 1 || !errors.Is(claim.Refused[0].Err, client.ErrUntrusted) {
				t.Fatalf("tampered bundle not refused: %+v", claim)
			}
			t.Logf("refused: %v", claim.Refused[0].Err)
		})
	}

	t.Run("signed prekey swapped", func(t *testing.T) {
		bobSPK, _ := json.Marshal(bobBundle.Bundle.SignedPrekey)
		malSPK, _ := json.Marshal(malloryBundle.Bundle.SignedPrekey)
		proxy := tamperProxyRaw(t, srv.URL, func(*messaging.ClaimResponse) {}, func(b []byte) []byte {
			return bytes.ReplaceAll(b, bobSPK, malSPK)
		})
		claim, err := alice.SDK(t, proxy, client.NewMemoryStore()).ClaimAccount(ctx, bob.AccountID)
		if err != nil || len(claim.Bundles) != 0 || len(claim.Refused) != 1 || !errors.Is(claim.Refused[0].Err, client.ErrUntrusted) {
			t.Fatalf("tampered bundle not refused: %+v %v", claim, err)
		}
	})

	// A certificate from another CA is refused even if all else is in order.
	t.Run("another CA", func(t *testing.T) {
		other := startKanald(t, false)
		eve := signUp(t, other, "eve@example.org", false)
		if _, err := eve.SDK(t, other.URL, client.NewMemoryStore()).Publish(ctx); err != nil {
			t.Fatal(err)
		}
		var foreign messaging.ClaimedBundle
		proxy := tamperProxy(t, other.URL, func(r *messaging.ClaimResponse) { foreign = r.Bundles[0] })
		// Another user of the foreign deployment claims eve's bundle there;
		// the proxy keeps a copy.
		signUp(t, other, "x@example.org", false).SDK(t, proxy, client.NewMemoryStore()).ClaimAccount(ctx, eve.AccountID)
		proxy = tamperProxy(t, srv.URL, func(r *messaging.ClaimResponse) { r.Bundles = append(r.Bundles, foreign) })
		claim, err := alice.SDK(t, proxy, client.NewMemoryStore()).ClaimAccount(ctx, bob.AccountID)
		if err != nil || len(claim.Bundles) != 1 || len(claim.Refused) != 1 || !errors.Is(claim.Refused[0].Err, client.ErrUntrusted) {
			t.Fatalf("foreign bundle: %+v %v", claim, err)
		}
	})

	// A revoked device: the server stops serving it, and a bundle captured
	// before the revocation is refused by the CRL check.
	t.Run("revoked device", func(t *testing.T) {
		var captured messaging.ClaimedBundle
		proxy := tamperProxy(t, srv.URL, func(r *messaging.ClaimResponse) { captured = r.Bundles[0] })
		if _, err := alice.SDK(t, proxy, client.NewMemoryStore()).ClaimAccount(ctx, bob.AccountID); err != nil {
			t.Fatal(err)
		}
		if err := bob.Identity.RevokeDevice(ctx, bob.DeviceID); err != nil {
			t.Fatal(err)
		}
		// Bob's only device is gone: his account has no device to claim.
		claim, err := alice.SDK(t, srv.URL, client.NewMemoryStore()).ClaimAccount(ctx, bob.AccountID)
		if !idclient.IsProblem(err, string(messaging.TypeUnknownRecipient)) {
			t.Fatalf("revoked device served: %+v %v", claim, err)
		}
		// identity ran messaging's revocation hook: the keys are gone.
		d, err := db.OpenSQLite(ctx, filepath.Join(srv.DataDir, "kanal.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for _, table := range []string{"messaging_identities", "messaging_one_time_prekeys", "messaging_pq_prekeys"} {
			var n int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM `+table+` WHERE device_id = $1`, bob.DeviceID).Scan(&n); err != nil || n != 0 {
				t.Fatalf("%s holds %d rows of the revoked device (%v)", table, n, err)
			}
		}
		// The server now answers 404; a proxy answers with the captured
		// bundle instead.
		u, _ := url.Parse(srv.URL)
		forward := httputil.NewSingleHostReverseProxy(u)
		replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/prekeys/claim" {
				forward.ServeHTTP(w, r)
				return
			}
			web.WriteJSON(w, http.StatusOK, messaging.ClaimResponse{Bundles: []messaging.ClaimedBundle{captured}, Unpublished: []string{}})
		}))
		defer replay.Close()
		claim, err = alice.SDK(t, replay.URL, client.NewMemoryStore()).ClaimAccount(ctx, bob.AccountID)
		if err != nil || len(claim.Refused) != 1 || !errors.Is(claim.Refused[0].Err, client.ErrUntrusted) ||
			!strings.Contains(claim.Refused[0].Err.Error(), "revoked") {
			t.Fatalf("revoked bundle: %+v %v", claim, err)
		}
		// Nor can the revoked device publish again.
		if _, err := bob.SDK(t, srv.URL, client.NewMemoryStore()).Publish(ctx); idclient.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("revoked device publishes: %v", err)
		}
	})
}
