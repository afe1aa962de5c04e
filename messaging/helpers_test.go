package messaging_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging"
)

var testNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// fakeDir is an in-memory Directory with real certificates.
type fakeDir struct {
	ca *ca.CA

	mu      sync.Mutex
	devices map[string]messaging.Device
	revoked map[string]bool
	orgs    map[string]*ca.OrgAuthority
	agents  map[string][]string // org → device ids
}

func newFakeDir(t testing.TB) *fakeDir {
	t.Helper()
	c, err := ca.Create("test", testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeDir{ca: c, devices: map[string]messaging.Device{}, revoked: map[string]bool{},
		orgs: map[string]*ca.OrgAuthority{}, agents: map[string][]string{}}
}

// notary returns a notary of the directory's CA, as kanald loads it from
// the CA directory.
func (f *fakeDir) notary(t testing.TB) *ca.Notary {
	t.Helper()
	n, err := f.ca.Notary(t.TempDir(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fakeDir) Device(_ context.Context, id string) (messaging.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok || f.revoked[id] {
		return messaging.Device{}, fmt.Errorf("fake: %s: %w", id, messaging.ErrUnknownDevice)
	}
	return d, nil
}

func (f *fakeDir) AccountDevices(_ context.Context, account string) ([]messaging.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []messaging.Device
	for id, d := range f.devices {
		if d.AccountID == account && !f.revoked[id] {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeDir) DevicesOf(ctx context.Context, accounts []string) ([]messaging.Device, error) {
	var out []messaging.Device
	for _, a := range accounts {
		ds, err := f.AccountDevices(ctx, a)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			out = append(out, messaging.Device{DeviceID: d.DeviceID, AccountID: d.AccountID})
		}
	}
	return out, nil
}

func (f *fakeDir) OrgAgents(_ context.Context, org string) ([]byte, []messaging.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	oa, ok := f.orgs[org]
	if !ok {
		return nil, nil, fmt.Errorf("fake: %s: %w", org, messaging.ErrUnknownOrg)
	}
	var out []messaging.Device
	for _, id := range f.agents[org] {
		if !f.revoked[id] {
			out = append(out, f.devices[id])
		}
	}
	return oa.Certificate().Raw, out, nil
}

func (f *fakeDir) revoke(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked[id] = true
}

// device is a test device: its device key and certificate, and its E2E keys.
type device struct {
	id, account string
	key         crypto.Signer
	cert        []byte
	identity    keys.IdentityPrivate
	spk         keys.SignedPrekeyPrivate
	lastResort  keys.PQPrekeyPrivate
}

// enroll creates a device with a P-256 (odd n) or Ed25519 key and registers
// it in the directory.
func (f *fakeDir) enroll(t testing.TB, account, id string, p256 bool) *device {
	t.Helper()
	var key crypto.Signer
	if p256 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	} else {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := f.ca.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: account, DeviceID: id, Level: ca.LevelLow, NotBefore: testNow.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	d := &device{id: id, account: account, key: key, cert: cert.Raw}
	if d.identity, err = keys.GenerateIdentity(nil); err != nil {
		t.Fatal(err)
	}
	if d.spk, err = keys.GenerateSignedPrekey(nil, 1); err != nil {
		t.Fatal(err)
	}
	if d.lastResort, err = keys.GeneratePQPrekey(nil, 1, true); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.devices[id] = messaging.Device{DeviceID: id, AccountID: account, Certificate: cert.Raw}
	f.mu.Unlock()
	return d
}

// addOrg creates a verified organisation with the given agent devices.
func (f *fakeDir) addOrg(t testing.TB, org string, agents ...*device) {
	t.Helper()
	oa, err := f.ca.IssueOrganisation(ca.OrgRequest{OrgID: org, Name: "Bürgeramt " + org, Kind: ca.OrgOffice, NotBefore: testNow.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orgs[org] = oa
	for _, a := range agents {
		m, err := oa.IssueMembership(ca.MembershipRequest{DevicePublicKey: a.key.Public(), AccountID: a.account,
			DeviceID: a.id, Role: "agent", NotBefore: testNow.Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		d := f.devices[a.id]
		d.Membership = m.Raw
		f.devices[a.id] = d
		f.agents[org] = append(f.agents[org], a.id)
	}
}

func (d *device) caller() messaging.Caller {
	return messaging.Caller{AccountID: d.account, DeviceID: d.id}
}

func text(t testing.TB, k interface{ MarshalText() ([]byte, error) }) string {
	t.Helper()
	b, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sig(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// publishRequest builds a valid PUT /v1/prekeys body.
func (d *device) publishRequest(t testing.TB) *messaging.PublishRequest {
	t.Helper()
	binding, err := keys.SignIdentity(d.key, d.identity.Public(), d.id)
	if err != nil {
		t.Fatal(err)
	}
	spkSig, err := d.identity.SignSignedPrekey(d.spk.Public())
	if err != nil {
		t.Fatal(err)
	}
	lrSig, err := d.identity.SignPQPrekey(d.lastResort.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &messaging.PublishRequest{
		Identity:        text(t, d.identity.Public()),
		IdentityBinding: sig(binding),
		SignedPrekey:    text(t, d.spk.Public()),
		SignedPrekeySig: sig(spkSig),
		LastResort:      text(t, d.lastResort.Public()),
		LastResortSig:   sig(lrSig),
	}
}

// batch builds a valid one-time batch: n X25519 and m ML-KEM keys with ids
// from first on (ML-KEM ids offset by 1000 so they never meet the
// last-resort id 1).
func (d *device) batch(t testing.TB, first uint32, n, m int) *messaging.PrekeyBatch {
	t.Helper()
	var b messaging.PrekeyBatch
	for i := range n {
		k, err := keys.GenerateOneTimePrekey(nil, first+uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		b.OneTimePrekeys = append(b.OneTimePrekeys, text(t, k.Public()))
	}
	for i := range m {
		k, err := keys.GeneratePQPrekey(nil, 1000+first+uint32(i), false)
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.identity.SignPQPrekey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		b.PQPrekeys = append(b.PQPrekeys, messaging.SignedPQKey{Key: text(t, k.Public()), Sig: sig(s)})
	}
	return &b
}

// newService returns a prekey directory on d with a fixed clock.
func newService(t testing.TB, d *db.DB, dir messaging.Directory, now *time.Time) *messaging.Service {
	t.Helper()
	s, err := messaging.New(messaging.Options{DB: d, Directory: dir, Auth: testAuth(), Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type callerKey struct{}

// testAuth authenticates "Authorization: Test <account> <device>"; the
// HTTP test against identity's own middleware is in cmd/kanald.
func testAuth() messaging.Auth {
	return messaging.Auth{
		Require: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				f := strings.Fields(r.Header.Get("Authorization"))
				if len(f) != 3 || f[0] != "Test" {
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
				c := messaging.Caller{AccountID: f[1], DeviceID: f[2]}
				h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
			})
		},
		Caller: func(ctx context.Context) (messaging.Caller, bool) {
			c, ok := ctx.Value(callerKey{}).(messaging.Caller)
			return c, ok
		},
	}
}
