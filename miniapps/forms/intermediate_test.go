package forms

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

// TestTemplatesUnderRotatedIntermediates: a deployment whose root is kept
// offline signs through an issuing intermediate (kanald ca
// issue-intermediate) and later rotates it. A template signed under the
// retired intermediate and one signed under the new one both verify
// against the pinned root and the deployment's intermediates, name the
// root as their CA (so a child's parent fingerprint survives the
// rotation), and export and import as a bundle.
func TestTemplatesUnderRotatedIntermediates(t *testing.T) {
	root, old, cur := offlineRoot(t, "Darmstadt")
	a := addOrg(t, old, "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
	b := addOrg(t, cur, "ordnungsamt", "Ordnungsamt Darmstadt", ca.OrgOffice)
	inters := []*x509.Certificate{cur.Certificate(), old.Certificate()} // newest first, as retired.pem keeps them

	sa, _, err := Sign(a.template(t, "hundeanmeldung"), nil, a.member, root.Certificate(), t0, inters...)
	if err != nil {
		t.Fatalf("sign under the retired intermediate: %v", err)
	}
	sb, _, err := Sign(b.template(t, "sperrmuell"), nil, b.member, root.Certificate(), t0, inters...)
	if err != nil {
		t.Fatalf("sign under the current intermediate: %v", err)
	}
	for name, s := range map[string]Signed{"retired": sa, "current": sb} {
		v, err := Verify(s, root.Certificate(), inters...)
		if err != nil {
			t.Fatalf("%s intermediate: %v", name, err)
		}
		if v.CA != CAFingerprint(root.Certificate().Raw) {
			t.Errorf("%s intermediate: the template names CA %s, not the root's", name, v.CA)
		}
		// The root alone does not reach a certificate an intermediate
		// issued: the intermediates are what make the chain.
		if _, err := Verify(s, root.Certificate()); !errors.Is(err, ErrCertificate) {
			t.Errorf("%s intermediate: verified without the intermediates: %v", name, err)
		}
	}
	bundle, err := ExportBundle([]Signed{sa, sb}, b.member, root.Certificate(), t0, inters...)
	if err != nil {
		t.Fatal(err)
	}
	if imp, _, err := ImportBundle([]byte(bundle), root.Certificate(), inters...); err != nil || len(imp) != 2 {
		t.Fatalf("import: %d templates, %v", len(imp), err)
	}
}

// TestAttackForeignIntermediate: an adversary with an intermediate of
// another root (its own offline-root deployment) signs a template for the
// Bürgeramt's organisation id, and offers its intermediate among the
// deployment's. Verify refuses the foreign intermediate outright, and
// without it the template does not chain to the pinned root.
func TestAttackForeignIntermediate(t *testing.T) {
	root, _, cur := offlineRoot(t, "Darmstadt")
	_, _, foreign := offlineRoot(t, "Darmstadt") // the same name, another key
	evil := addOrg(t, foreign, "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
	s, _, err := Sign(evil.template(t, "hundeanmeldung"), nil, evil.member, foreign.Root(), t0, foreign.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(s, root.Certificate(), cur.Certificate(), foreign.Certificate()); !errors.Is(err, ErrCertificate) {
		t.Fatalf("a foreign intermediate was accepted: %v", err)
	}
	if _, err := Verify(s, root.Certificate(), cur.Certificate()); !errors.Is(err, ErrCertificate) {
		t.Fatalf("a template under a foreign intermediate verified: %v", err)
	}
	// An organisation certificate is no intermediate either.
	mine := addOrg(t, cur, "ordnungsamt", "Ordnungsamt Darmstadt", ca.OrgOffice)
	orgCert, _ := x509.ParseCertificate(mine.member.OrgCert)
	if _, err := Verify(s, root.Certificate(), cur.Certificate(), orgCert); !errors.Is(err, ErrCertificate) {
		t.Fatalf("an organisation certificate was accepted as an intermediate: %v", err)
	}
}

// offlineRoot is a deployment under an offline root: the root, the
// intermediate it issued first (since retired) and the current one.
func offlineRoot(t *testing.T, city string) (root, retired, current *ca.CA) {
	t.Helper()
	root, err := ca.Create(city, t0.Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if retired, err = root.IssueIntermediate("2025", t0.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if current, err = root.IssueIntermediate("2026", t0.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return root, retired, current
}
