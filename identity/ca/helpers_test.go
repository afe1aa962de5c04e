package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newCA(t testing.TB) *CA {
	t.Helper()
	c, err := Create("Musterstadt", t0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func p256Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ed25519Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var rsaOnce = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsaOnce()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "ignored"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func deviceReq(t testing.TB, key crypto.Signer) DeviceRequest {
	return DeviceRequest{
		CSR:       csrFor(t, key),
		AccountID: "acc-1",
		DeviceID:  "dev-1",
		Level:     LevelSubstantial,
		NotBefore: t0,
	}
}

func issueDevice(t testing.TB, c *CA, key crypto.Signer) *x509.Certificate {
	t.Helper()
	cert, err := c.IssueDevice(deviceReq(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func newOrg(t testing.TB, c *CA, id string) *OrgAuthority {
	t.Helper()
	o, err := c.IssueOrganisation(OrgRequest{OrgID: id, Name: "Bürgeramt Musterstadt", Kind: OrgOffice, NotBefore: t0})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func issueMembership(t testing.TB, o *OrgAuthority, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	cert, err := o.IssueMembership(MembershipRequest{
		DevicePublicKey: pub, AccountID: "acc-1", DeviceID: "dev-1", Role: "agent", NotBefore: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
