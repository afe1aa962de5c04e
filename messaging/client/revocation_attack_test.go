package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
)

// floodSerials is how many revoked device certificates the flood tests
// put in the database: what one account renewing its key without limit
// would leave behind in a few hours, and far more than the 1 MiB an
// identity client reads in one answer.
const floodSerials = 100_000

// insertRevocations writes n revoked, unexpired device certificates of
// one throw-away device straight into kanald's database, as a flood of
// key changes would have left them. It uses the database as kanald's own
// code does, so the revocation triggers fire.
func insertRevocations(t testing.TB, d *db.DB, n int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().Unix()
	notAfter := time.Now().Add(30 * 24 * time.Hour).Unix()
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_accounts (id, email, created_at) VALUES ('acc_flood', 'flood@example.org', $1)`, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_devices (id, account_id, name, level, cert_pem, cert_serial, expires_at, created_at, revoked_at)
			VALUES ('dev_flood', 'acc_flood', 'flood', 1, '', '1', $1, $2, $2)`, notAfter, now); err != nil {
			return err
		}
		const batch = 500
		for i := 0; i < n; i += batch {
			var q strings.Builder
			q.WriteString(`INSERT INTO identity_device_certs (serial, device_id, not_after, revoked_at) VALUES `)
			for j := i; j < i+batch && j < n; j++ {
				if j > i {
					q.WriteString(",")
				}
				// Serials as large as the CA's random 128-bit ones.
				fmt.Fprintf(&q, "('%d', 'dev_flood', %d, %d)", new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 126), big.NewInt(int64(j))), notAfter, now)
			}
			if _, err := tx.ExecContext(ctx, q.String()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func openKanaldDB(t testing.TB, s *server) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), s.dbURL, s.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// getCRL fetches the device CRL without authentication, as anyone can.
func getCRL(t testing.TB, base string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/v1/directory/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/directory/crl: %d %v %.200s", resp.StatusCode, err, b)
	}
	return b
}

func crlNumber(t testing.TB, der []byte) *big.Int {
	t.Helper()
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l.Number
}

