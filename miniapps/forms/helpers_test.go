package forms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
)

var t0 = time.Date(2026, 11, 4, 10, 0, 0, 0, time.UTC)

// deployment is a CA with one organisation and one member device, made
// with the real identity/ca.
type deployment struct {
	ca     *ca.CA
	org    *ca.OrgAuthority
	member orgsig.Member
}

func newDeployment(t testing.TB, city, orgID, orgName string, kind ca.OrgKind) *deployment {
	t.Helper()
	c, err := ca.Create(city, t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return addOrg(t, c, orgID, orgName, kind)
}

func addOrg(t testing.TB, c *ca.CA, orgID, orgName string, kind ca.OrgKind) *deployment {
	t.Helper()
	org, err := c.IssueOrganisation(ca.OrgRequest{OrgID: orgID, Name: orgName, Kind: kind, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var key crypto.Signer
	if kind == ca.OrgCouncil {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	} else {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := c.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: "acc-" + orgID, DeviceID: "dev-" + orgID, Level: ca.LevelSubstantial, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := org.IssueMembership(ca.MembershipRequest{DevicePublicKey: key.Public(), AccountID: "acc-" + orgID, DeviceID: "dev-" + orgID,
		Role: "agent", NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &deployment{ca: c, org: org, member: orgsig.Member{Key: key, DeviceCert: dev.Raw, Membership: mem.Raw, OrgCert: org.Certificate().Raw}}
}

// template returns the shipped template name, made the organisation's.
func (d *deployment) template(t testing.TB, name string) *Template {
	t.Helper()
	tpl, _, err := Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ca.VerifyMembership(d.member.Membership, d.member.OrgCert, d.ca.Pool(), t0)
	tpl.Org = OrgRef{ID: m.OrgID, Name: m.OrgName}
	return recheck(t, tpl)
}

// recheck runs an edited template through Decode again.
func recheck(t testing.TB, tpl *Template) *Template {
	t.Helper()
	raw, err := tpl.canonical()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (d *deployment) sign(t testing.TB, tpl *Template, lineage []Ancestor) (Signed, *Verified) {
	t.Helper()
	s, v, err := Sign(tpl, lineage, d.member, d.ca.Certificate(), t0)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func parseCert(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }
