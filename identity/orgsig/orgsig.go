// Package orgsig signs and verifies documents that a member of an
// organisation signs with their device key: a compact JWS (RFC 7515) whose
// protected header carries the device certificate (x5c) and, in a kanal
// header member, the membership and organisation certificates, so that
// anyone holding the deployment's CA certificate can check offline which
// device of which organisation signed. Offers and contracts
// (payments/jws) and form templates (miniapps/forms) are such documents;
// each names its own media type in "typ" so one cannot be taken for
// another.
//
// The compact JWS is made and checked with the standard library
// (compact.go), not a JOSE library: kanal's rules — low-s ES256, the
// header's members checked by value, one base64url encoding per document
// — are exactly what a general library leaves to its caller.
package orgsig

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

// Errors, each wrapped with details.
var (
	ErrSignature   = errors.New("bad signature")
	ErrCertificate = errors.New("certificate not acceptable")
	ErrMalformed   = errors.New("malformed JWS")
)

// HeaderMembership is the protected header member holding [membership
// DER, organisation DER], each in standard base64.
const HeaderMembership = "kanal_membership"

// Member is a device signing for its organisation.
type Member struct {
	Key        crypto.Signer // the device key: *ecdsa.PrivateKey (P-256) or ed25519.PrivateKey
	DeviceCert []byte        // DER device certificate
	Membership []byte        // DER membership certificate
	OrgCert    []byte        // DER organisation certificate that issued Membership
}

// Signed is what VerifyMember found out about a document's signer.
type Signed struct {
	Payload    []byte // the signed payload, exactly as signed
	Device     ca.DeviceIdentity
	Membership ca.Membership
	OrgCert    *x509.Certificate
	Leaf       []byte // the device certificate's DER
}

// SignMember checks that m's certificates chain to roots at at, name the
// same device and m's key, and signs payload as a compact JWS of media
// type typ carrying them. It returns the membership it signed under.
func SignMember(m Member, roots *x509.CertPool, at time.Time, typ string, payload []byte) (string, ca.Membership, error) {
	_, mem, err := CheckMember(m.DeviceCert, m.Membership, m.OrgCert, roots, at)
	if err != nil {
		return "", ca.Membership{}, err
	}
	if err := SameKey(mem.PublicKey, m.Key.Public()); err != nil {
		return "", ca.Membership{}, err
	}
	s, err := Sign(m.Key, typ, m.DeviceCert, HeaderMembership,
		[]string{base64.StdEncoding.EncodeToString(m.Membership), base64.StdEncoding.EncodeToString(m.OrgCert)}, payload)
	return s, mem, err
}

// VerifyMember checks a compact JWS of media type typ and at most max
// bytes made by SignMember: the signature with the x5c device
// certificate's key, the device and membership certificates chaining to
// roots at the time at(payload) names, both naming the same device and
// key. The payload's meaning, and at(payload), are the caller's.
func VerifyMember(s string, max int, typ string, roots *x509.CertPool, at func(payload []byte) (time.Time, error)) (*Signed, error) {
	c, err := Parse(s, max, typ, HeaderMembership)
	if err != nil {
		return nil, err
	}
	when, err := at(c.Payload)
	if err != nil {
		return nil, err
	}
	leaf, err := c.VerifyChain(roots, when)
	if err != nil {
		return nil, err
	}
	certs, err := StringList(c.Extra, HeaderMembership, 2)
	if err != nil {
		return nil, err
	}
	dev, m, err := CheckMember(leaf, certs[0], certs[1], roots, when)
	if err != nil {
		return nil, err
	}
	org, err := x509.ParseCertificate(certs[1])
	if err != nil {
		return nil, fmt.Errorf("%w: organisation certificate: %v", ErrCertificate, err)
	}
	return &Signed{Payload: c.Payload, Device: dev, Membership: m, OrgCert: org, Leaf: leaf}, nil
}

// CheckMember verifies a device certificate and a membership certificate
// (issued by the organisation certificate orgDER) at at, and that both
// name the same device and key.
func CheckMember(devDER, memDER, orgDER []byte, roots *x509.CertPool, at time.Time) (ca.DeviceIdentity, ca.Membership, error) {
	dev, err := ca.VerifyDevice(devDER, roots, at)
	if err != nil {
		return ca.DeviceIdentity{}, ca.Membership{}, fmt.Errorf("%w: device: %w", ErrCertificate, err)
	}
	m, err := ca.VerifyMembership(memDER, orgDER, roots, at)
	if err != nil {
		return ca.DeviceIdentity{}, ca.Membership{}, fmt.Errorf("%w: membership: %w", ErrCertificate, err)
	}
	if err := ca.CheckSameDevice(dev, m); err != nil {
		return ca.DeviceIdentity{}, ca.Membership{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	return dev, m, nil
}

// SameKey checks that a certificate's key is key.
func SameKey(certKey, key crypto.PublicKey) error {
	k, ok := certKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !k.Equal(key) {
		return fmt.Errorf("%w: the certificate is not for the signing key", ErrCertificate)
	}
	return nil
}

// StringList reads a header member holding n standard-base64 strings.
func StringList(raw json.RawMessage, key string, n int) ([][]byte, error) {
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil || len(list) != n {
		return nil, fmt.Errorf("%w: header %s must hold %d values", ErrMalformed, key, n)
	}
	out := make([][]byte, n)
	for i, s := range list {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || strings.ContainsAny(s, "\r\n") {
			return nil, fmt.Errorf("%w: header %s: not standard base64", ErrMalformed, key)
		}
		out[i] = b
	}
	return out, nil
}

// DecodeStrict decodes exactly one JSON value with unknown fields refused:
// a signed document means exactly what its known fields say.
func DecodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: payload: trailing data", ErrMalformed)
	}
	return nil
}
