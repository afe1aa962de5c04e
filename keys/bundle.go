package keys

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
)

// A PrekeyBundle is what the directory hands to a device that wants to start
// a session (Signal PQXDH §3.3): the responder's identity, its signed prekey,
// one PQ prekey (one-time if any is left, else the last-resort one), and
// optionally a one-time X25519 prekey. The directory is not trusted: Verify
// checks both prekey signatures against the identity, and the identity itself
// is checked against the device certificate with VerifyIdentity.
type PrekeyBundle struct {
	DeviceID        string
	Identity        IdentityPublic
	SignedPrekey    SignedPrekeyPublic
	SignedPrekeySig []byte
	PQPrekey        PQPrekeyPublic
	PQPrekeySig     []byte
	OneTimePrekey   OneTimePrekeyPublic // zero when none is left
}

// HasOneTimePrekey reports whether the bundle carries a one-time X25519
// prekey.
func (b *PrekeyBundle) HasOneTimePrekey() bool { return !b.OneTimePrekey.IsZero() }

// Verify checks that every field is present and that both prekey signatures
// were made by the bundle's identity key. PQXDH initiation calls it too.
func (b *PrekeyBundle) Verify() error {
	if b.DeviceID == "" || len(b.DeviceID) > MaxDeviceIDLen {
		return fmt.Errorf("keys.PrekeyBundle: device id length %d: %w", len(b.DeviceID), ErrInvalidEncoding)
	}
	if b.Identity.IsZero() || b.SignedPrekey.IsZero() || b.PQPrekey.IsZero() {
		return fmt.Errorf("keys.PrekeyBundle: missing key: %w", ErrInvalidKey)
	}
	if err := b.Identity.VerifySignedPrekey(b.SignedPrekey, b.SignedPrekeySig); err != nil {
		return fmt.Errorf("keys.PrekeyBundle: signed prekey: %w", err)
	}
	if err := b.Identity.VerifyPQPrekey(b.PQPrekey, b.PQPrekeySig); err != nil {
		return fmt.Errorf("keys.PrekeyBundle: PQ prekey: %w", err)
	}
	return nil
}

// MarshalBinary encodes the bundle:
//
//	version || kind || vec16(deviceID) || IdentityPublic || SignedPrekeyPublic ||
//	sig(64) || PQPrekeyPublic || sig(64) || hasOPK(1) || [OneTimePrekeyPublic]
//
// where each embedded key is its own binary encoding (fixed length).
func (b *PrekeyBundle) MarshalBinary() ([]byte, error) {
	if err := b.Verify(); err != nil {
		return nil, err
	}
	out := header(kindBundle)
	out = appendVec16(out, []byte(b.DeviceID))
	out = append(out, b.Identity.bytes()...)
	out = append(out, b.SignedPrekey.p.encode(kindSignedPrekeyPublic)...)
	out = append(out, b.SignedPrekeySig...)
	out = append(out, b.PQPrekey.bytes()...)
	out = append(out, b.PQPrekeySig...)
	out = appendBool(out, b.HasOneTimePrekey())
	if b.HasOneTimePrekey() {
		out = append(out, b.OneTimePrekey.p.encode(kindOneTimePrekeyPublic)...)
	}
	return out, nil
}

// UnmarshalBinary decodes a bundle. It checks the encoding only; call Verify
// before using the keys.
func (b *PrekeyBundle) UnmarshalBinary(data []byte) error {
	d := newDecoder("PrekeyBundle", data, kindBundle)
	var nb PrekeyBundle
	nb.DeviceID = string(d.vec16(MaxDeviceIDLen))
	idb := d.bytes(identityPublicLen)
	spk := d.bytes(2 + 4 + 32)
	nb.SignedPrekeySig = bytes.Clone(d.bytes(ed25519.SignatureSize))
	pq := d.bytes(pqPublicLen)
	nb.PQPrekeySig = bytes.Clone(d.bytes(ed25519.SignatureSize))
	var opk []byte
	if d.bool() {
		opk = d.bytes(2 + 4 + 32)
	}
	if err := d.finish(); err != nil {
		return err
	}
	if err := nb.Identity.UnmarshalBinary(idb); err != nil {
		return fmt.Errorf("keys.PrekeyBundle: %w", err)
	}
	if err := nb.SignedPrekey.UnmarshalBinary(spk); err != nil {
		return fmt.Errorf("keys.PrekeyBundle: %w", err)
	}
	if err := nb.PQPrekey.UnmarshalBinary(pq); err != nil {
		return fmt.Errorf("keys.PrekeyBundle: %w", err)
	}
	if opk != nil {
		if err := nb.OneTimePrekey.UnmarshalBinary(opk); err != nil {
			return fmt.Errorf("keys.PrekeyBundle: %w", err)
		}
	}
	*b = nb
	return nil
}

