package forms

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
)

// Media types in the "typ" header: a template is not an offer, a bundle
// is not a template.
const (
	TypeTemplate = "kanal-form-template+jws"
	TypeBundle   = "kanal-form-bundle+jws"
)

// Signed is a template version as the catalogue keeps, serves and
// exports it: its JWS and the JWS of each ancestor, the parent first,
// each with the CA certificate it chains to.
type Signed struct {
	JWS     string     `json:"jws"`
	Lineage []Ancestor `json:"lineage,omitempty"`
}

// Ancestor is one earlier version in a template's provenance.
type Ancestor struct {
	JWS string `json:"jws"`
	CA  []byte `json:"ca"` // DER of the deployment CA the JWS chains to (standard base64 in JSON)
}

// signedPayload is what a template's JWS signs, in canonical JSON.
type signedPayload struct {
	Version  int             `json:"v"` // 1
	SignedAt time.Time       `json:"signed_at"`
	Template json.RawMessage `json:"template"`
}

// Verified is a template whose signature, certificates and lineage
// checked out.
type Verified struct {
	Template   *Template
	SignedAt   time.Time
	Signer     ca.DeviceIdentity
	Membership ca.Membership
	CA         string // hex SHA-256 of the CA certificate the signature chains to
	// Ancestors are the verified versions of the lineage, the parent first.
	Ancestors []*Verified
}

// Provenance lists, newest first, who made each version in v's lineage.
func (v *Verified) Provenance() []*Verified {
	return append([]*Verified{v}, v.Ancestors...)
}

// CAFingerprint is the hex SHA-256 of a DER certificate, as Parent.CA
// names a CA.
func CAFingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

// Sign signs t as the device of m, a member of t.Org, at now. lineage is
// the parent's lineage with the parent in front (nil for a template
// without parent); caCert is the signer's deployment CA, its root, and
// intermediates its issuing intermediates when the root is kept offline
// (ca.TrustPool). The result is verified as a reader will verify it
// before it is returned.
func Sign(t *Template, lineage []Ancestor, m orgsig.Member, caCert *x509.Certificate, now time.Time, intermediates ...*x509.Certificate) (Signed, *Verified, error) {
	now = now.UTC().Truncate(time.Second)
	roots, err := trustPool(caCert, intermediates)
	if err != nil {
		return Signed{}, nil, fmt.Errorf("forms.sign: %w", err)
	}
	payload, err := json.Marshal(signedPayload{Version: 1, SignedAt: now, Template: t.JSON()})
	if err != nil {
		return Signed{}, nil, fmt.Errorf("forms.sign: %w", err)
	}
	if payload, err = Canonical(payload); err != nil {
		return Signed{}, nil, fmt.Errorf("forms.sign: %w", err)
	}
	jws, mem, err := orgsig.SignMember(m, roots, now, TypeTemplate, payload)
	if err != nil {
		return Signed{}, nil, fmt.Errorf("forms.sign: %w", err)
	}
	if mem.OrgID != t.Org.ID || mem.OrgName != t.Org.Name {
		return Signed{}, nil, fmt.Errorf("forms.sign: %w: the membership is for %s (%q), the template names %s (%q)",
			ErrCertificate, mem.OrgID, mem.OrgName, t.Org.ID, t.Org.Name)
	}
	s := Signed{JWS: jws, Lineage: lineage}
	v, err := Verify(s, caCert, intermediates...)
	if err != nil {
		return Signed{}, nil, err
	}
	return s, v, nil
}

// Verify checks a signed template offline against caCert, the deployment
// CA its signer belongs to: the JWS (typ, signature, the device and
// membership certificates valid at signed_at and naming one device, an
// office or council membership of the organisation the template names),
// the payload in canonical form, the template by every rule of the
// format, and its lineage: each parent is the next ancestor — same id,
// version and hash, its signature chaining to the CA whose fingerprint
// the child names — down to a template without parent.
//
// caCert is the root the reader pins. Under an offline root (ca.TrustPool)
// intermediates are the deployment's issuing intermediates, current and
// retired: each must be signed by caCert as an issuing intermediate, or
// nothing verifies. A template signed under any of them verifies, and
// names caCert, the root, as its CA, so rotating the intermediate changes
// no fingerprint. An ancestor that names the same root is checked with the
// same intermediates; one of another deployment against its root alone.
func Verify(s Signed, caCert *x509.Certificate, intermediates ...*x509.Certificate) (*Verified, error) {
	if caCert == nil {
		return nil, fmt.Errorf("forms.verify: %w: no CA certificate", ErrCertificate)
	}
	if len(s.Lineage) > MaxLineage {
		return nil, fmt.Errorf("forms.verify: %w: %d ancestors, at most %d", ErrLineage, len(s.Lineage), MaxLineage)
	}
	roots, err := trustPool(caCert, intermediates)
	if err != nil {
		return nil, fmt.Errorf("forms.verify: %w", err)
	}
	v, err := verifyOne(s.JWS, caCert, roots)
	if err != nil {
		return nil, err
	}
	child := v
	for i, a := range s.Lineage {
		p := child.Template.Parent
		if p == nil {
			return nil, fmt.Errorf("forms.verify: %w: %s %s names no parent but carries %d more ancestors",
				ErrLineage, child.Template.ID, child.Template.Version, len(s.Lineage)-i)
		}
		if CAFingerprint(a.CA) != p.CA {
			return nil, fmt.Errorf("forms.verify: %w: ancestor %d comes with a CA other than the one %s %s names",
				ErrLineage, i+1, child.Template.ID, child.Template.Version)
		}
		caA, err := x509.ParseCertificate(a.CA)
		if err != nil {
			return nil, fmt.Errorf("forms.verify: %w: ancestor %d's CA: %v", ErrCertificate, i+1, err)
		}
		rootsA := roots
		if !caA.Equal(caCert) {
			rootsA = x509.NewCertPool()
			rootsA.AddCert(caA)
		}
		av, err := verifyOne(a.JWS, caA, rootsA)
		if err != nil {
			return nil, fmt.Errorf("forms.verify: ancestor %d: %w", i+1, err)
		}
		if err := checkDescent(child.Template, av.Template); err != nil {
			return nil, err
		}
		v.Ancestors = append(v.Ancestors, av)
		child = av
	}
	if p := child.Template.Parent; p != nil {
		return nil, fmt.Errorf("forms.verify: %w: %s %s names parent %s %s, which its lineage does not carry",
			ErrLineage, child.Template.ID, child.Template.Version, p.ID, p.Version)
	}
	return v, nil
}

