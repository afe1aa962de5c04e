package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestIntermediateIssuesWithoutRootKey: a CA directory made by InitOffline
// holds no root key; loaded, it issues devices, organisations,
// memberships, the notary, revocation lists and statuses, and clients that
// pin only the root verify all of it through TrustPool. After a rotation
// (which needs the root key, and only then) what the retired intermediate
// issued still verifies, and new certificates come from the new one.
func TestIntermediateIssuesWithoutRootKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	rootKeyFile := filepath.Join(t.TempDir(), "offline", "root.key")
	os.MkdirAll(filepath.Dir(rootKeyFile), 0o700)
	if _, err := InitOffline(dir, rootKeyFile, "Musterstadt", t0); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(rootKeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("root key file: %v %v", st, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); e.Name() != IssuingKeyFile && containsKey(b) {
			t.Fatalf("%s holds a private key", e.Name())
		}
	}
	if _, err := InitOffline(dir, rootKeyFile+"2", "Musterstadt", t0); err == nil {
		t.Fatal("InitOffline over an existing CA")
	}

	node, err := LoadIssuingDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := node.Root()
	if node.Certificate().Equal(root) || root.Subject.CommonName != "kanal deployment CA Musterstadt" {
		t.Fatalf("node CA %q, root %q", node.Certificate().Subject.CommonName, root.Subject.CommonName)
	}
	pool, err := TrustPool(root, node.Intermediates())
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)

	devKey := p256Key(t)
	dev := issueDevice(t, node, devKey)
	if _, err := VerifyDevice(dev.Raw, pool, at); err != nil {
		t.Fatalf("device under the intermediate: %v", err)
	}
	rootOnly := x509.NewCertPool()
	rootOnly.AddCert(root)
	if _, err := VerifyDevice(dev.Raw, rootOnly, at); err == nil {
		t.Fatal("verified without the intermediate: the chain is not root → intermediate → device")
	}
	org := newOrg(t, node, "org-1")
	mem := issueMembership(t, org, devKey.Public())
	if _, err := VerifyMembership(mem.Raw, org.Certificate().Raw, pool, at); err != nil {
		t.Fatalf("membership under the intermediate: %v", err)
	}
	n, err := node.Notary(dir, at)
	if err != nil {
		t.Fatal(err)
	}
	sig := n.Sign("test", []byte("hello"))
	if err := VerifyNotarized(n.Certificate().Raw, pool, at, "test", []byte("hello"), sig); err != nil {
		t.Fatalf("notary under the intermediate: %v", err)
	}
	crl, err := node.RevocationList([]Revoked{{Serial: dev.SerialNumber, At: at}}, big.NewInt(1), at, at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, revoked, err := CheckRevoked(crl, node.Certificate(), dev.SerialNumber); err != nil || !revoked {
		t.Fatalf("CRL of the intermediate: %v %v", revoked, err)
	}

	// Rotation: only with the root key.
	if _, err := RotateIntermediate(dir, []byte("not a key"), "Musterstadt 2", at); err == nil {
		t.Fatal("rotated without the root key")
	}
	rootKey, _ := os.ReadFile(rootKeyFile)
	if _, err := RotateIntermediate(dir, rootKey, "Musterstadt 2", at); err != nil {
		t.Fatal(err)
	}
	node2, err := LoadIssuingDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(node2.Intermediates()) != 2 || !node2.Intermediates()[1].Equal(node.Certificate()) {
		t.Fatalf("retired intermediates: %d", len(node2.Intermediates()))
	}
	pool2, err := TrustPool(root, node2.Intermediates())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDevice(dev.Raw, pool2, at); err != nil {
		t.Fatalf("a device of the retired intermediate after rotation: %v", err)
	}
	dev2 := issueDevice(t, node2, p256Key(t))
	if _, err := VerifyDevice(dev2.Raw, pool2, at); err != nil || !bytesEqual(dev2.RawIssuer, node2.Certificate().RawSubject) {
		t.Fatalf("a device of the new intermediate: %v", err)
	}
	if _, err := node2.IssueIntermediate("x", at); err == nil {
		t.Fatal("an intermediate issued an intermediate")
	}
}

func containsKey(b []byte) bool { return bytes.Contains(b, []byte("PRIVATE KEY")) }

func bytesEqual(a, b []byte) bool { return bytes.Equal(a, b) }

// TestAttackForeignIntermediate: an intermediate the deployment's root did
// not sign — another deployment's, a self-made one copying the real
// one's name, an organisation's CA passed off as an intermediate, or the
// root itself — is refused by TrustPool and LoadIssuingDir, and what it
// issues does not verify under the deployment's pool.
func TestAttackForeignIntermediate(t *testing.T) {
	root := newCA(t)
	inter, err := root.IssueIntermediate("Musterstadt", t0)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := TrustPool(root.Certificate(), []*x509.Certificate{inter.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)

	other, _ := Create("Musterstadt", t0) // same name, another key
	foreign, _ := other.IssueIntermediate("Musterstadt", t0)
	org := newOrg(t, root, "org-1")
	orgUnderInter := newOrg(t, inter, "org-2")
	cases := map[string]*x509.Certificate{
		"another root's intermediate":        foreign.Certificate(),
		"the other root itself":              other.Certificate(),
		"an organisation CA under the root":  org.Certificate(),
		"an organisation CA under the inter": orgUnderInter.Certificate(),
		"a device certificate":               issueDevice(t, inter, p256Key(t)),
		"the root itself":                    root.Certificate(),
	}
	for name, c := range cases {
		if _, err := TrustPool(root.Certificate(), []*x509.Certificate{inter.Certificate(), c}); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s accepted as an intermediate: %v", name, err)
		}
	}
	// What the foreign intermediate issues does not verify under the
	// deployment's pool, even with the real intermediate's name.
	dev := issueDevice(t, foreign, p256Key(t))
	if _, err := VerifyDevice(dev.Raw, pool, at); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("a device of a foreign intermediate: %v", err)
	}
	// An organisation cannot mint devices: its certificate is not an
	// intermediate, and a device signed with its key does not chain.
	tmpl := *issueDevice(t, inter, p256Key(t))
	tmpl.SerialNumber = big.NewInt(99)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, orgUnderInter.Certificate(), p256Key(t).Public(), orgUnderInter.key)
	if err == nil {
		if _, err := VerifyDevice(der, pool, at); err == nil {
			t.Fatal("a device minted by an organisation CA verified")
		}
	}
	// A node directory whose issuing.pem is a foreign intermediate does
	// not load.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, RootCertFile), root.CertPEM(), 0o644)
	if err := saveIssuing(dir, foreign); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIssuingDir(dir); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("a foreign intermediate loaded: %v", err)
	}
}
