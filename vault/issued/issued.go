// Package issued signs and verifies the documents an office issues into a
// citizen's vault: a residence certificate, a parking permit, a notice.
// An issued document is a compact JWS of media type kanal-document+jws
// made with identity/orgsig, as offers and contracts are: signed by an
// agent's device key, carrying the device certificate, the membership
// certificate and the organisation's certificate, so that anyone holding
// the deployment's CA certificate can check offline which office issued
// it, to whom, and what it says. The payload is Document in JSON; the
// issued content (a JSON document or a PDF) is inside it, base64, so the
// signature covers its exact bytes. docs/vault.md specifies it.
package issued

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/orgsig"
)

// Type is the JWS "typ" of an issued document.
const Type = "kanal-document+jws"

// Limits.
const (
	MaxContent = 8 << 20                 // bytes of the issued content
	MaxJWS     = MaxContent*4/3 + 64<<10 // the whole compact JWS
	MaxText    = 200                     // title and kind
)

// Media types an office may issue.
const (
	MediaJSON = "application/json"
	MediaPDF  = "application/pdf"
)

// ErrInvalid is a document that is malformed or does not verify.
var ErrInvalid = errors.New("issued document refused")

// Document is what an office signs.
type Document struct {
	Version    int       `json:"v"` // 1
	DocumentID string    `json:"document_id"`
	OrgID      string    `json:"org_id"`
	OrgName    string    `json:"org_name"`
	Subject    string    `json:"subject"` // the citizen's account id
	Kind       string    `json:"kind"`    // e.g. "parking-permit"
	Title      string    `json:"title"`
	MediaType  string    `json:"media_type"`
	Content    []byte    `json:"content"` // base64 in JSON
	IssuedAt   time.Time `json:"issued_at"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
}

// Validate checks the document's fields.
func (d *Document) Validate() error {
	text := func(name, s string, required bool) error {
		switch {
		case required && strings.TrimSpace(s) == "":
			return fmt.Errorf("%w: %s is required", ErrInvalid, name)
		case len(s) > MaxText || !utf8.ValidString(s):
			return fmt.Errorf("%w: %s must be UTF-8 of at most %d bytes", ErrInvalid, name, MaxText)
		}
		return nil
	}
	switch {
	case d.Version != 1:
		return fmt.Errorf("%w: version %d (want 1)", ErrInvalid, d.Version)
	case len(d.Content) == 0 || len(d.Content) > MaxContent:
		return fmt.Errorf("%w: content must be 1 to %d bytes", ErrInvalid, MaxContent)
	case d.MediaType == MediaJSON && !json.Valid(d.Content):
		return fmt.Errorf("%w: content is not JSON", ErrInvalid)
	case d.MediaType == MediaPDF && !strings.HasPrefix(string(d.Content), "%PDF-"):
		return fmt.Errorf("%w: content is not a PDF", ErrInvalid)
	case d.MediaType != MediaJSON && d.MediaType != MediaPDF:
		return fmt.Errorf("%w: media type must be %s or %s", ErrInvalid, MediaJSON, MediaPDF)
	case d.IssuedAt.IsZero():
		return fmt.Errorf("%w: issued_at is required", ErrInvalid)
	case !d.ValidUntil.IsZero() && !d.ValidUntil.After(d.IssuedAt):
		return fmt.Errorf("%w: valid_until must be after issued_at", ErrInvalid)
	}
	for _, f := range []struct {
		name, v string
	}{{"document_id", d.DocumentID}, {"org_id", d.OrgID}, {"subject", d.Subject}, {"kind", d.Kind}, {"title", d.Title}} {
		if err := text(f.name, f.v, true); err != nil {
			return err
		}
	}
	return text("org_name", d.OrgName, false)
}

// Sign validates d and signs it as m, a device of d.OrgID's members.
func Sign(d Document, m orgsig.Member, roots *x509.CertPool) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	d.IssuedAt = d.IssuedAt.UTC().Truncate(time.Second)
	if !d.ValidUntil.IsZero() {
		d.ValidUntil = d.ValidUntil.UTC().Truncate(time.Second)
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	s, mem, err := orgsig.SignMember(m, roots, d.IssuedAt, Type, payload)
	if err != nil {
		return "", err
	}
	if mem.OrgID != d.OrgID {
		return "", fmt.Errorf("%w: the membership is of %s, not %s", ErrInvalid, mem.OrgID, d.OrgID)
	}
	return s, nil
}

// Verified is a document that verified, and who signed it.
type Verified struct {
	Document Document
	Signed   *orgsig.Signed
	Hash     string // SHA-256 (hex) of the compact JWS: the document's name in a register
}

// Verify checks an issued document offline against roots: the signature,
// the chain of the device and membership certificates at issued_at, and
// that the membership is of the organisation the document names.
func Verify(jws string, roots *x509.CertPool) (*Verified, error) {
	var d Document
	signed, err := orgsig.VerifyMember(strings.TrimSpace(jws), MaxJWS, Type, roots, func(payload []byte) (time.Time, error) {
		if err := orgsig.DecodeStrict(payload, &d); err != nil {
			return time.Time{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if err := d.Validate(); err != nil {
			return time.Time{}, err
		}
		return d.IssuedAt, nil
	})
	if err != nil {
		return nil, err
	}
	if signed.Membership.OrgID != d.OrgID {
		return nil, fmt.Errorf("%w: signed by a member of %s, but names %s", ErrInvalid, signed.Membership.OrgID, d.OrgID)
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(jws)))
	return &Verified{Document: d, Signed: signed, Hash: hex.EncodeToString(sum[:])}, nil
}

// IsIssued reports whether b looks like an issued document (by its "typ").
func IsIssued(b []byte) bool {
	c, err := orgsig.Parse(strings.TrimSpace(string(b)), MaxJWS, Type, orgsig.HeaderMembership)
	return err == nil && c != nil
}