// checkDescent checks that child's Parent is parent: id, version and
// hash; a new version of the same id must come after its parent.
func checkDescent(child, parent *Template) error {
	p := child.Parent
	if p.ID != parent.ID || p.Version != parent.Version {
		return fmt.Errorf("forms.verify: %w: %s %s names parent %s %s, the lineage holds %s %s", ErrLineage,
			child.ID, child.Version, p.ID, p.Version, parent.ID, parent.Version)
	}
	if p.Hash != parent.Hash() {
		return fmt.Errorf("forms.verify: %w: %s %s names parent hash %s, the parent's is %s", ErrLineage,
			child.ID, child.Version, p.Hash, parent.Hash())
	}
	if child.ID == parent.ID {
		cv, _ := ParseVersion(child.Version)
		pv, _ := ParseVersion(parent.Version)
		if cv.Compare(pv) <= 0 {
			return fmt.Errorf("forms.verify: %w: %s %s is not after its parent %s", ErrLineage, child.ID, child.Version, parent.Version)
		}
	}
	return nil
}

// trustPool is ca.TrustPool, with its refusal as ErrCertificate.
func trustPool(root *x509.Certificate, intermediates []*x509.Certificate) (*x509.CertPool, error) {
	roots, err := ca.TrustPool(root, intermediates)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	return roots, nil
}

// verifyOne checks one template JWS against roots, the pool of caCert (no
// lineage).
func verifyOne(jws string, caCert *x509.Certificate, roots *x509.CertPool) (*Verified, error) {
	var p signedPayload
	at := func(payload []byte) (time.Time, error) {
		canon, err := Canonical(payload)
		if err != nil {
			return time.Time{}, err
		}
		if !bytes.Equal(canon, payload) {
			return time.Time{}, fmt.Errorf("%w: the payload is not in canonical form (RFC 8785)", ErrMalformed)
		}
		if err := orgsig.DecodeStrict(payload, &p); err != nil {
			return time.Time{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if p.Version != 1 || p.SignedAt.IsZero() {
			return time.Time{}, fmt.Errorf("%w: payload version or signed_at", ErrMalformed)
		}
		return p.SignedAt, nil
	}
	sig, err := orgsig.VerifyMember(jws, MaxSigned, TypeTemplate, roots, at)
	if err != nil {
		return nil, fmt.Errorf("forms.verify: %w", classify(err))
	}
	t, err := Decode(p.Template)
	if err != nil {
		return nil, fmt.Errorf("forms.verify: %w", err)
	}
	m := sig.Membership
	switch {
	case m.OrgKind != ca.OrgOffice && m.OrgKind != ca.OrgCouncil:
		return nil, fmt.Errorf("forms.verify: %w: a %s does not publish form templates", ErrCertificate, m.OrgKind)
	case m.OrgID != t.Org.ID || m.OrgName != t.Org.Name:
		return nil, fmt.Errorf("forms.verify: %w: signed for %s (%q), the template names %s (%q)", ErrCertificate,
			m.OrgID, m.OrgName, t.Org.ID, t.Org.Name)
	}
	return &Verified{Template: t, SignedAt: p.SignedAt, Signer: sig.Device, Membership: m, CA: CAFingerprint(caCert.Raw)}, nil
}

// classify maps orgsig's errors onto the package's own, keeping the cause.
func classify(err error) error {
	switch {
	case isErr(err, orgsig.ErrSignature):
		return fmt.Errorf("%w: %w", ErrSignature, err)
	case isErr(err, orgsig.ErrCertificate):
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	case isErr(err, orgsig.ErrMalformed):
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return err
}
