package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestIssueVerifyDevice(t *testing.T) {
	c := newCA(t)
	for name, key := range map[string]crypto.Signer{"P-256": p256Key(t), "Ed25519": ed25519Key(t)} {
		t.Run(name, func(t *testing.T) {
			cert := issueDevice(t, c, key)
			if cert.SerialNumber.BitLen() > 128 || cert.SerialNumber.Sign() <= 0 {
				t.Errorf("serial %v", cert.SerialNumber)
			}
			if got := cert.NotAfter.Sub(cert.NotBefore); got != DefaultDeviceLifetime {
				t.Errorf("lifetime %v", got)
			}
			id, err := VerifyDevice(cert.Raw, c.Pool(), t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if id.AccountID != "acc-1" || id.DeviceID != "dev-1" || id.Level != LevelSubstantial {
				t.Errorf("identity %+v", id)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(id.PublicKey) {
				t.Error("public key differs")
			}
			if id.Serial.Cmp(cert.SerialNumber) != 0 || !id.NotAfter.Equal(cert.NotAfter) {
				t.Error("serial or NotAfter differs")
			}
		})
	}
}

func TestIssueDeviceLevels(t *testing.T) {
	c := newCA(t)
	key := p256Key(t)
	for _, l := range []Level{LevelLow, LevelSubstantial, LevelHigh} {
		req := deviceReq(t, key)
		req.Level = l
		cert, err := c.IssueDevice(req)
		if err != nil {
			t.Fatal(err)
		}
		id, err := VerifyDevice(cert.Raw, c.Pool(), t0)
		if err != nil || id.Level != l {
			t.Errorf("level %v: got %v, %v", l, id.Level, err)
		}
	}
}

func TestIssueDeviceRejects(t *testing.T) {
	c := newCA(t)
	key := p256Key(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tampered := csrFor(t, key)
	tampered[len(tampered)-1] ^= 0x01 // last byte of the signature
	tamperedEd := csrFor(t, ed25519Key(t))
	tamperedEd[len(tamperedEd)-1] ^= 0x80

	tests := []struct {
		name   string
		modify func(*DeviceRequest)
		want   error
	}{
		{"tampered P-256 signature", func(r *DeviceRequest) { r.CSR = tampered }, ErrBadCSR},
		{"tampered Ed25519 signature", func(r *DeviceRequest) { r.CSR = tamperedEd }, ErrBadCSR},
		{"garbage CSR", func(r *DeviceRequest) { r.CSR = []byte("not a csr") }, ErrBadCSR},
		{"empty CSR", func(r *DeviceRequest) { r.CSR = nil }, ErrBadCSR},
		{"huge CSR", func(r *DeviceRequest) { r.CSR = make([]byte, MaxCSRSize+1) }, ErrBadCSR},
		{"RSA key", func(r *DeviceRequest) { r.CSR = csrFor(t, rsaKey(t)) }, ErrUnsupportedKey},
		{"P-384 key", func(r *DeviceRequest) { r.CSR = csrFor(t, p384) }, ErrUnsupportedKey},
		{"empty account", func(r *DeviceRequest) { r.AccountID = "" }, ErrInvalidID},
		{"long account", func(r *DeviceRequest) { r.AccountID = strings.Repeat("a", MaxIDLength+1) }, ErrInvalidID},
		{"account with colon", func(r *DeviceRequest) { r.AccountID = "a:b" }, ErrInvalidID},
		{"account with slash", func(r *DeviceRequest) { r.AccountID = "a/b" }, ErrInvalidID},
		{"account with space", func(r *DeviceRequest) { r.AccountID = "a b" }, ErrInvalidID},
		{"account with percent", func(r *DeviceRequest) { r.AccountID = "a%3Ab" }, ErrInvalidID},
		{"account non-ASCII", func(r *DeviceRequest) { r.AccountID = "jürgen" }, ErrInvalidID},
		{"empty device", func(r *DeviceRequest) { r.DeviceID = "" }, ErrInvalidID},
		{"device with NUL", func(r *DeviceRequest) { r.DeviceID = "d\x00" }, ErrInvalidID},
		{"zero level", func(r *DeviceRequest) { r.Level = 0 }, ErrInvalidLevel},
		{"level 4", func(r *DeviceRequest) { r.Level = 4 }, ErrInvalidLevel},
		{"zero NotBefore", func(r *DeviceRequest) { r.NotBefore = time.Time{} }, ErrInvalidLifetime},
		{"NotAfter before NotBefore", func(r *DeviceRequest) { r.NotAfter = t0.Add(-time.Second) }, ErrInvalidLifetime},
		{"NotAfter equals NotBefore", func(r *DeviceRequest) { r.NotAfter = t0 }, ErrInvalidLifetime},
		{"lifetime over max", func(r *DeviceRequest) { r.NotAfter = t0.Add(MaxDeviceLifetime + time.Second) }, ErrInvalidLifetime},
		{"before the root", func(r *DeviceRequest) { r.NotBefore = t0.Add(-2 * time.Hour) }, ErrInvalidLifetime},
		{"after the root", func(r *DeviceRequest) {
			r.NotBefore = t0.Add(RootLifetime - time.Hour)
			r.NotAfter = t0.Add(RootLifetime + time.Hour)
		}, ErrInvalidLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := deviceReq(t, key)
			tt.modify(&req)
			cert, err := c.IssueDevice(req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if cert != nil {
				t.Error("certificate returned with error")
			}
		})
	}
	// The maximum itself is allowed.
	req := deviceReq(t, key)
	req.NotAfter = t0.Add(MaxDeviceLifetime)
	if _, err := c.IssueDevice(req); err != nil {
		t.Errorf("max lifetime: %v", err)
	}
}

func TestBadCSRMessage(t *testing.T) {
	c := newCA(t)
	req := deviceReq(t, p256Key(t))
	req.CSR[len(req.CSR)-1] ^= 1
	_, err := c.IssueDevice(req)
	if err == nil || !strings.HasPrefix(err.Error(), "ca: bad CSR signature") {
		t.Errorf("error %q", err)
	}
}

func TestVerifyDeviceRejects(t *testing.T) {
	c := newCA(t)
	other := newCA(t)
	key := p256Key(t)
	good := issueDevice(t, c, key)
	foreign := issueDevice(t, other, key)
	org := newOrg(t, c, "buergeramt")
	member := issueMembership(t, org, key.Public())

	// craft signs a device-like certificate with the real CA key, changed
	// by modify, to test the checks after chain verification.
	craft := func(modify func(*x509.Certificate)) []byte {
		attrs, err := marshalAttributes(enumAttribute(derLevelOfAssurance, int64(LevelHigh)))
		if err != nil {
			t.Fatal(err)
		}
		serial, _ := randomSerial()
		tmpl := &x509.Certificate{
			SerialNumber:    serial,
			Subject:         pkix.Name{CommonName: "dev-1"},
			NotBefore:       t0,
			NotAfter:        t0.Add(DefaultDeviceLifetime),
			KeyUsage:        x509.KeyUsageDigitalSignature,
			ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			URIs:            []*url.URL{kanalURI(uriAccount, "acc-1"), kanalURI(uriDevice, "dev-1")},
			ExtraExtensions: []pkix.Extension{attrs},
		}
		modify(tmpl)
		cert, err := sign(tmpl, c.cert, key.Public(), c.key)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Raw
	}
	if _, err := VerifyDevice(craft(func(*x509.Certificate) {}), c.Pool(), t0); err != nil {
		t.Fatalf("crafted baseline rejected: %v", err)
	}
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	badAttr := func(attrs ...attribute) func(*x509.Certificate) {
		return func(tmpl *x509.Certificate) {
			ext, err := marshalAttributes(attrs...)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.ExtraExtensions = []pkix.Extension{ext}
		}
	}

	tests := []struct {
		name  string
		der   []byte
		roots *x509.CertPool
		at    time.Time
		want  error
	}{
		{"expired", good.Raw, c.Pool(), good.NotAfter.Add(time.Second), ErrExpired},
		{"not yet valid", good.Raw, c.Pool(), good.NotBefore.Add(-time.Second), ErrExpired},
		{"other CA", foreign.Raw, c.Pool(), t0, ErrUntrusted},
		{"membership as device", member.Raw, c.Pool(), t0, ErrUntrusted},
		{"organisation as device", org.cert.Raw, c.Pool(), t0, ErrMalformed},
		{"root as device", c.cert.Raw, c.Pool(), t0, ErrUntrusted},
		{"nil roots", good.Raw, nil, t0, ErrUntrusted},
		{"zero time", good.Raw, c.Pool(), time.Time{}, ErrInvalidTime},
		{"empty", nil, c.Pool(), t0, ErrMalformed},
		{"garbage", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, c.Pool(), t0, ErrMalformed},
		{"truncated", good.Raw[:len(good.Raw)-1], c.Pool(), t0, ErrMalformed},
		{"tampered signature", flipLast(good.Raw), c.Pool(), t0, ErrUntrusted},
		{"no level", craft(func(tmpl *x509.Certificate) { tmpl.ExtraExtensions = nil }), c.Pool(), t0, ErrMalformed},
		{"level 0", craft(badAttr(enumAttribute(derLevelOfAssurance, 0))), c.Pool(), t0, ErrMalformed},
		{"level 9", craft(badAttr(enumAttribute(derLevelOfAssurance, 9))), c.Pool(), t0, ErrMalformed},
		{"level as string", craft(badAttr(utf8Attribute(derLevelOfAssurance, "high"))), c.Pool(), t0, ErrMalformed},
		{"level twice", craft(badAttr(enumAttribute(derLevelOfAssurance, 1), enumAttribute(derLevelOfAssurance, 3))), c.Pool(), t0, ErrMalformed},
		{"only a role", craft(badAttr(utf8Attribute(derOrgRole, "agent"))), c.Pool(), t0, ErrMalformed},
		{"critical attributes", craft(func(tmpl *x509.Certificate) { tmpl.ExtraExtensions[0].Critical = true }), c.Pool(), t0, ErrUntrusted},
		{"no device URI", craft(func(tmpl *x509.Certificate) { tmpl.URIs = tmpl.URIs[:1] }), c.Pool(), t0, ErrMalformed},
		{"extra org URI", craft(func(tmpl *x509.Certificate) { tmpl.URIs = append(tmpl.URIs, kanalURI(uriOrg, "x")) }), c.Pool(), t0, ErrMalformed},
		{"two accounts", craft(func(tmpl *x509.Certificate) { tmpl.URIs[1] = kanalURI(uriAccount, "acc-2") }), c.Pool(), t0, ErrMalformed},
		{"https URI", craft(func(tmpl *x509.Certificate) { tmpl.URIs[1] = mustURL("https://example.org/dev-1") }), c.Pool(), t0, ErrMalformed},
		{"bad id in URI", craft(func(tmpl *x509.Certificate) { tmpl.URIs[1] = mustURL("kanal:device:a%2Fb") }), c.Pool(), t0, ErrMalformed},
		{"DNS name", craft(func(tmpl *x509.Certificate) { tmpl.DNSNames = []string{"example.org"} }), c.Pool(), t0, ErrMalformed},
		{"server auth", craft(func(tmpl *x509.Certificate) { tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), c.Pool(), t0, ErrUntrusted},
		{"extra EKU", craft(func(tmpl *x509.Certificate) {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}), c.Pool(), t0, ErrMalformed},
		{"key encipherment", craft(func(tmpl *x509.Certificate) { tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment }), c.Pool(), t0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := VerifyDevice(tt.der, tt.roots, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if id != (DeviceIdentity{}) {
				t.Error("identity returned with error")
			}
		})
	}
}

func TestVerifyDeviceRSACertificate(t *testing.T) {
	// A certificate for an RSA key signed by the real CA (not something
	// IssueDevice would do) is still refused.
	c := newCA(t)
	attrs, _ := marshalAttributes(enumAttribute(derLevelOfAssurance, 1))
	serial, _ := randomSerial()
	cert, err := sign(&x509.Certificate{
		SerialNumber: serial, NotBefore: t0, NotAfter: t0.Add(time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:            []*url.URL{kanalURI(uriAccount, "a"), kanalURI(uriDevice, "d")},
		ExtraExtensions: []pkix.Extension{attrs},
	}, c.cert, rsaKey(t).Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDevice(cert.Raw, c.Pool(), t0); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("got %v", err)
	}
}

func flipLast(b []byte) []byte {
	out := bytes.Clone(b)
	out[len(out)-1] ^= 1
	return out
}
