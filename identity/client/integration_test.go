package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
)

// inbox is the mailer handed to the identity service: it keeps the mails
// so the test can read codes as a user would.
type inbox struct {
	mu   sync.Mutex
	mail []identity.Message
}

func (b *inbox) Send(_ context.Context, m identity.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mail = append(b.mail, m)
	return nil
}

var codeRE = regexp.MustCompile(`\b[0-9]{8}\b`)

func (b *inbox) code(t *testing.T, to string) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.mail) - 1; i >= 0; i-- {
		if b.mail[i].To == to {
			if c := codeRE.FindString(b.mail[i].Body); c != "" {
				return c
			}
		}
	}
	t.Fatalf("no code mailed to %s", to)
	return ""
}

// deployment is the real identity service behind the real HTTP edge, wired
// as cmd/kanald wires it.
type deployment struct {
	url      string
	ca       *ca.CA
	mail     *inbox
	operator string
}

func newDeployment(t *testing.T, d *db.DB) *deployment {
	t.Helper()
	ctx := context.Background()
	authority, err := ca.Create("kanal Musterstadt", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mail := &inbox{}
	svc, err := identity.New(identity.Options{
		DB: d, CA: authority, Mailer: mail, Secret: make([]byte, identity.SecretSize),
		// Cheap password hashing; the cost does not change the protocol.
		Argon2: &identity.Argon2Params{Memory: 64, Time: 1, Threads: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	var op string
	_, created, err := svc.EnsureOperator(ctx, identity.OperatorOptions{Deliver: func(tok string, _ identity.OperatorToken) error { op = tok; return nil }})
	if err != nil || !created {
		t.Fatalf("EnsureOperator: %v %v", created, err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	mux.Handle("/", web.NotFound())
	srv := httptest.NewServer(web.Handler(mux, web.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return &deployment{url: srv.URL, ca: authority, mail: mail, operator: op}
}

func mustProblem(t *testing.T, err error, typ web.ProblemType) {
	t.Helper()
	if !client.IsProblem(err, string(typ)) {
		t.Fatalf("got %v, want problem %s", err, typ)
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func certDER(t *testing.T, p string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(p))
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", p)
	}
	return b.Bytes
}

// TestAgainstTheRealService drives every client method against the real
// identity handlers, on SQLite and on PostgreSQL.
func TestAgainstTheRealService(t *testing.T) {
	dbtest.Run(t, []db.Migrations{identity.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		dep := newDeployment(t, d)
		c := client.New(dep.url, nil)
		const email, password = "alice@example.org", "a long and careful passphrase"

		// Sign-up.
		check(t, c.Signup(ctx, email))
		mustProblem(t, c.Signup(ctx, "not an address"), identity.TypeInvalidEmail)
		_, err := c.VerifySignup(ctx, email, "00000000")
		mustProblem(t, err, identity.TypeInvalidCode)
		v, err := c.VerifySignup(ctx, email, dep.mail.code(t, email))
		check(t, err)
		setup := c.WithToken(v.SetupToken)
		mustProblem(t, setup.SetPassword(ctx, "short", ""), identity.TypeWeakPassword)
		check(t, setup.SetPassword(ctx, password, ""))

		// The first device, with the setup token.
		laptop, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		check(t, err)
		enrolled, err := setup.EnrollDevice(ctx, "laptop", laptop)
		check(t, err)
		roots := x509.NewCertPool()
		roots.AddCert(dep.ca.Certificate())
		id, err := ca.VerifyDevice(certDER(t, enrolled.Certificate), roots, time.Now())
		check(t, err)
		if id.AccountID != v.AccountID || id.DeviceID != enrolled.DeviceID || !laptop.PublicKey.Equal(id.PublicKey) {
			t.Fatalf("certificate names %+v", id)
		}
		if string(dep.ca.CertPEM()) != enrolled.CA {
			t.Fatal("enrollment returned another CA")
		}

		// Login: key alone is low, key and password substantial.
		_, err = c.Login(ctx, enrolled.DeviceID, laptop, "wrong password")
		mustProblem(t, err, identity.TypeInvalidCredentials)
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, err = c.Login(ctx, enrolled.DeviceID, other, password)
		mustProblem(t, err, identity.TypeInvalidCredentials)
		low, err := c.Login(ctx, enrolled.DeviceID, laptop, "")
		check(t, err)
		if low.Level != identity.LevelLow {
			t.Fatalf("device-only login: level %s", low.Level)
		}
		s, err := c.Login(ctx, enrolled.DeviceID, laptop, password)
		check(t, err)
		if s.Level != identity.LevelSubstantial {
			t.Fatalf("login with password: level %s", s.Level)
		}
		sess := c.WithToken(s.Token)
		me, err := sess.Me(ctx)
		check(t, err)
		if me.AccountID != v.AccountID || me.Email != email || me.DeviceID != enrolled.DeviceID || me.Level != identity.LevelSubstantial {
			t.Fatalf("me: %+v", me)
		}

		// A second device (Ed25519), enrolled by the substantial session
		// and approved by its device's key; the session alone is refused.
		_, phone, err := ed25519.GenerateKey(rand.Reader)
		check(t, err)
		_, err = sess.EnrollDevice(ctx, "phone", phone)
		mustProblem(t, err, identity.TypeInvalidKeyProof)
		second, err := sess.WithDevice(enrolled.DeviceID, laptop).EnrollDevice(ctx, "phone", phone)
		check(t, err)
		ps, err := c.Login(ctx, second.DeviceID, phone, password)
		check(t, err)
		phoneSess := c.WithToken(ps.Token)
		_, err = phoneSess.Me(ctx)
		check(t, err)
		devs, err := sess.Devices(ctx)
		check(t, err)
		if len(devs) != 2 {
			t.Fatalf("devices: %+v", devs)
		}

		// Revoking it ends its session and lists it as revoked.
		check(t, sess.RevokeDevice(ctx, second.DeviceID))
		_, err = phoneSess.Me(ctx)
		if client.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("revoked device's session: %v, want 401", err)
		}
		t.Logf("a revoked device's request: %v", err)
		_, err = c.Login(ctx, second.DeviceID, phone, password)
		if err == nil {
			t.Fatal("a revoked device logged in")
		}
		dirDevs, err := sess.AccountDevices(ctx, v.AccountID)
		check(t, err)
		revoked := false
		for _, dd := range dirDevs {
			revoked = revoked || (dd.DeviceID == second.DeviceID && dd.Status == identity.StatusRevoked && dd.RevokedAt != nil)
		}
		if !revoked {
			t.Fatalf("directory: %+v", dirDevs)
		}
		crl, err := c.CRL(ctx, dep.ca.Certificate())
		check(t, err)
		phoneCert, err := x509.ParseCertificate(certDER(t, second.Certificate))
		check(t, err)
		if _, isRevoked, err := ca.CheckRevoked(crl, dep.ca.Certificate(), phoneCert.SerialNumber); err != nil || !isRevoked {
			t.Fatalf("CRL does not list the revoked device: %v %v", isRevoked, err)
		}
		if st, _, err := c.CertificateStatus(ctx, phoneCert, dep.ca.Certificate(), time.Now()); err != nil || !st.Revoked {
			t.Fatalf("certificate status of the revoked device: %+v %v", st, err)
		}

		// Renewal, refresh and logout.
		renewed, err := sess.RenewDevice(ctx, enrolled.DeviceID, laptop)
		check(t, err)
		if renewed.DeviceID != enrolled.DeviceID || renewed.Certificate == enrolled.Certificate {
			t.Fatalf("renewal: %+v", renewed)
		}
		r, err := c.Refresh(ctx, s.RefreshToken)
		check(t, err)
		if _, err := c.WithToken(r.Token).Me(ctx); err != nil {
			t.Fatalf("refreshed session: %v", err)
		}
		_, err = c.Refresh(ctx, s.RefreshToken)
		mustProblem(t, err, identity.TypeRefreshReused)
		s2, err := c.Login(ctx, enrolled.DeviceID, laptop, password)
		check(t, err)
		check(t, c.WithToken(s2.Token).Logout(ctx))
		_, err = c.WithToken(s2.Token).Me(ctx)
		if client.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("after logout: %v", err)
		}

		// The operator.
		s3, err := c.Login(ctx, enrolled.DeviceID, laptop, password)
		check(t, err)
		sess = c.WithToken(s3.Token)
		_, err = c.WithToken("kanal_op_wrong").CreateOrg(ctx, "Bürgeramt", identity.KindOffice)
		if client.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("wrong operator token: %v", err)
		}
		op := c.WithToken(dep.operator)
		org, err := op.CreateOrg(ctx, "Bürgeramt Musterstadt", identity.KindOffice)
		check(t, err)
		if org.Verified {
			t.Fatal("a new organisation is verified")
		}
		org, err = op.VerifyOrg(ctx, org.OrgID)
		check(t, err)
		if !org.Verified || org.Certificate == "" {
			t.Fatalf("verified organisation: %+v", org)
		}
		m, err := op.AddMember(ctx, org.OrgID, email, identity.RoleAgent)
		check(t, err)
		if m.AccountID != v.AccountID || len(m.Memberships) != 1 {
			t.Fatalf("member: %+v", m)
		}
		dirOrg, err := sess.DirectoryOrg(ctx, org.OrgID)
		check(t, err)
		if !dirOrg.Verified || len(dirOrg.Members) != 1 {
			t.Fatalf("directory org: %+v", dirOrg)
		}
		me, err = sess.Me(ctx)
		check(t, err)
		if len(me.Organisations) != 1 || me.Organisations[0].OrgID != org.OrgID {
			t.Fatalf("me: %+v", me)
		}
		check(t, op.RemoveMember(ctx, org.OrgID, v.AccountID))
		me, err = sess.Me(ctx)
		check(t, err)
		if len(me.Organisations) != 0 {
			t.Fatalf("after removal: %+v", me.Organisations)
		}
	})
}
