package client_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging/client"
)

// attackerLog is the node's transparency log in the adversary's hands:
// the log key file of the node and write access to the database.
func attackerLog(t testing.TB, srv *server) (*translog.Log, func(es ...transparency.Entry)) {
	t.Helper()
	ctx := context.Background()
	resp, err := http.Get(srv.URL + "/v1/log/key")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	skey, err := os.ReadFile(filepath.Join(srv.DataDir, "ca", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	d := openKanaldDB(t, srv)
	l, err := translog.New(ctx, translog.Options{DB: d, Signer: signer, Verifier: strings.TrimSpace(string(vkey))})
	if err != nil {
		t.Fatal(err)
	}
	return l, func(es ...transparency.Entry) {
		t.Helper()
		if err := d.Tx(ctx, func(tx *sql.Tx) error { _, err := l.Append(ctx, tx, es...); return err }); err != nil {
			t.Fatal(err)
		}
	}
}

// alertSink collects what OnAlert reports.
type alertSink struct {
	mu  sync.Mutex
	got []client.Alert
}

func (s *alertSink) add(a client.Alert) {
	s.mu.Lock()
	s.got = append(s.got, a)
	s.mu.Unlock()
}

func (s *alertSink) list() []client.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]client.Alert(nil), s.got...)
}

// monitored is Ben's device with its SDK on store, reporting alerts to
// sink, against base.
func monitored(t testing.TB, u *user, base string, store client.Store, sink *alertSink) *client.Client {
	t.Helper()
	o := client.Options{BaseURL: base, Token: u.Token, AccountID: u.AccountID, DeviceID: u.DeviceID,
		DeviceKey: u.Key, DeviceCertificate: u.Certificate, CA: u.CA, Store: store}
	if sink != nil {
		o.OnAlert = sink.add
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newIdentityKey(t testing.TB) []byte {
	t.Helper()
	id, err := keys.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := id.Public().MarshalBinary()
	return b
}

// TestAttackForeignDeviceLogged: the adversary holds the node — its
// database, its CA key and its log key — and mints a device for Ben, with
// an identity key, and logs both as identity and messaging would, so that
// Anna's SDK would accept its bundle. Ben's monitor reports the device on
// its next poll, and again until Ben acknowledges it; an identity key
// logged for Ben's own device is reported the same way.
func TestAttackForeignDeviceLogged(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		ben := signUp(t, srv, "ben@example.org", false)
		signUp(t, srv, "anna@example.org", true)
		var sink alertSink
		benSDK := monitored(t, ben, srv.URL, client.NewMemoryStore(), &sink)
		if _, err := benSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := benSDK.Monitor(ctx); err != nil || len(got) != 0 {
			t.Fatalf("first poll: %+v %v", got, err)
		}

		_, appendLog := attackerLog(t, srv)
		m := mintDevice(t, srv, ben.AccountID)
		now := time.Now().Unix()
		appendLog(
			transparency.Entry{Kind: transparency.KindDevice, Account: ben.AccountID, Device: m.id, Cert: transparency.CertFingerprint(m.certDER), Time: now},
			transparency.Entry{Kind: transparency.KindIdentityKey, Account: ben.AccountID, Device: m.id, Cert: transparency.CertFingerprint(m.certDER),
				Key: newIdentityKey(t), Time: now})
		signUp(t, srv, "carl@example.org", false) // the log goes on

		got, err := benSDK.Monitor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Kind != client.AlertForeignDevice || got[0].DeviceID != m.id {
			t.Fatalf("one poll after the minted device: alerts %+v, want the foreign device %s", got, m.id)
		}
		if s := sink.list(); len(s) != 1 || s[0] != got[0] {
			t.Fatalf("OnAlert: %+v", s)
		}
		// Kept until acknowledged, not raised twice.
		if again, err := benSDK.Monitor(ctx); err != nil || len(again) != 0 {
			t.Fatalf("second poll: %+v %v", again, err)
		}
		if pending, err := benSDK.Alerts(); err != nil || len(pending) != 1 {
			t.Fatalf("pending: %+v %v", pending, err)
		}
		if n, err := benSDK.AckAlerts(); err != nil || n != 1 {
			t.Fatalf("ack: %d %v", n, err)
		}
		if pending, _ := benSDK.Alerts(); len(pending) != 0 {
			t.Fatalf("after ack: %+v", pending)
		}

		// A key for Ben's own device that it did not publish.
		appendLog(transparency.Entry{Kind: transparency.KindIdentityKey, Account: ben.AccountID, Device: ben.DeviceID,
			Cert: transparency.CertFingerprint(derOfPEM(t, ben.Certificate)), Key: newIdentityKey(t), Time: time.Now().Unix()})
		got, err = benSDK.Monitor(ctx)
		if err != nil || len(got) != 1 || got[0].Kind != client.AlertForeignKey || got[0].DeviceID != ben.DeviceID {
			t.Fatalf("alerts after a key logged for Ben's device: %+v %v", got, err)
		}
	})
}

