package payments

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/payments/jws"
)

// t0 is the tests' clock: a Monday morning.
var t0 = time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)

const (
	orgShop   = "org-shop"
	orgAmt    = "org-amt"
	seller    = "acc-seller"
	clerk     = "acc-clerk"
	citizen   = "acc-citizen"
	stranger  = "acc-stranger"
	testIBAN  = "DE89370400440532013000"
	secret    = "whsec_0123456789abcdef0123456789abcdef"
	pspAPIKey = "psp_test_key"
)

// roles is the organisations' membership, standing in for identity's
// member table (OrgRole is the only thing payments asks identity).
type roles map[string]string

func (r roles) OrgRole(_ context.Context, org, account string) (string, error) {
	return r[org+"/"+account], nil
}

// certs answers from the world's roles and revoked serials, as
// identity.Service does from its tables.
type certs struct{ w *world }

func (c certs) CheckDeviceCertificate(_ context.Context, serial *big.Int) error {
	if c.w.revoked[serial.String()] {
		return fmt.Errorf("device certificate %s is revoked", serial)
	}
	return nil
}

func (c certs) CheckMembership(ctx context.Context, org, account, device, role string, serial *big.Int) error {
	if c.w.revoked[serial.String()] {
		return errors.New("membership revoked")
	}
	if got, _ := c.w.roles.OrgRole(ctx, org, account); got != role {
		return fmt.Errorf("role is %q, not %q", got, role)
	}
	return nil
}

// recorder keeps announcements.
type recorder struct {
	mu  sync.Mutex
	got []Announcement
}

func (r *recorder) Announce(_ context.Context, a Announcement) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	return nil
}

func (r *recorder) statuses(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.got {
		if a.RequestID == id {
			out = append(out, a.Status)
		}
	}
	return out
}

// fakePSP is the outside payment provider: an HTTP server that creates
// payments and refunds and signs webhooks as a real provider would.
type fakePSP struct {
	srv      *httptest.Server
	payments atomic.Int64
	refunds  atomic.Int64
	down     atomic.Bool // refunds answer 503
	mu       sync.Mutex
	keys     map[string]bool
}