// talk has alice claim bob's keys, start a session and send; bob reads
// the initial message. Both sides check the other's certificate status.
func talk(t testing.TB, alice *client.Client, bob *client.Client, aliceDev, bobAccount, bobDev, text string) {
	t.Helper()
	ctx := context.Background()
	claim, err := alice.ClaimAccount(ctx, bobAccount)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if len(claim.Bundles) != 1 || len(claim.Refused) != 0 {
		t.Fatalf("claim: %d bundles, refused %+v", len(claim.Bundles), claim.Refused)
	}
	if err := alice.StartSession(claim.Bundles[0]); err != nil {
		t.Fatal(err)
	}
	m, err := alice.Encrypt(bobDev, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := bob.Decrypt(ctx, aliceDev, m)
	if err != nil || string(pt) != text {
		t.Fatalf("bob reads %q: %v", pt, err)
	}
}

// TestAttackRevocationFlood: the adversary is a citizen with an ordinary
// account and session, who changes their device key over and over, so
// that every change revokes a serial, and who fetches the revocation list
// without authentication as often as they like. With 100,000 revoked
// serials, other citizens still claim keys and start sessions (clients
// check one certificate's signed status, not the whole list), and
// repeated GETs of the list do not make the server sign anew (the served
// bytes and the CRL number stay the same) until a revocation happens —
// after which no node serves the old list.
func TestAttackRevocationFlood(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		d := openKanaldDB(t, srv)
		alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
		mallory := signUp(t, srv, "mallory@example.org", true)
		aliceSDK := alice.SDK(t, srv.URL, client.NewMemoryStore())
		bobSDK := bob.SDK(t, srv.URL, client.NewMemoryStore())
		if _, err := bobSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}

		insertRevocations(t, d, floodSerials)
		// Mallory's own key change, through the API, on top of the flood.
		newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if _, err := mallory.Identity.Renew(ctx, mallory.DeviceID, idclient.Renewal{Current: mallory.Key, Next: newKey}); err != nil {
			t.Fatalf("mallory renews: %v", err)
		}
		malloryOld := mustSerial(t, mallory.Certificate)

		first := getCRL(t, srv.URL)
		if len(first) <= 1<<20 {
			t.Fatalf("the flood should make the CRL larger than 1 MiB, it is %d bytes", len(first))
		}
		if _, revoked, err := ca.CheckRevoked(first, alice.CA, malloryOld); err != nil || !revoked {
			t.Fatalf("mallory's replaced certificate is not on the list: %v %v", revoked, err)
		}
		number := crlNumber(t, first)
		for range 20 {
			if again := getCRL(t, srv.URL); string(again) != string(first) {
				t.Fatalf("a repeated unauthenticated GET was signed anew (number %v, then %v)", number, crlNumber(t, again))
			}
		}

		// Logins, claims and sessions still work for everyone else.
		if _, err := idclient.New(srv.URL, nil).Login(ctx, alice.DeviceID, alice.Key, ""); err != nil {
			t.Fatalf("login with the flood in the database: %v", err)
		}
		talk(t, aliceSDK, bobSDK, alice.DeviceID, bob.AccountID, bob.DeviceID, "Guten Tag trotz 100.000 Widerrufen")

		// A revocation is visible in the very next list: bob's device is
		// revoked, and the list served next names it, with a higher number.
		if err := bob.Identity.RevokeDevice(ctx, bob.DeviceID); err != nil {
			t.Fatal(err)
		}
		next := getCRL(t, srv.URL)
		if crlNumber(t, next).Cmp(number) <= 0 {
			t.Fatalf("CRL number did not grow after a revocation: %v then %v", number, crlNumber(t, next))
		}
		if _, revoked, err := ca.CheckRevoked(next, alice.CA, mustSerial(t, bob.Certificate)); err != nil || !revoked {
			t.Fatalf("bob's revoked device is not on the next list: %v %v", revoked, err)
		}
		if again := getCRL(t, srv.URL); string(again) != string(next) {
			t.Fatal("the list after the revocation was signed twice")
		}
	})
}

func mustSerial(t testing.TB, certPEM []byte) *big.Int {
	t.Helper()
	c, err := x509.ParseCertificate(derOfPEM(t, certPEM))
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// BenchmarkSessionWithFlood measures what starting a session costs a
// client against kanald whose database holds 100,000 revoked serials:
// logging in (challenge, signature, session) and checking the peer's
// certificate status — the part that used to fetch the whole list.
func BenchmarkSessionWithFlood(b *testing.B) {
	for _, postgres := range []bool{false, true} {
		name := "sqlite"
		if postgres {
			name = "postgres"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s := &server{}
			var env []string
			if postgres {
				base := dbtest.PostgresURL(b)
				s.dbURL = dbtest.WithSchema(b, base, dbtest.NewSchema(b, base))
				env = append(env, "KANAL_DATABASE_URL="+s.dbURL)
			}
			s.Server = kanaldtest.Start(b, kanaldBin, env...)
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			alice := s.SignUp(b, "alice@example.org", key)
			bob := s.SignUp(b, "bob@example.org", key)
			insertRevocations(b, openKanaldDB(b, s), floodSerials)
			bobCert, err := x509.ParseCertificate(derOfPEM(b, bob.Certificate))
			if err != nil {
				b.Fatal(err)
			}
			ic := idclient.New(s.URL, nil)
			b.ResetTimer()
			for b.Loop() {
				if _, err := ic.Login(ctx, alice.DeviceID, alice.Key, ""); err != nil {
					b.Fatal(err)
				}
				if st, _, err := ic.CertificateStatus(ctx, bobCert, alice.CA, time.Now()); err != nil || st.Revoked {
					b.Fatalf("status %+v %v", st, err)
				}
			}
		})
	}
}

func derOfPEM(t testing.TB, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	return b.Bytes
}
