package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"go/parser"
	"go/token"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateRoot(t *testing.T) {
	c := newCA(t)
	cert := c.Certificate()
	if cert.Subject.CommonName != "kanal deployment CA Musterstadt" || !cert.IsCA ||
		cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root %+v", cert.Subject)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if cert.NotAfter.Sub(t0) != RootLifetime {
		t.Errorf("lifetime %v", cert.NotAfter.Sub(t0))
	}
	for _, name := range []string{"", " x", strings.Repeat("x", MaxNameLength+1), "a\x00"} {
		if _, err := Create(name, t0); !errors.Is(err, ErrInvalidName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if _, err := Create("x", time.Time{}); !errors.Is(err, ErrInvalidTime) {
		t.Errorf("zero time: %v", err)
	}
}

func TestParseRoundTrip(t *testing.T) {
	c := newCA(t)
	keyPEM, err := c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatal("key is not PEM PKCS#8")
	}
	c2, err := Parse(c.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Certificate().Equal(c.Certificate()) {
		t.Error("certificate differs")
	}
	// A device certificate issued by the parsed CA verifies under the original.
	cert := issueDevice(t, c2, p256Key(t))
	if _, err := VerifyDevice(cert.Raw, c.Pool(), t0); err != nil {
		t.Error(err)
	}

	otherKey, _ := newCA(t).KeyPEM()
	org := newOrg(t, c, "o")
	device := issueDevice(t, c, p256Key(t))
	for name, tt := range map[string]struct {
		cert, key []byte
		want      error
	}{
		"mismatched key":   {c.CertPEM(), otherKey, ErrBadCAKey},
		"device cert":      {pemCert(device.Raw), keyPEM, ErrBadCAKey},
		"no cert":          {nil, keyPEM, ErrBadCAKey},
		"no key":           {c.CertPEM(), nil, ErrBadCAKey},
		"two certs":        {append(c.CertPEM(), c.CertPEM()...), keyPEM, ErrBadCAKey},
		"key as cert":      {keyPEM, keyPEM, ErrBadCAKey},
		"cert as key":      {c.CertPEM(), c.CertPEM(), ErrBadCAKey},
		"garbage cert DER": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), keyPEM, ErrBadCAKey},
		"RSA key":          {c.CertPEM(), rsaPEM(t), ErrUnsupportedKey},
	} {
		if _, err := Parse(tt.cert, tt.key); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", name, err, tt.want)
		}
	}
	// An organisation certificate is a CA too, but Parse accepts any CA an
	// operator provides; its key belongs to the organisation.
	orgKey, _ := org.KeyPEM()
	if _, err := Parse(org.CertPEM(), orgKey); err != nil {
		t.Errorf("organisation as CA: %v", err)
	}
}

func rsaPEM(t *testing.T) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestLoadOrCreateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c, created, err := LoadOrCreateDir(dir, "Musterstadt", t0)
	if err != nil || !created {
		t.Fatalf("first call: %v, created %v", err, created)
	}
	assertMode(t, filepath.Join(dir, KeyFile), 0o600)
	assertMode(t, filepath.Join(dir, CertFile), 0o644)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the directory, want 2", len(entries))
	}

	c2, created, err := LoadOrCreateDir(dir, "ignored", t0.Add(time.Hour))
	if err != nil || created {
		t.Fatalf("second call: %v, created %v", err, created)
	}
	if !c2.Certificate().Equal(c.Certificate()) {
		t.Error("second call loaded a different CA")
	}

	// A crash between the two writes leaves the key alone: the next call
	// re-issues the root over the same key.
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	c3, created, err := LoadOrCreateDir(dir, "Musterstadt", t0)
	if err != nil || !created {
		t.Fatalf("repair: %v, created %v", err, created)
	}
	if !c3.Certificate().PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.Certificate().PublicKey) {
		t.Error("repair changed the key")
	}

	// A key readable by others is refused.
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(filepath.Join(dir, KeyFile), mode); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateDir(dir, "x", t0); !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("mode %v: %v", mode, err)
		}
	}
}

func TestLoadOrCreateDirOrphanCert(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CertFile), newCA(t).CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateDir(dir, "x", t0); err == nil {
		t.Error("replaced a certificate that has no key")
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", filepath.Base(path), st.Mode().Perm(), want)
	}
}

func TestOIDArc(t *testing.T) {
	// The arc is 2.25 followed by the UUID 19405fc1-3ded-4171-8ef2-1e86ee2851fd.
	u, _ := new(big.Int).SetString("19405fc13ded41718ef21e86ee2851fd", 16)
	if OIDArc != "2.25."+u.String() {
		t.Errorf("OIDArc %s does not match its UUID", OIDArc)
	}
	for _, s := range []string{OIDLevelOfAssurance, OIDOrgKind, OIDOrgRole} {
		oid, err := x509.ParseOID(s)
		if err != nil || oid.String() != s {
			t.Errorf("%s: %v", s, err)
		}
	}
}

func TestLevelAndKindText(t *testing.T) {
	for _, l := range []Level{LevelLow, LevelSubstantial, LevelHigh} {
		b, err := l.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Level
		if err := back.UnmarshalText(b); err != nil || back != l {
			t.Errorf("%v: %v %v", l, back, err)
		}
	}
	for _, k := range []OrgKind{OrgOffice, OrgCouncil, OrgMerchant} {
		b, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back OrgKind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Errorf("%v: %v %v", k, back, err)
		}
	}
	if _, err := ParseLevel("medium"); !errors.Is(err, ErrInvalidLevel) {
		t.Error(err)
	}
	if _, err := ParseOrgKind(""); !errors.Is(err, ErrInvalidOrgKind) {
		t.Error(err)
	}
	if _, err := Level(0).MarshalText(); err == nil {
		t.Error("zero level marshalled")
	}
}

func TestPackageDoc(t *testing.T) {
	pkgs, err := parser.ParseDir(token.NewFileSet(), ".", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			if f.Doc != nil && strings.Contains(f.Doc.Text(), "membership certificate") {
				return
			}
		}
	}
	t.Error("package ca has no doc comment describing the PKI")
}

func FuzzVerifyDevice(f *testing.F) {
	c := newCA(f)
	org := newOrg(f, c, "o")
	key := p256Key(f)
	f.Add(issueDevice(f, c, key).Raw)
	f.Add(issueDevice(f, c, ed25519Key(f)).Raw)
	f.Add(issueMembership(f, org, key.Public()).Raw)
	f.Add(org.cert.Raw)
	f.Add(c.cert.Raw)
	f.Add([]byte{})
	roots := c.Pool()
	f.Fuzz(func(t *testing.T, der []byte) {
		id, err := VerifyDevice(der, roots, t0.Add(time.Hour))
		if err != nil {
			return
		}
		if !ValidID(id.AccountID) || !ValidID(id.DeviceID) || !id.Level.valid() || checkDeviceKey(id.PublicKey) != nil {
			t.Fatalf("accepted %+v", id)
		}
		// Membership verification of the same bytes must not panic either.
		_, _ = VerifyMembership(der, org.cert.Raw, roots, t0)
		_, _, _ = CheckRevoked(der, c.cert, big.NewInt(1))
	})
}
