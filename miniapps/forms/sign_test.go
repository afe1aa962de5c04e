package forms

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
)

// TestAdoptionAcrossDeployments: Darmstadt publishes, exports a bundle;
// Griesheim (another CA) imports it with Darmstadt's CA certificate,
// adapts a field and signs its own version; anyone with Griesheim's CA
// certificate sees both organisations in the provenance.
func TestAdoptionAcrossDeployments(t *testing.T) {
	a := newDeployment(t, "Darmstadt", "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
	b := newDeployment(t, "Griesheim", "ordnungsamt", "Ordnungsamt Griesheim", ca.OrgOffice)
	sa, va := a.sign(t, a.template(t, "hundeanmeldung"), nil)
	if len(va.Provenance()) != 1 || va.Membership.OrgName != "Bürgeramt Darmstadt" {
		t.Fatalf("provenance %+v", va.Provenance())
	}
	bundle, err := ExportBundle([]Signed{sa}, a.member, a.ca.Certificate(), t0)
	if err != nil {
		t.Fatal(err)
	}
	// With its own CA, Griesheim cannot verify Darmstadt's bundle.
	if _, _, err := ImportBundle([]byte(bundle), b.ca.Certificate()); !errors.Is(err, ErrCertificate) {
		t.Fatalf("bundle verified against the wrong CA: %v", err)
	}
	imp, signer, err := ImportBundle([]byte(bundle+"\n"), a.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if len(imp) != 1 || signer.Membership.OrgID != "buergeramt" {
		t.Fatalf("imported %d, by %s", len(imp), signer.Membership.OrgID)
	}
	// Adapt: Griesheim asks for a phone number as a required field and
	// signs under its own name.
	parent, lineage := Descend(imp[0].Signed, imp[0].Verified, a.ca.Certificate().Raw)
	fork := b.template(t, "hundeanmeldung")
	fork.ID, fork.Version, fork.Parent = "hundeanmeldung-griesheim", "1.0.0", parent
	fork.Layout.Pages[0].Fields[6].Label = Text{"Telefon (Pflicht)", "Phone (required)"}
	fork.Schema = []byte(strings.Replace(string(fork.Schema), `"required":["`, `"required":["phone","`, 1))
	fork = recheck(t, fork)
	sb, vb := b.sign(t, fork, lineage)
	if !fork.Required("phone", nil) {
		t.Fatal("the adapted field is not required")
	}
	got, err := Verify(sb, b.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	var orgs []string
	for _, p := range got.Provenance() {
		orgs = append(orgs, p.Membership.OrgName+"@"+p.CA[:8])
	}
	if len(orgs) != 2 || !strings.HasPrefix(orgs[0], "Ordnungsamt Griesheim@") || !strings.HasPrefix(orgs[1], "Bürgeramt Darmstadt@") {
		t.Fatalf("provenance %v", orgs)
	}
	if vb.Ancestors[0].Template.Hash() != va.Template.Hash() {
		t.Fatal("the ancestor is not Darmstadt's version")
	}
	// Griesheim publishes 1.1.0 of its own version: three generations.
	next := recheck(t, fork)
	p2, l2 := Descend(sb, vb, b.ca.Certificate().Raw)
	next.Version, next.Parent = "1.1.0", p2
	next.ProcessingDays = 21
	_, v3 := b.sign(t, recheck(t, next), l2)
	if len(v3.Provenance()) != 3 {
		t.Fatalf("%d generations", len(v3.Provenance()))
	}
}

// TestAttackForgedLineage: a fork names a parent it does not descend
// from — another hash, another version, another CA, an ancestor left
// out or swapped — and is refused when signed and when verified.
func TestAttackForgedLineage(t *testing.T) {
	a := newDeployment(t, "Darmstadt", "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
	b := newDeployment(t, "Griesheim", "ordnungsamt", "Ordnungsamt Griesheim", ca.OrgOffice)
	sa, va := a.sign(t, a.template(t, "hundeanmeldung"), nil)
	other := a.template(t, "sperrmuell")
	so, vo := a.sign(t, other, nil)
	parent, lineage := Descend(sa, va, a.ca.Certificate().Raw)
	mk := func(edit func(p *Parent)) *Template {
		f := b.template(t, "hundeanmeldung")
		p := *parent
		edit(&p)
		f.Parent, f.Version = &p, "2.0.0"
		return recheck(t, f)
	}
	_, otherLineage := Descend(so, vo, a.ca.Certificate().Raw)
	for name, c := range map[string]struct {
		tpl     *Template
		lineage []Ancestor
	}{
		"other hash":       {mk(func(p *Parent) { p.Hash = vo.Template.Hash() }), lineage},
		"other version":    {mk(func(p *Parent) { p.Version = "1.0.1" }), lineage},
		"other id":         {mk(func(p *Parent) { p.ID = "sperrmuell" }), lineage},
		"other CA":         {mk(func(p *Parent) { p.CA = CAFingerprint(b.ca.Certificate().Raw) }), lineage},
		"swapped ancestor": {mk(func(p *Parent) {}), otherLineage},
		"ancestor missing": {mk(func(p *Parent) {}), nil},
		"extra ancestor":   {b.template(t, "hundeanmeldung"), lineage},
		"CA swapped":       {mk(func(p *Parent) { p.CA = CAFingerprint(b.ca.Certificate().Raw) }), []Ancestor{{JWS: sa.JWS, CA: b.ca.Certificate().Raw}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Sign(c.tpl, c.lineage, b.member, b.ca.Certificate(), t0)
			if err == nil {
				t.Fatal("signed")
			}
			if !errors.Is(err, ErrLineage) && !errors.Is(err, ErrCertificate) && !errors.Is(err, ErrSignature) {
				t.Fatalf("unclear error: %v", err)
			}
		})
	}
	// A new version of the same id must come after its parent.
	same := a.template(t, "hundeanmeldung")
	p, l := Descend(sa, va, a.ca.Certificate().Raw)
	same.Parent, same.Version = p, "0.9.0"
	if _, _, err := Sign(recheck(t, same), l, a.member, a.ca.Certificate(), t0); !errors.Is(err, ErrLineage) {
		t.Fatalf("a version not after its parent: %v", err)
	}
}

// TestAttackTamperedTemplate: a template whose signature, chain or hash
// does not match is refused with a clear error.
func TestAttackTamperedTemplate(t *testing.T) {
	a := newDeployment(t, "Darmstadt", "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
	other := newDeployment(t, "Darmstadt", "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice) // same names, other CA
	s, _ := a.sign(t, a.template(t, "hundeanmeldung"), nil)
	parts := strings.Split(s.JWS, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	swap := func(old, new string) Signed {
		p := strings.Replace(string(payload), old, new, 1)
		return Signed{JWS: parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(p)) + "." + parts[2]}
	}
	for name, c := range map[string]struct {
		s    Signed
		ca   *ca.CA
		want error
	}{
		"fee lowered":     {swap(`"amount_cents":500`, `"amount_cents":1`), a.ca, ErrSignature},
		"not canonical":   {swap(`{"signed_at"`, `{ "signed_at"`), a.ca, ErrMalformed},
		"other CA":        {s, other.ca, ErrCertificate},
		"truncated":       {Signed{JWS: parts[0] + "." + parts[1]}, a.ca, ErrMalformed},
		"offer typ":       {Signed{JWS: strings.Replace(s.JWS, parts[0], base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"kanal-offer+jws"}`)), 1)}, a.ca, ErrMalformed},
		"signature moved": {Signed{JWS: parts[0] + "." + parts[1] + "." + strings.Split(other.signOrDie(t), ".")[2]}, a.ca, ErrSignature},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Verify(c.s, c.ca.Certificate()); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	// A merchant cannot publish templates; a member cannot sign for another
	// organisation.
	m := addOrg(t, a.ca, "baecker", "Bäckerei", ca.OrgMerchant)
	tpl := m.template(t, "sperrmuell")
	if _, _, err := Sign(tpl, nil, m.member, a.ca.Certificate(), t0); !errors.Is(err, ErrCertificate) {
		t.Fatalf("merchant signs a template: %v", err)
	}
	if _, _, err := Sign(a.template(t, "sperrmuell"), nil, m.member, a.ca.Certificate(), t0); !errors.Is(err, ErrCertificate) {
		t.Fatalf("a member signs for another organisation: %v", err)
	}
	// A council may publish (Ed25519 device key).
	c := addOrg(t, a.ca, "rat", "Stadtverordnetenversammlung", ca.OrgCouncil)
	if _, _, err := Sign(c.template(t, "sperrmuell"), nil, c.member, a.ca.Certificate(), t0); err != nil {
		t.Fatal(err)
	}
	// A tampered bundle.
	bundle, _ := ExportBundle([]Signed{s}, a.member, a.ca.Certificate(), t0)
	bp := strings.Split(bundle, ".")
	if _, _, err := ImportBundle([]byte(bp[0]+"."+bp[1]+"A."+bp[2]), a.ca.Certificate()); err == nil {
		t.Fatal("tampered bundle imported")
	}
}

func (d *deployment) signOrDie(t *testing.T) string {
	s, _ := d.sign(t, d.template(t, "hundeanmeldung"), nil)
	return s.JWS
}