// bundleJSON is the JSON form used by the directory API: every key in its
// prefixed text form, signatures in unpadded base64url.
type bundleJSON struct {
	DeviceID        string               `json:"device_id"`
	Identity        IdentityPublic       `json:"identity"`
	SignedPrekey    SignedPrekeyPublic   `json:"signed_prekey"`
	SignedPrekeySig string               `json:"signed_prekey_sig"`
	PQPrekey        PQPrekeyPublic       `json:"pq_prekey"`
	PQPrekeySig     string               `json:"pq_prekey_sig"`
	OneTimePrekey   *OneTimePrekeyPublic `json:"one_time_prekey,omitempty"`
}

// MarshalJSON encodes the bundle in its JSON form.
func (b PrekeyBundle) MarshalJSON() ([]byte, error) {
	if err := b.Verify(); err != nil {
		return nil, err
	}
	j := bundleJSON{
		DeviceID:        b.DeviceID,
		Identity:        b.Identity,
		SignedPrekey:    b.SignedPrekey,
		SignedPrekeySig: base64.RawURLEncoding.EncodeToString(b.SignedPrekeySig),
		PQPrekey:        b.PQPrekey,
		PQPrekeySig:     base64.RawURLEncoding.EncodeToString(b.PQPrekeySig),
	}
	if b.HasOneTimePrekey() {
		opk := b.OneTimePrekey
		j.OneTimePrekey = &opk
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the JSON form strictly: unknown fields, trailing data
// and oversized input are rejected. Call Verify before using the keys.
func (b *PrekeyBundle) UnmarshalJSON(data []byte) error {
	if len(data) > MaxBundleJSONLen {
		return fmt.Errorf("keys.PrekeyBundle: %w", ErrTooLarge)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j bundleJSON
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("keys.PrekeyBundle: %w: %w", ErrInvalidEncoding, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return encodingError("PrekeyBundle", "trailing data after JSON")
	}
	spkSig, err1 := decodeSig(j.SignedPrekeySig)
	pqSig, err2 := decodeSig(j.PQPrekeySig)
	if err1 != nil || err2 != nil {
		return encodingError("PrekeyBundle", "bad signature encoding")
	}
	nb := PrekeyBundle{
		DeviceID:        j.DeviceID,
		Identity:        j.Identity,
		SignedPrekey:    j.SignedPrekey,
		SignedPrekeySig: spkSig,
		PQPrekey:        j.PQPrekey,
		PQPrekeySig:     pqSig,
	}
	if j.OneTimePrekey != nil {
		nb.OneTimePrekey = *j.OneTimePrekey
	}
	*b = nb
	return nil
}

// NewPrekeyBundle assembles and signs a bundle from a device's private keys.
// It is a convenience for devices and tests; a directory assembles bundles
// from the separately uploaded public keys and signatures instead.
func NewPrekeyBundle(deviceID string, id IdentityPrivate, spk SignedPrekeyPrivate, pq PQPrekeyPrivate, opk *OneTimePrekeyPrivate) (*PrekeyBundle, error) {
	spkSig, err := id.SignSignedPrekey(spk.Public())
	if err != nil {
		return nil, err
	}
	pqSig, err := id.SignPQPrekey(pq.Public())
	if err != nil {
		return nil, err
	}
	b := &PrekeyBundle{
		DeviceID:        deviceID,
		Identity:        id.Public(),
		SignedPrekey:    spk.Public(),
		SignedPrekeySig: spkSig,
		PQPrekey:        pq.Public(),
		PQPrekeySig:     pqSig,
	}
	if opk != nil {
		b.OneTimePrekey = opk.Public()
	}
	return b, b.Verify()
}

// decodeSig decodes an unpadded base64url signature, rejecting the line
// breaks encoding/base64 would otherwise skip.
func decodeSig(s string) ([]byte, error) {
	for i := range len(s) {
		if !isBase64URL(s[i]) {
			return nil, ErrInvalidEncoding
		}
	}
	return b64.DecodeString(s)
}