func newFakePSP(t testing.TB) *fakePSP {
	f := &fakePSP{keys: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+pspAPIKey {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		n := f.payments.Add(1)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": "pay_" + big.NewInt(n).String(), "checkout_url": "https://psp.example/checkout/" + big.NewInt(n).String()})
	})
	mux.HandleFunc("POST /v1/refunds", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+pspAPIKey {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if f.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		f.mu.Lock()
		k := r.Header.Get("Idempotency-Key")
		if !f.keys[k] {
			f.keys[k] = true
			f.refunds.Add(1)
		}
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": "re_1"})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// webhook is a signed delivery as the provider sends it.
func webhook(t testing.TB, at time.Time, ev WebhookEvent) (string, []byte) {
	t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return SignWebhook([]byte(secret), at, body), body
}

// world is one test's payments service over a real database, with a
// deployment CA, a merchant and an office.
type world struct {
	t       testing.TB
	d       *db.DB
	s       *Service
	now     time.Time
	ca      *ca.CA
	org     *ca.OrgAuthority
	psp     *fakePSP
	ann     *recorder
	revoked map[string]bool // revoked serials
	roles   roles
	keys    map[string]crypto.Signer
	cert    map[string][]byte
	// offerMod, if set, changes each offer before the seller signs it.
	offerMod func(*jws.Offer)
}

func newWorld(t testing.TB, d *db.DB) *world {
	t.Helper()
	authority, err := ca.Create("Musterstadt", t0.Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	org, err := authority.IssueOrganisation(ca.OrgRequest{OrgID: orgShop, Name: "Bäckerei Korn", Kind: ca.OrgMerchant, NotBefore: t0.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, d: d, now: t0, ca: authority, org: org, psp: newFakePSP(t), ann: &recorder{},
		keys: map[string]crypto.Signer{}, cert: map[string][]byte{}, revoked: map[string]bool{},
		roles: roles{orgShop + "/" + seller: "seller", orgAmt + "/" + clerk: "agent", orgShop + "/" + "acc-owner": "owner",
			orgAmt + "/" + "acc-amtsleiter": "admin"}}
	psp, err := NewPSP(PSPOptions{Name: "psp", BaseURL: w.psp.srv.URL, APIKey: pspAPIKey, WebhookSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	w.s, err = New(Options{DB: d, Now: func() time.Time { return w.now }, CA: authority.Certificate(),
		Certs: certs{w}, Orgs: w.roles,
		Announcer: w.ann, PSP: psp})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func actor(account string) Actor {
	return Actor{AccountID: account, DeviceID: "dev-" + account, Level: ca.LevelSubstantial}
}

// device enrols a device key for account with the real CA.
func (w *world) device(account string, level ca.Level) (crypto.Signer, []byte, ca.DeviceIdentity) {
	w.t.Helper()
	var key crypto.Signer
	if len(w.keys)%2 == 0 {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	cert, err := w.ca.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: account, DeviceID: "dev-" + account, Level: level, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		w.t.Fatal(err)
	}
	id, _ := ca.VerifyDevice(cert.Raw, w.ca.Pool(), t0)
	return key, cert.Raw, id
}

// offer makes the seller's signed offer, issued at issued; it is not
// registered.
func (w *world) offer(offerID string, issued time.Time) (string, []byte) {
	w.t.Helper()
	sk, sc, _ := w.device(seller, ca.LevelSubstantial)
	mem, err := w.org.IssueMembership(ca.MembershipRequest{DevicePublicKey: sk.Public(), AccountID: seller, DeviceID: "dev-" + seller, Role: "seller", NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		w.t.Fatal(err)
	}
	o := jws.Offer{Version: 1, OfferID: offerID, OrgID: orgShop, OrgName: "Bäckerei Korn", BuyerAccount: citizen,
		Items: []jws.Item{{Description: "Geburtstagstorte", Quantity: 1, UnitCents: 4500, VATBasisPoints: 700},
			{Description: "Kerzen", Quantity: 2, UnitCents: 250, VATBasisPoints: 1900}},
		Currency: "EUR", IssuedAt: issued, ValidUntil: w.now.Add(72 * time.Hour)}
	o.TotalCents, o.VATCents = jws.Totals(o.Items)
	if w.offerMod != nil {
		w.offerMod(&o)
	}
	offer, err := jws.SignOffer(o, jws.Seller{Key: sk, DeviceCert: sc, Membership: mem.Raw, OrgCert: w.org.Certificate().Raw}, w.ca.Pool())
	if err != nil {
		w.t.Fatal(err)
	}
	return offer, sc
}

// contract makes a signed contract: the seller's offer, registered by the
// seller, countersigned by the citizen at the world's time.
func (w *world) contract(offerID string, buyerLevel ca.Level) string {
	w.t.Helper()
	offer, sc := w.offer(offerID, w.now.Add(-time.Minute))
	if _, _, err := w.s.RegisterOffer(context.Background(), actor(seller), offer); err != nil {
		w.t.Fatal(err)
	}
	bk, bc, bid := w.device(citizen, buyerLevel)
	sid, _ := ca.VerifyDevice(sc, w.ca.Pool(), t0)
	c, err := jws.Countersign(offer, jws.Buyer{Key: bk, DeviceCert: bc, SellerStatus: w.status(sid.Serial), BuyerStatus: w.status(bid.Serial)},
		w.ca.Certificate(), w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

// status is the CA's signed status of serial now, as POST /v1/ocsp
// answers.
func (w *world) status(serial *big.Int) []byte {
	w.t.Helper()
	der, err := w.ca.SignStatus(serial, nil, w.now, w.now.Add(time.Hour))
	if err != nil {
		w.t.Fatal(err)
	}
	return der
}

// fee is valid parameters of an office fee.
func fee() CreateParams {
	return CreateParams{PayerAccount: citizen, AmountCents: 3700, Creditor: "Stadtkasse Musterstadt", IBAN: "DE89 3704 0044 0532 0130 00",
		Purpose: "Reisepass, Antrag 2026-0815", DueDate: t0.AddDate(0, 0, 14).Format(time.DateOnly)}
}

// snapshot is the state that bad input must leave unchanged.
type snapshot struct{ requests, transitions, ledger, events, entries, idem, contracts, audit int64 }

func (w *world) snapshot() snapshot {
	w.t.Helper()
	var s snapshot
	for _, q := range []struct {
		table string
		n     *int64
	}{{"payments_requests", &s.requests}, {"payments_transitions", &s.transitions}, {"payments_ledger_entries", &s.ledger},
		{"payments_provider_events", &s.events}, {"payments_bank_entries", &s.entries}, {"payments_idempotency", &s.idem},
		{"payments_contracts", &s.contracts}, {"payments_audit", &s.audit}} {
		if err := w.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM `+q.table).Scan(q.n); err != nil {
			w.t.Fatal(err)
		}
	}
	return s
}

// balanced fails the test unless the books sum to zero.
func (w *world) balanced() *Books {
	w.t.Helper()
	b, err := w.s.CheckBooks(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	if !b.Balanced || b.TotalCents != 0 {
		w.t.Fatalf("books do not balance: %+v", b)
	}
	return b
}

// unchanged fails the test if bad input changed anything.
func (w *world) unchanged(before snapshot, what string) {
	w.t.Helper()
	if after := w.snapshot(); after != before {
		w.t.Errorf("%s changed the database: %+v -> %+v", what, before, after)
	}
	w.balanced()
}

// parseForTest returns the serial of the seller's device certificate in
// a contract.
func parseForTest(contract string, w *world) (*big.Int, error) {
	c, err := jws.VerifyContract(contract, jws.VerifyOptions{CA: w.ca.Certificate()})
	if err != nil {
		return nil, err
	}
	return c.Offer.SellerDevice.Serial, nil
}
