package client_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// The log names an account by SHA-256("kanal-account/v1" || salt ||
// account id) (docs/transparency.md, "Account commitments"). The
// adversary of these tests holds the node — database, CA key, log key —
// and tries to make a client accept a binding for an account through the
// salt: a commitment to another account, a wrong salt, and a second salt
// for the same account, which the account's own monitor would not know.

// randomSalt is a salt no account has.
func randomSalt(t *testing.T) transparency.Salt {
	t.Helper()
	var s transparency.Salt
	if _, err := rand.Read(s[:]); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAttackLogSaltRefused: Anna claims Ben's bundles. The adversary adds
// a device it minted for Ben, logged under the commitment to Carl's
// account (with Carl's real salt), or under a commitment to Ben with a
// second salt; or it sends Ben's real entry with another salt, or a salt
// of the wrong length. Each is refused (ErrNotLogged; the second salt
// ErrSaltChanged once Anna has pinned Ben's), and Ben's real device stays
// accepted. A client that met Ben first through the second salt refuses
// Ben's real device afterwards: the split is seen, not silent.
func TestAttackLogSaltRefused(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		anna := signUp(t, srv, "anna@example.org", false)
		ben := signUp(t, srv, "ben@example.org", true)
		carl := signUp(t, srv, "carl@example.org", false)
		for _, u := range []*user{ben, carl} {
			if _, err := u.SDK(t, srv.URL, client.NewMemoryStore()).Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
		l, appendLog := attackerLog(t, srv)
		carlSalt, err := l.AccountSalt(ctx, carl.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		benSalt, err := l.AccountSalt(ctx, ben.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		second := randomSalt(t)

		// A device minted for Ben, logged (version 2, as the node logs)
		// once under Carl's commitment and once under Ben's with a second
		// salt.
		m := mintDevice(t, srv, ben.AccountID)
		fake := m.bundle(t, ben.AccountID)
		key, _ := fake.Bundle.Identity.MarshalBinary()
		fp := transparency.CertFingerprint(m.certDER)
		underCommitment := func(c transparency.Commitment, salt transparency.Salt) *transparency.Attachment {
			t.Helper()
			appendLog(transparency.Entry{Version: transparency.V2, Kind: transparency.KindIdentityKey, Commitment: c, Device: m.id,
				Cert: fp, Key: key, Time: time.Now().Unix()})
			a, err := l.Attach(ctx, transparency.KindIdentityKey, m.id, fp, "")
			if err != nil {
				t.Fatal(err)
			}
			a.Salt = salt[:]
			return a
		}
		asCarl := underCommitment(transparency.AccountCommitment(carlSalt, carl.AccountID), carlSalt)
		secondSalt := underCommitment(transparency.AccountCommitment(second, ben.AccountID), second)
		wrong := randomSalt(t)

		// Anna's store pins Ben's real salt on an honest claim first.
		pinned := client.NewMemoryStore()
		if claim, err := anna.SDK(t, srv.URL, pinned).ClaimAccount(ctx, ben.AccountID); err != nil || len(claim.Bundles) != 1 {
			t.Fatalf("honest claim: %+v %v", claim, err)
		}
		if got, err := anna.SDK(t, srv.URL, pinned).LogSalt(ben.AccountID); err != nil || string(got) != string(benSalt[:]) {
			t.Fatalf("pinned salt %x %v, want Ben's %x", got, err, benSalt)
		}

		for _, c := range []struct {
			name   string
			tamper func(real *messaging.ClaimedBundle) []messaging.ClaimedBundle
			victim string // the device refused
			want   error
		}{
			{"commitment to another account", func(real *messaging.ClaimedBundle) []messaging.ClaimedBundle {
				f := fake
				f.Log = asCarl
				return []messaging.ClaimedBundle{*real, f}
			}, m.id, client.ErrNotLogged},
			{"second salt for the account", func(real *messaging.ClaimedBundle) []messaging.ClaimedBundle {
				f := fake
				f.Log = secondSalt
				return []messaging.ClaimedBundle{*real, f}
			}, m.id, client.ErrSaltChanged},
			{"wrong salt for the real entry", func(real *messaging.ClaimedBundle) []messaging.ClaimedBundle {
				r := *real
				a := *r.Log
				a.Salt = wrong[:]
				r.Log = &a
				return []messaging.ClaimedBundle{r}
			}, ben.DeviceID, client.ErrNotLogged},
			{"short salt", func(real *messaging.ClaimedBundle) []messaging.ClaimedBundle {
				r := *real
				a := *r.Log
				a.Salt = benSalt[:31]
				r.Log = &a
				return []messaging.ClaimedBundle{r}
			}, ben.DeviceID, client.ErrNotLogged},
		} {
			t.Run(c.name, func(t *testing.T) {
				proxy := tamperProxy(t, srv.URL, func(cr *messaging.ClaimResponse) {
					if len(cr.Bundles) == 1 && cr.Bundles[0].AccountID == ben.AccountID {
						cr.Bundles = c.tamper(&cr.Bundles[0])
					}
				})
				claim, err := anna.SDK(t, proxy, pinned).ClaimAccount(ctx, ben.AccountID)
				if err != nil {
					t.Fatal(err)
				}
				err = refusedFor(t, claim, c.victim)
				if !errors.Is(err, client.ErrUntrusted) || !errors.Is(err, c.want) {
					t.Fatalf("refused with %v, want ErrUntrusted and %v", err, c.want)
				}
				for _, b := range claim.Bundles {
					if b.Device.DeviceID != ben.DeviceID {
						t.Fatalf("accepted %s", b.Device.DeviceID)
					}
				}
				if got, _ := anna.SDK(t, srv.URL, pinned).LogSalt(ben.AccountID); string(got) != string(benSalt[:]) {
					t.Fatalf("the pinned salt changed to %x", got)
				}
			})
		}

		// A client that meets Ben first through the second salt (only the
		// minted device shown) pins it; Ben's real device is refused
		// from then on, so the split view ends at the first honest
		// answer.
		fresh := client.NewMemoryStore()
		proxy := tamperProxy(t, srv.URL, func(cr *messaging.ClaimResponse) {
			if len(cr.Bundles) == 1 && cr.Bundles[0].AccountID == ben.AccountID {
				f := fake
				f.Log = secondSalt
				cr.Bundles = []messaging.ClaimedBundle{f}
			}
		})
		if _, err := anna.SDK(t, proxy, fresh).ClaimAccount(ctx, ben.AccountID); err != nil {
			t.Fatal(err)
		}
		claim, err := anna.SDK(t, srv.URL, fresh).ClaimAccount(ctx, ben.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		if err := refusedFor(t, claim, ben.DeviceID); !errors.Is(err, client.ErrSaltChanged) {
			t.Fatalf("Ben's real device after the second salt: %v, want ErrSaltChanged", err)
		}
	})
}

// TestAttackMonitorSaltSwap: Ben's monitor pins his account's salt from
// the directory on its first poll. The adversary then logs Ben's own
// device under a commitment with a second salt (where Ben's monitor would
// not look for it): the monitor reports it. A directory that later shows
// the monitor another salt is refused. A monitor shown a wrong salt from
// the start finds its own device's entries under another commitment and
// reports them.
func TestAttackMonitorSaltSwap(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		ben := signUp(t, srv, "ben@example.org", false)
		store := client.NewMemoryStore()
		benSDK := monitored(t, ben, srv.URL, store, nil)
		if _, err := benSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := benSDK.Monitor(ctx); err != nil || len(got) != 0 {
			t.Fatalf("first poll: %+v %v", got, err)
		}
		if s, err := benSDK.LogSalt(ben.AccountID); err != nil || len(s) != transparency.SaltBytes {
			t.Fatalf("the monitor pinned no salt: %x %v", s, err)
		}

		_, appendLog := attackerLog(t, srv)
		second := randomSalt(t)
		appendLog(transparency.Entry{Version: transparency.V2, Kind: transparency.KindIdentityKey,
			Commitment: transparency.AccountCommitment(second, ben.AccountID), Device: ben.DeviceID,
			Cert: transparency.CertFingerprint(derOfPEM(t, ben.Certificate)), Key: newIdentityKey(t), Time: time.Now().Unix()})
		got, err := benSDK.Monitor(ctx)
		if err != nil || len(got) != 1 || got[0].Kind != client.AlertForeignCommitment || got[0].DeviceID != ben.DeviceID {
			t.Fatalf("alerts after Ben's device was logged under a second salt: %+v %v", got, err)
		}

		// The directory shows Ben another salt.
		swap := func(salt []byte) string {
			return rewriteProxy(t, srv.URL, func(r *http.Request, b []byte) []byte {
				if !strings.HasPrefix(r.URL.Path, "/v1/directory/accounts/") {
					return b
				}
				var d identity.DirectoryDevices
				if err := json.Unmarshal(b, &d); err != nil {
					return b
				}
				d.LogSalt = salt
				out, _ := json.Marshal(d)
				return out
			})
		}
		if _, err := monitored(t, ben, swap(second[:]), store, nil).Devices(ctx, ben.AccountID); !errors.Is(err, client.ErrSaltChanged) {
			t.Fatalf("the directory's second salt: %v, want ErrSaltChanged", err)
		}

		// A new monitor shown the second salt from its first poll.
		var sink alertSink
		misled := monitored(t, ben, swap(second[:]), client.NewMemoryStore(), &sink)
		got, err = misled.Monitor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range got {
			found = found || a.Kind == client.AlertForeignCommitment && a.DeviceID == ben.DeviceID
		}
		if !found {
			t.Fatalf("a monitor misled about its salt raised %+v, want a foreign commitment of %s", got, ben.DeviceID)
		}
	})
}
