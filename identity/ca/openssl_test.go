package ca

import (
	"crypto"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The OpenSSL tests check that kanal's certificates are ordinary X.509 to
// outside tools. They need openssl on PATH; CI has it, so a missing binary is
// a failure rather than a skip.

func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not found on PATH (%v): install OpenSSL to run the interoperability tests", err)
	}
	return p
}

func runOpenSSL(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(opensslPath(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenSSLVerify(t *testing.T) {
	dir := t.TempDir()
	c, err := Create("Musterstadt", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	writeFile(t, dir, "ca.pem", c.CertPEM())
	org, err := c.IssueOrganisation(OrgRequest{OrgID: "buergeramt", Name: "Bürgeramt Musterstadt", Kind: OrgOffice, NotBefore: now})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "org.pem", org.CertPEM())

	for name, key := range map[string]crypto.Signer{"p256": p256Key(t), "ed25519": ed25519Key(t)} {
		req := deviceReq(t, key)
		req.NotBefore = now
		dev, err := c.IssueDevice(req)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, name+"-device.pem", pemCert(dev.Raw))
		member, err := org.IssueMembership(MembershipRequest{DevicePublicKey: key.Public(),
			AccountID: "acc-1", DeviceID: "dev-1", Role: "agent", NotBefore: now})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, name+"-member.pem", pemCert(member.Raw))

		for _, args := range [][]string{
			{"verify", "-CAfile", "ca.pem", name + "-device.pem"},
			{"verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", "ca.pem", name + "-device.pem"},
			{"verify", "-CAfile", "ca.pem", "-untrusted", "org.pem", name + "-member.pem"},
			{"verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", "ca.pem", "-untrusted", "org.pem", name + "-member.pem"},
		} {
			out := runOpenSSL(t, dir, args...)
			if !strings.Contains(out, name+"-") || !strings.HasSuffix(strings.TrimSpace(out), ": OK") {
				t.Errorf("openssl %s: %s", strings.Join(args, " "), out)
			}
		}
	}

	crl, err := c.RevocationList([]Revoked{{Serial: big.NewInt(42), At: now}}, big.NewInt(1), now, now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "crl.der", crl)
	out := runOpenSSL(t, dir, "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "ca.pem", "-noout", "-verify")
	if !strings.Contains(out, "verify OK") {
		t.Errorf("openssl crl -verify: %s", out)
	}
	orgCRL, err := org.RevocationList([]Revoked{{Serial: big.NewInt(43), At: now}}, big.NewInt(1), now, now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "org-crl.der", orgCRL)
	out = runOpenSSL(t, dir, "crl", "-inform", "DER", "-in", "org-crl.der", "-CAfile", "org.pem", "-noout", "-verify")
	if !strings.Contains(out, "verify OK") {
		t.Errorf("openssl crl -verify (organisation): %s", out)
	}

	// A device certificate from another CA must fail.
	other := newCA(t)
	foreign := issueDevice(t, other, p256Key(t))
	writeFile(t, dir, "foreign.pem", pemCert(foreign.Raw))
	cmd := exec.Command(opensslPath(t), "verify", "-CAfile", "ca.pem", "foreign.pem")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("openssl accepted a foreign certificate: %s", out)
	}
}

// TestOpenSSLCSR checks that IssueDevice accepts requests made by OpenSSL,
// the way a device without Go would make them.
func TestOpenSSLCSR(t *testing.T) {
	dir := t.TempDir()
	c := newCA(t)
	for name, genArgs := range map[string][]string{
		"p256":    {"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "key.pem"},
		"ed25519": {"genpkey", "-algorithm", "ED25519", "-out", "key.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			runOpenSSL(t, dir, genArgs...)
			runOpenSSL(t, dir, "req", "-new", "-key", "key.pem", "-subj", "/CN=device", "-outform", "DER", "-out", "req.der")
			der, err := os.ReadFile(filepath.Join(dir, "req.der"))
			if err != nil {
				t.Fatal(err)
			}
			req := DeviceRequest{CSR: der, AccountID: "acc-1", DeviceID: "dev-1", Level: LevelLow, NotBefore: t0}
			cert, err := c.IssueDevice(req)
			if err != nil {
				t.Fatal(err)
			}
			id, err := VerifyDevice(cert.Raw, c.Pool(), t0)
			if err != nil {
				t.Fatal(err)
			}
			// The certified key is the one OpenSSL generated.
			pubPEM := runOpenSSL(t, dir, "pkey", "-in", "key.pem", "-pubout")
			block, _ := pem.Decode([]byte(pubPEM))
			if block == nil || string(block.Bytes) != string(cert.RawSubjectPublicKeyInfo) || id.PublicKey == nil {
				t.Error("certified key differs from the OpenSSL key")
			}
		})
	}
	// An OpenSSL P-384 request is refused.
	runOpenSSL(t, dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "k384.pem")
	runOpenSSL(t, dir, "req", "-new", "-key", "k384.pem", "-subj", "/CN=device", "-outform", "DER", "-out", "r384.der")
	der, _ := os.ReadFile(filepath.Join(dir, "r384.der"))
	if _, err := c.IssueDevice(DeviceRequest{CSR: der, AccountID: "a", DeviceID: "d", Level: LevelLow, NotBefore: t0}); err == nil {
		t.Error("P-384 request accepted")
	}
}

// TestParseOpenSSLKey checks that an operator can bring a CA made with
// OpenSSL, with its key in SEC 1 form.
func TestParseOpenSSLKey(t *testing.T) {
	dir := t.TempDir()
	runOpenSSL(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
	runOpenSSL(t, dir, "req", "-new", "-x509", "-key", "ca.key", "-subj", "/CN=Operator CA", "-days", "3650",
		"-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
		"-out", "ca.pem")
	certPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	c, err := Parse(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req := deviceReq(t, p256Key(t))
	req.NotBefore = now
	cert, err := c.IssueDevice(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDevice(cert.Raw, c.Pool(), now.Add(time.Minute)); err != nil {
		t.Error(err)
	}
	writeFile(t, dir, "device.pem", pemCert(cert.Raw))
	runOpenSSL(t, dir, "verify", "-CAfile", "ca.pem", "device.pem")
}
