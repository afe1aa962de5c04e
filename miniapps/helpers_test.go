package miniapps

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// t0 is the tests' clock: now, because the OpenID library computes expires_in
// against the real clock.
var t0 = time.Now().UTC().Truncate(time.Second)

const (
	orgBakery = "org-bakery"
	owner     = "acc-owner"
	citizen   = "acc-citizen"
	citizen2  = "acc-citizen2"
)

// fakeCerts stands in for identity's certificate records: revoked serials.
type fakeCerts struct{ revoked map[string]bool }

func (c fakeCerts) CheckDeviceCertificate(_ context.Context, serial *big.Int) error {
	if c.revoked[serial.String()] {
		return errors.New("device certificate revoked")
	}
	return nil
}

func (c fakeCerts) CheckMembership(_ context.Context, _, _, _, _ string, serial *big.Int) error {
	if c.revoked[serial.String()] {
		return errors.New("membership revoked")
	}
	return nil
}

type orgNames map[string]string

func (o orgNames) OrgName(_ context.Context, id string) (string, error) {
	if n, ok := o[id]; ok {
		return n, nil
	}
	return "", errors.New("unknown organisation")
}

// world is one test's miniapps service over a real database, with a
// deployment CA and a bakery whose owner's device signs manifests.
type world struct {
	t      testing.TB
	d      *db.DB
	s      *Service
	now    time.Time
	ca     *ca.CA
	org    *ca.OrgAuthority
	member orgsig.Member
	certs  fakeCerts
	srv    *httptest.Server
	posts  []Post
	asks   []PaymentAsk
}

func run(t *testing.T, fn func(t *testing.T, w *world)) {
	dbtest.Run(t, []db.Migrations{Migrations()}, func(t *testing.T, d *db.DB) { fn(t, newWorld(t, d)) })
}

func newWorld(t testing.TB, d *db.DB) *world {
	t.Helper()
	authority, err := ca.Create("Musterstadt", t0.Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	org, err := authority.IssueOrganisation(ca.OrgRequest{OrgID: orgBakery, Name: "Bäckerei Korn", Kind: ca.OrgMerchant, NotBefore: t0.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, d: d, now: t0, ca: authority, org: org, certs: fakeCerts{revoked: map[string]bool{}}}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	dev, err := authority.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: owner, DeviceID: "dev-" + owner, Level: ca.LevelSubstantial, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := org.IssueMembership(ca.MembershipRequest{DevicePublicKey: key.Public(), AccountID: owner, DeviceID: "dev-" + owner, Role: "owner", NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w.member = orgsig.Member{Key: key, DeviceCert: dev.Raw, Membership: mem.Raw, OrgCert: org.Certificate().Raw}
	mux := http.NewServeMux()
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	secret := make([]byte, 32)
	rand.Read(secret)
	w.s, err = New(Options{DB: d, Now: func() time.Time { return w.now }, CA: authority.Certificate(), Certs: w.certs,
		Orgs: orgNames{orgBakery: "Bäckerei Korn"}, Secret: secret, Issuer: w.srv.URL + "/oidc",
		OrgConversation: func(org, acc string) string { return "o_" + org + "_" + acc },
		Bridge: Bridge{
			Post: func(_ context.Context, p Post) error { w.posts = append(w.posts, p); return nil },
			RequestPayment: func(_ context.Context, p PaymentAsk) (string, error) {
				w.asks = append(w.asks, p)
				return "pr_test", nil
			},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.s.Register(mux, Auth{
		Session:  func(h http.Handler) http.Handler { return h },
		Operator: func(h http.Handler) http.Handler { return h },
		Caller:   func(ctx context.Context) (Actor, bool) { return Actor{}, false },
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

// manifest is the bakery's manifest, version v, with scopes.
func (w *world) manifest(appID string, v int, scopes ...string) Manifest {
	return Manifest{Version: 1, AppID: appID, OrgID: orgBakery, Name: "Bäckerei Korn: Bestellung", AppVer: v,
		Origins: []string{"https://baeckerei.example"}, Redirects: []string{"https://baeckerei.example/callback"},
		LaunchURL: "https://baeckerei.example/launch", Icon: "https://baeckerei.example/icon.png",
		Scopes: scopes, IssuedAt: w.now.Add(-time.Minute)}
}

func (w *world) sign(m Manifest) string {
	w.t.Helper()
	s, err := SignManifest(m, w.member, w.ca.Pool())
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

var ownerActor = Actor{AccountID: owner, DeviceID: "dev-" + owner, Level: ca.LevelSubstantial}
var operator = Actor{Operator: true}

func citizenActor(acc string) Actor {
	return Actor{AccountID: acc, DeviceID: "dev-" + acc, Level: ca.LevelSubstantial}
}

// approvedApp registers and approves an app, and has citizen consent to
// every scope.
func (w *world) approvedApp(appID string, scopes ...string) {
	w.t.Helper()
	ctx := context.Background()
	if _, err := w.s.RegisterManifest(ctx, ownerActor, w.sign(w.manifest(appID, 1, scopes...))); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.s.Approve(ctx, operator, appID); err != nil {
		w.t.Fatal(err)
	}
}

var _ crypto.Signer = (*ecdsa.PrivateKey)(nil)
