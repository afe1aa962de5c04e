package ca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestMembership(t *testing.T) {
	c := newCA(t)
	org := newOrg(t, c, "buergeramt")
	for name, key := range map[string]crypto.Signer{"P-256": p256Key(t), "Ed25519": ed25519Key(t)} {
		t.Run(name, func(t *testing.T) {
			device := issueDevice(t, c, key)
			member := issueMembership(t, org, key.Public())
			m, err := VerifyMembership(member.Raw, org.cert.Raw, c.Pool(), t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			want := Membership{OrgID: "buergeramt", OrgKind: OrgOffice, OrgName: "Bürgeramt Musterstadt",
				AccountID: "acc-1", DeviceID: "dev-1", Role: "agent"}
			if m.OrgID != want.OrgID || m.OrgKind != want.OrgKind || m.OrgName != want.OrgName ||
				m.AccountID != want.AccountID || m.DeviceID != want.DeviceID || m.Role != want.Role {
				t.Errorf("got %+v", m)
			}
			if m.OrgSerial.Cmp(org.cert.SerialNumber) != 0 || m.Serial.Cmp(member.SerialNumber) != 0 {
				t.Error("serials differ")
			}
			d, err := VerifyDevice(device.Raw, c.Pool(), t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckSameDevice(d, m); err != nil {
				t.Error(err)
			}
			// Another device key, or another device id, is a mismatch.
			other := issueMembership(t, org, p256Key(t).Public())
			mo, err := VerifyMembership(other.Raw, org.cert.Raw, c.Pool(), t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckSameDevice(d, mo); !errors.Is(err, ErrMismatch) {
				t.Errorf("other key: %v", err)
			}
			m2 := m
			m2.DeviceID = "dev-2"
			if err := CheckSameDevice(d, m2); !errors.Is(err, ErrMismatch) {
				t.Errorf("other device: %v", err)
			}
		})
	}
}

func TestOrgCertificateShape(t *testing.T) {
	c := newCA(t)
	o := newOrg(t, c, "rat")
	cert := o.Certificate()
	if !cert.IsCA || cert.MaxPathLen != 0 || !cert.MaxPathLenZero || len(cert.URIs) != 1 ||
		cert.URIs[0].String() != "kanal:org:rat" || cert.Subject.Organization[0] != "Bürgeramt Musterstadt" {
		t.Errorf("organisation certificate %+v", cert)
	}
	// Path length zero: a certificate issued by a CA under the
	// organisation does not verify.
	subKey := p256Key(t)
	sub, err := sign(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sub"},
		NotBefore: t0, NotAfter: t0.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, o.cert, subKey.Public(), o.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := sign(&x509.Certificate{SerialNumber: big.NewInt(3), NotBefore: t0, NotAfter: t0.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, sub, p256Key(t).Public(), subKey)
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(o.cert)
	inter.AddCert(sub)
	opts := x509.VerifyOptions{Roots: c.Pool(), Intermediates: inter, CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("certificate under a sub-CA of an organisation verified")
	}
}

func TestOrgAuthorityPEM(t *testing.T) {
	c := newCA(t)
	o := newOrg(t, c, "markt-1")
	keyPEM, err := o.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	o2, err := ParseOrgAuthority(o.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !o2.Certificate().Equal(o.Certificate()) {
		t.Error("certificate differs")
	}
	key := p256Key(t)
	m := issueMembership(t, o2, key.Public())
	if _, err := VerifyMembership(m.Raw, o.cert.Raw, c.Pool(), t0); err != nil {
		t.Error(err)
	}
	otherKey, _ := newOrg(t, c, "markt-2").KeyPEM()
	if _, err := ParseOrgAuthority(o.CertPEM(), otherKey); !errors.Is(err, ErrBadCAKey) {
		t.Errorf("mismatched key: %v", err)
	}
	rootKey, _ := c.KeyPEM()
	if _, err := ParseOrgAuthority(c.CertPEM(), rootKey); !errors.Is(err, ErrMalformed) {
		t.Errorf("root as organisation: %v", err)
	}
}

func TestIssueOrganisationRejects(t *testing.T) {
	c := newCA(t)
	tests := []struct {
		name   string
		modify func(*OrgRequest)
		want   error
	}{
		{"bad id", func(r *OrgRequest) { r.OrgID = "a:b" }, ErrInvalidID},
		{"empty name", func(r *OrgRequest) { r.Name = "" }, ErrInvalidName},
		{"long name", func(r *OrgRequest) { r.Name = strings.Repeat("x", MaxNameLength+1) }, ErrInvalidName},
		{"control in name", func(r *OrgRequest) { r.Name = "a\nb" }, ErrInvalidName},
		{"padded name", func(r *OrgRequest) { r.Name = " a" }, ErrInvalidName},
		{"bad UTF-8 name", func(r *OrgRequest) { r.Name = "a\xff" }, ErrInvalidName},
		{"zero kind", func(r *OrgRequest) { r.Kind = 0 }, ErrInvalidOrgKind},
		{"kind 4", func(r *OrgRequest) { r.Kind = 4 }, ErrInvalidOrgKind},
		{"too long", func(r *OrgRequest) { r.NotAfter = t0.Add(MaxOrgLifetime + time.Second) }, ErrInvalidLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := OrgRequest{OrgID: "o", Name: "Org", Kind: OrgMerchant, NotBefore: t0}
			tt.modify(&req)
			if o, err := c.IssueOrganisation(req); !errors.Is(err, tt.want) || o != nil {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIssueMembershipRejects(t *testing.T) {
	c := newCA(t)
	o := newOrg(t, c, "o")
	key := p256Key(t)
	tests := []struct {
		name   string
		modify func(*MembershipRequest)
		want   error
	}{
		{"RSA key", func(r *MembershipRequest) { r.DevicePublicKey = rsaKey(t).Public() }, ErrUnsupportedKey},
		{"nil key", func(r *MembershipRequest) { r.DevicePublicKey = nil }, ErrUnsupportedKey},
		{"bad account", func(r *MembershipRequest) { r.AccountID = "" }, ErrInvalidID},
		{"bad device", func(r *MembershipRequest) { r.DeviceID = "x y" }, ErrInvalidID},
		{"empty role", func(r *MembershipRequest) { r.Role = "" }, ErrInvalidRole},
		{"bad role", func(r *MembershipRequest) { r.Role = "admin\n" }, ErrInvalidRole},
		{"too long", func(r *MembershipRequest) { r.NotAfter = t0.Add(MaxMembershipLifetime + time.Second) }, ErrInvalidLifetime},
		{"beyond the organisation", func(r *MembershipRequest) {
			r.NotBefore = o.cert.NotAfter.Add(-time.Hour)
			r.NotAfter = o.cert.NotAfter.Add(time.Hour)
		}, ErrInvalidLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := MembershipRequest{DevicePublicKey: key.Public(), AccountID: "a", DeviceID: "d", Role: "agent", NotBefore: t0}
			tt.modify(&req)
			if cert, err := o.IssueMembership(req); !errors.Is(err, tt.want) || cert != nil {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyMembershipRejects(t *testing.T) {
	c := newCA(t)
	other := newCA(t)
	key := p256Key(t)
	orgA := newOrg(t, c, "org-a")
	orgB := newOrg(t, c, "org-b")
	foreignOrg := newOrg(t, other, "org-a")
	member := issueMembership(t, orgA, key.Public())
	memberB := issueMembership(t, orgB, key.Public())
	foreignMember := issueMembership(t, foreignOrg, key.Public())
	device := issueDevice(t, c, key)

	craft := func(modify func(*x509.Certificate)) []byte {
		attrs, _ := marshalAttributes(utf8Attribute(derOrgRole, "agent"))
		serial, _ := randomSerial()
		tmpl := &x509.Certificate{
			SerialNumber: serial, Subject: pkix.Name{CommonName: "d"},
			NotBefore: t0, NotAfter: t0.Add(time.Hour),
			KeyUsage:        x509.KeyUsageDigitalSignature,
			ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			URIs:            []*url.URL{kanalURI(uriAccount, "a"), kanalURI(uriDevice, "d"), kanalURI(uriOrg, "org-a")},
			ExtraExtensions: []pkix.Extension{attrs},
		}
		modify(tmpl)
		cert, err := sign(tmpl, orgA.cert, key.Public(), orgA.key)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Raw
	}
	if _, err := VerifyMembership(craft(func(*x509.Certificate) {}), orgA.cert.Raw, c.Pool(), t0); err != nil {
		t.Fatalf("crafted baseline rejected: %v", err)
	}

	tests := []struct {
		name           string
		member, orgDER []byte
		roots          *x509.CertPool
		at             time.Time
		want           error
	}{
		{"issued by another organisation", memberB.Raw, orgA.cert.Raw, c.Pool(), t0, ErrUntrusted},
		{"device certificate as membership", device.Raw, orgA.cert.Raw, c.Pool(), t0, ErrWrongIssuer},
		{"organisation of another CA", foreignMember.Raw, foreignOrg.cert.Raw, c.Pool(), t0, ErrUntrusted},
		{"membership of another CA, our organisation", foreignMember.Raw, orgA.cert.Raw, c.Pool(), t0, ErrUntrusted},
		{"device certificate as organisation", member.Raw, device.Raw, c.Pool(), t0, ErrMalformed},
		{"root as organisation", member.Raw, c.cert.Raw, c.Pool(), t0, ErrMalformed},
		{"expired", member.Raw, orgA.cert.Raw, c.Pool(), member.NotAfter.Add(time.Second), ErrExpired},
		{"not yet valid", member.Raw, orgA.cert.Raw, c.Pool(), member.NotBefore.Add(-time.Second), ErrExpired},
		{"organisation expired", member.Raw, orgA.cert.Raw, c.Pool(), orgA.cert.NotAfter.Add(time.Second), ErrExpired},
		{"garbage organisation", member.Raw, []byte{1, 2, 3}, c.Pool(), t0, ErrMalformed},
		{"empty membership", nil, orgA.cert.Raw, c.Pool(), t0, ErrMalformed},
		{"nil roots", member.Raw, orgA.cert.Raw, nil, t0, ErrUntrusted},
		{"names another organisation", craft(func(tmpl *x509.Certificate) { tmpl.URIs[2] = kanalURI(uriOrg, "org-b") }), orgA.cert.Raw, c.Pool(), t0, ErrWrongIssuer},
		{"no org URI", craft(func(tmpl *x509.Certificate) { tmpl.URIs = tmpl.URIs[:2] }), orgA.cert.Raw, c.Pool(), t0, ErrMalformed},
		{"no role", craft(func(tmpl *x509.Certificate) { tmpl.ExtraExtensions = nil }), orgA.cert.Raw, c.Pool(), t0, ErrMalformed},
		{"role as enum", craft(func(tmpl *x509.Certificate) {
			ext, _ := marshalAttributes(enumAttribute(derOrgRole, 1))
			tmpl.ExtraExtensions = []pkix.Extension{ext}
		}), orgA.cert.Raw, c.Pool(), t0, ErrMalformed},
		{"bad role", craft(func(tmpl *x509.Certificate) {
			ext, _ := marshalAttributes(utf8Attribute(derOrgRole, "a b"))
			tmpl.ExtraExtensions = []pkix.Extension{ext}
		}), orgA.cert.Raw, c.Pool(), t0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := VerifyMembership(tt.member, tt.orgDER, tt.roots, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if m.OrgID != "" || m.AccountID != "" || m.PublicKey != nil {
				t.Error("membership returned with error")
			}
		})
	}
}
