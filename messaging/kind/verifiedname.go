package kind

import (
	"errors"
	"strings"
)

// VerifiedName carries a citizen's eID-verified name to an organisation's
// agents, sent end to end by the citizen's device with the citizen's
// consent for that organisation (docs/levels.md). The attestation is the
// deployment notary's statement identity issues at the end of an eID
// login at level high; receivers verify it against the CA they hold and
// against the account of the device that sent it. A body with Withdrawn
// set and no attestation says the citizen withdrew the consent: the
// agents' devices forget the name.
const VerifiedName Kind = "identity.verified-name"

// Limits of a verified name's attestation.
const (
	MaxVerifiedNameStatement = 1024 // bytes of the signed statement
	MaxNotaryCertificate     = 4096 // bytes of the notary certificate (DER)
)

// VerifiedNameBody is a verified name shared with OrgID, or its
// withdrawal.
type VerifiedNameBody struct {
	OrgID       string                   `json:"org_id"`
	Attestation *VerifiedNameAttestation `json:"attestation,omitempty"`
	Withdrawn   bool                     `json:"withdrawn,omitempty"`
}

// VerifiedNameAttestation is identity.VerifiedNameAttestation on the wire:
// the statement, the notary's Ed25519 signature and the notary
// certificate (DER), each standard base64 in JSON.
type VerifiedNameAttestation struct {
	Statement []byte `json:"statement"`
	Signature []byte `json:"signature"`
	Notary    []byte `json:"notary_certificate"`
}

func (*VerifiedNameBody) Kind() Kind { return VerifiedName }
func (b *VerifiedNameBody) Validate() error {
	if err := checkID("org_id", b.OrgID); err != nil || !strings.HasPrefix(b.OrgID, "org_") {
		return invalid(VerifiedName, "org_id must be an organisation's id")
	}
	switch {
	case b.Withdrawn && b.Attestation != nil:
		return invalid(VerifiedName, "a withdrawal carries no attestation")
	case b.Withdrawn:
		return nil
	case b.Attestation == nil:
		return invalid(VerifiedName, "attestation is required")
	}
	if err := b.Attestation.validate(); err != nil {
		return invalid(VerifiedName, "attestation: %v", err)
	}
	return nil
}

func (a *VerifiedNameAttestation) validate() error {
	switch {
	case len(a.Statement) == 0 || len(a.Statement) > MaxVerifiedNameStatement:
		return errors.New("statement must be 1..1024 bytes")
	case len(a.Signature) != 64:
		return errors.New("signature must be 64 bytes (Ed25519)")
	case len(a.Notary) == 0 || len(a.Notary) > MaxNotaryCertificate:
		return errors.New("notary_certificate must be 1..4096 bytes")
	}
	return nil
}