// TestMonitorFirstPollStartsAtEnrolment: a device enrolled after many
// entries reads the log from its own enrolment entry, not from 0, and
// treats the devices its account had then as known.
func TestMonitorFirstPollStartsAtEnrolment(t *testing.T) {
	ctx := context.Background()
	d := startDeployment(t, false)
	srv := &server{Server: d.node(0)}
	for _, e := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		signUp(t, srv, e, false)
	}
	bens := newAccount(t, d, "ben@example.org", 1)
	ben2 := enrollAnother(t, d, bens[0], "ben@example.org")
	var entries int
	proxy := rewriteProxy(t, srv.URL, func(r *http.Request, b []byte) []byte {
		if r.URL.Path == "/v1/log/entries" {
			var es transparency.Entries
			if json.Unmarshal(b, &es) == nil {
				entries += len(es.Entries)
				if len(es.Entries) > 0 && es.Entries[0].Index == 0 {
					t.Errorf("the first poll read from entry 0")
				}
			}
		}
		return b
	})
	var sink alertSink
	sdk := monitored(t, ben2, proxy, client.NewMemoryStore(), &sink)
	if _, err := sdk.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := sdk.Monitor(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("first poll of Ben's second device: %+v %v (Ben's first device is known)", got, err)
	}
	_, cp, err := sdk.LogCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if entries == 0 || int64(entries) > cp.Size/2 {
		t.Fatalf("the first poll read %d of the log's %d entries; its enrolment came late", entries, cp.Size)
	}
}

// TestAttackMonitorRefusesBadLog: the adversary hides a device it minted
// and logged from Ben's monitor by answering for the log: an entry swapped
// for another, a checkpoint of a forked tree signed with the node's log
// key, a checkpoint signed by another key. Each poll fails with ErrLog and
// keeps nothing; the next honest poll reports the device.
func TestAttackMonitorRefusesBadLog(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		ben := signUp(t, srv, "ben@example.org", false)
		store := client.NewMemoryStore()
		benSDK := monitored(t, ben, srv.URL, store, nil)
		if _, err := benSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := benSDK.Monitor(ctx); err != nil {
			t.Fatal(err)
		}
		_, cpBefore, err := benSDK.LogCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l, appendLog := attackerLog(t, srv)
		m := mintDevice(t, srv, ben.AccountID)
		hidden := transparency.Entry{Kind: transparency.KindDevice, Account: ben.AccountID, Device: m.id, Cert: transparency.CertFingerprint(m.certDER), Time: time.Now().Unix()}
		appendLog(hidden)
		signUp(t, srv, "carl@example.org", false)
		_, real, err := l.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}

		otherSigner, _, _ := transparency.GenerateKey(rand.Reader, l.Origin())
		attacks := map[string]func(r *http.Request, b []byte) []byte{
			// The minted device's entry replaced by its revocation.
			"entry swapped": func(r *http.Request, b []byte) []byte {
				if r.URL.Path != "/v1/log/entries" {
					return b
				}
				var es transparency.Entries
				if err := json.Unmarshal(b, &es); err != nil {
					t.Fatal(err)
				}
				for i := range es.Entries {
					if e, err := transparency.ParseEntry(es.Entries[i].Data); err == nil && e.Device == m.id {
						// A revocation raises nothing.
						e.Kind = transparency.KindDeviceRevoked
						es.Entries[i].Data, _ = e.Marshal()
					}
				}
				out, _ := json.Marshal(es)
				return out
			},
			// A fork: the same size, another tree, signed with the log key.
			"forked checkpoint": func(r *http.Request, b []byte) []byte {
				if r.URL.Path != "/v1/log/checkpoint" {
					return b
				}
				fork := real
				fork.Hash[0] ^= 1
				msg, err := transparency.Sign(fork, logSigner(t, srv))
				if err != nil {
					t.Fatal(err)
				}
				return msg
			},
			"checkpoint signed by another key": func(r *http.Request, b []byte) []byte {
				if r.URL.Path != "/v1/log/checkpoint" {
					return b
				}
				s, err := note.NewSigner(otherSigner)
				if err != nil {
					t.Fatal(err)
				}
				msg, err := transparency.Sign(real, s)
				if err != nil {
					t.Fatal(err)
				}
				return msg
			},
		}
		for name, rewrite := range attacks {
			proxy := rewriteProxy(t, srv.URL, rewrite)
			var sink alertSink
			fooled := monitored(t, ben, proxy, store, &sink)
			_, stored, err := fooled.LogCheckpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fooled.Monitor(ctx)
			if !errors.Is(err, client.ErrLog) {
				t.Fatalf("%s: poll gave %+v, %v; want ErrLog", name, got, err)
			}
			if pending, _ := fooled.Alerts(); len(sink.list()) != 0 || len(pending) != 0 {
				t.Fatalf("%s: alerts from a refused log: %+v %+v", name, sink.list(), pending)
			}
			// A refused checkpoint is not stored. (The swapped entry
			// came under an honest checkpoint, which may be.)
			if _, cp, err := fooled.LogCheckpoint(ctx); name != "entry swapped" && (err != nil || cp != stored) {
				t.Fatalf("%s: the stored checkpoint moved from %+v to %+v (%v)", name, stored, cp, err)
			}
		}
		if _, cp, _ := benSDK.LogCheckpoint(ctx); cp.Size < cpBefore.Size {
			t.Fatalf("stored checkpoint went back from %d to %d", cpBefore.Size, cp.Size)
		}
		got, err := benSDK.Monitor(ctx)
		if err != nil || len(got) != 1 || got[0].DeviceID != m.id || got[0].Kind != client.AlertForeignDevice {
			t.Fatalf("honest poll after the refused ones: %+v %v", got, err)
		}
	})
}
