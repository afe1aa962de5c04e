package orgsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

var t0 = time.Date(2026, 11, 4, 10, 0, 0, 0, time.UTC)

func member(t *testing.T, c *ca.CA, org *ca.OrgAuthority, account string, ed bool) Member {
	t.Helper()
	var m Member
	if ed {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		m.Key = k
	} else {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		m.Key = k
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, m.Key)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := c.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: account, DeviceID: "dev-" + account, Level: ca.LevelSubstantial, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := org.IssueMembership(ca.MembershipRequest{DevicePublicKey: m.Key.Public(), AccountID: account, DeviceID: "dev-" + account, Role: "agent", NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	m.DeviceCert, m.Membership, m.OrgCert = dev.Raw, mem.Raw, org.Certificate().Raw
	return m
}

// TestSignVerifyMember: a document signed by a member verifies with its
// own media type only, against its own CA only, and names the member.
func TestSignVerifyMember(t *testing.T) {
	c, _ := ca.Create("Musterstadt", t0.Add(-24*time.Hour))
	other, _ := ca.Create("Musterstadt", t0.Add(-24*time.Hour))
	org, _ := c.IssueOrganisation(ca.OrgRequest{OrgID: "amt", Name: "Bürgeramt", Kind: ca.OrgOffice, NotBefore: t0.Add(-time.Hour)})
	at := func([]byte) (time.Time, error) { return t0, nil }
	for _, ed := range []bool{false, true} {
		m := member(t, c, org, "acc-1", ed)
		s, mem, err := SignMember(m, c.Pool(), t0, "kanal-test+jws", []byte(`{"a":1}`))
		if err != nil || mem.OrgID != "amt" {
			t.Fatalf("sign: %v", err)
		}
		got, err := VerifyMember(s, 1<<16, "kanal-test+jws", c.Pool(), at)
		if err != nil || string(got.Payload) != `{"a":1}` || got.Device.AccountID != "acc-1" || got.Membership.Role != "agent" {
			t.Fatalf("verify: %v", err)
		}
		if _, err := VerifyMember(s, 1<<16, "kanal-offer+jws", c.Pool(), at); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "typ") {
			t.Fatalf("another media type: %v", err)
		}
		if _, err := VerifyMember(s, 1<<16, "kanal-test+jws", other.Pool(), at); !errors.Is(err, ErrCertificate) {
			t.Fatalf("another CA: %v", err)
		}
		if _, err := VerifyMember(s, 10, "kanal-test+jws", c.Pool(), at); !errors.Is(err, ErrMalformed) {
			t.Fatalf("over the size limit: %v", err)
		}
		late := func([]byte) (time.Time, error) { return t0.Add(10 * 365 * 24 * time.Hour), nil }
		if _, err := VerifyMember(s, 1<<16, "kanal-test+jws", c.Pool(), late); !errors.Is(err, ErrCertificate) {
			t.Fatalf("certificates checked at a time they were not valid: %v", err)
		}
	}
	// A key that is not the certificate's is refused before signing.
	m := member(t, c, org, "acc-2", false)
	m2 := member(t, c, org, "acc-3", false)
	m.Key = m2.Key
	if _, _, err := SignMember(m, c.Pool(), t0, "kanal-test+jws", []byte(`{}`)); !errors.Is(err, ErrCertificate) {
		t.Fatalf("foreign key: %v", err)
	}
	// A membership of another device is refused.
	m = member(t, c, org, "acc-4", false)
	m.Membership = m2.Membership
	if _, _, err := SignMember(m, c.Pool(), t0, "kanal-test+jws", []byte(`{}`)); !errors.Is(err, ErrCertificate) {
		t.Fatalf("another device's membership: %v", err)
	}
}

// opaqueSigner hides the key's type, as the web app's WebCrypto key does:
// Sign sees only a crypto.Signer.
type opaqueSigner struct{ k crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.k.Public() }
func (o opaqueSigner) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.k.Sign(r, msg, opts)
}

// TestSignWithOpaqueSigner: a signer that is not *ecdsa.PrivateKey or
// ed25519.PrivateKey signs documents that verify (ES256 made r ‖ s with a
// low s from the signer's ASN.1), and a signer of another key type, or
// one that returns garbage, is refused.
func TestSignWithOpaqueSigner(t *testing.T) {
	c, _ := ca.Create("Musterstadt", t0.Add(-24*time.Hour))
	org, _ := c.IssueOrganisation(ca.OrgRequest{OrgID: "amt", Name: "Bürgeramt", Kind: ca.OrgOffice, NotBefore: t0.Add(-time.Hour)})
	at := func([]byte) (time.Time, error) { return t0, nil }
	for _, ed := range []bool{false, true} {
		for i := 0; i < 20; i++ { // about half the ECDSA signatures have a high s
			m := member(t, c, org, "acc-1", ed)
			m.Key = opaqueSigner{m.Key}
			s, _, err := SignMember(m, c.Pool(), t0, "kanal-test+jws", []byte(`{"a":1}`))
			if err != nil {
				t.Fatalf("sign (Ed25519 %v): %v", ed, err)
			}
			if _, err := VerifyMember(s, 1<<16, "kanal-test+jws", c.Pool(), at); err != nil {
				t.Fatalf("verify (Ed25519 %v): %v", ed, err)
			}
		}
	}
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Sign(opaqueSigner{k}, "kanal-test+jws", nil, "x", nil, []byte(`{}`)); !errors.Is(err, ErrCertificate) {
		t.Fatalf("a P-384 key: %v", err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Sign(garbageSigner{p256}, "kanal-test+jws", nil, "x", nil, []byte(`{}`)); err == nil {
		t.Fatal("a signer that returns no ECDSA signature was accepted")
	}
}

type garbageSigner struct{ k *ecdsa.PrivateKey }

func (g garbageSigner) Public() crypto.PublicKey { return g.k.Public() }
func (g garbageSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01}, nil // r = 0
}
