package issued

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// agent returns a deployment CA and an agent device of org, made with the
// real identity/ca.
func agent(t testing.TB, orgID string) (*ca.CA, orgsig.Member) {
	t.Helper()
	c, err := ca.Create("Musterstadt", t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	org, err := c.IssueOrganisation(ca.OrgRequest{OrgID: orgID, Name: "Straßenverkehrsamt", Kind: ca.OrgOffice, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := c.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: "acc-clerk", DeviceID: "dev-clerk", Level: ca.LevelSubstantial, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := org.IssueMembership(ca.MembershipRequest{DevicePublicKey: key.Public(), AccountID: "acc-clerk", DeviceID: "dev-clerk", Role: "agent", NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return c, orgsig.Member{Key: key, DeviceCert: dev.Raw, Membership: mem.Raw, OrgCert: org.Certificate().Raw}
}

func permit(org string) Document {
	return Document{Version: 1, DocumentID: "id_1", OrgID: org, OrgName: "Straßenverkehrsamt", Subject: "acc-erika",
		Kind: "parking-permit", Title: "Bewohnerparkausweis Zone B", MediaType: MediaJSON,
		Content: []byte(`{"zone":"B","plate":"WO-KA 42"}`), IssuedAt: t0, ValidUntil: t0.Add(365 * 24 * time.Hour)}
}

func TestIssueAndVerify(t *testing.T) {
	c, m := agent(t, "org-sva")
	s, err := Sign(permit("org-sva"), m, c.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if !IsIssued([]byte(s)) {
		t.Fatal("IsIssued does not recognise an issued document")
	}
	v, err := Verify(s, c.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if v.Document.Subject != "acc-erika" || string(v.Document.Content) != `{"zone":"B","plate":"WO-KA 42"}` ||
		v.Signed.Membership.Role != "agent" || v.Signed.Device.DeviceID != "dev-clerk" || len(v.Hash) != 64 {
		t.Fatalf("verified %+v", v)
	}
}

// TestAttackTamperedIssuedDocument changes one byte anywhere, and the
// document no longer verifies.
func TestAttackTamperedIssuedDocument(t *testing.T) {
	c, m := agent(t, "org-sva")
	s, err := Sign(permit("org-sva"), m, c.Pool())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(s); i += len(s) / 97 {
		b := []byte(s)
		if b[i] == '.' {
			continue
		}
		b[i] ^= 1
		if _, err := Verify(string(b), c.Pool()); err == nil {
			t.Fatalf("a document changed at byte %d verifies", i)
		}
	}
	// Another deployment's CA does not vouch for it.
	other, _ := agent(t, "org-sva")
	if _, err := Verify(s, other.Pool()); err == nil {
		t.Fatal("verifies against another CA")
	}
}

// TestAttackOtherOrganisation: an agent of one office cannot issue in
// another's name, and a payload naming another organisation under a real
// signature is refused.
func TestAttackOtherOrganisation(t *testing.T) {
	c, m := agent(t, "org-sva")
	if _, err := Sign(permit("org-other"), m, c.Pool()); err == nil {
		t.Fatal("signed a document naming another organisation")
	}
	d := permit("org-other")
	payload := `{"v":1,"document_id":"id_1","org_id":"org-other","org_name":"x","subject":"acc-erika","kind":"k","title":"t","media_type":"application/json","content":"` +
		base64.StdEncoding.EncodeToString(d.Content) + `","issued_at":"2026-05-04T10:00:00Z"}`
	s, _, err := orgsig.SignMember(m, c.Pool(), t0, Type, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(s, c.Pool()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a payload naming another organisation: %v", err)
	}
}

func TestInvalidDocuments(t *testing.T) {
	c, m := agent(t, "org-sva")
	for name, change := range map[string]func(*Document){
		"no subject":     func(d *Document) { d.Subject = "" },
		"not JSON":       func(d *Document) { d.Content = []byte("{") },
		"not a PDF":      func(d *Document) { d.MediaType = MediaPDF },
		"other media":    func(d *Document) { d.MediaType = "text/html" },
		"valid before":   func(d *Document) { d.ValidUntil = d.IssuedAt.Add(-time.Second) },
		"empty content":  func(d *Document) { d.Content = nil },
		"too long title": func(d *Document) { d.Title = strings.Repeat("x", MaxText+1) },
		"version 2":      func(d *Document) { d.Version = 2 },
	} {
		d := permit("org-sva")
		change(&d)
		if _, err := Sign(d, m, c.Pool()); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	c, m := agent(f, "org-sva")
	s, err := Sign(permit("org-sva"), m, c.Pool())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s)
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, in string) {
		v, err := Verify(in, c.Pool())
		if err == nil && in != s && strings.TrimSpace(in) != s {
			t.Fatalf("a changed document verifies: %+v", v.Document)
		}
	})
}
