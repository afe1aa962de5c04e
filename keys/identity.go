package keys

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/subtle"
	"fmt"
	"io"
)

// An identity key pair is a device's long-term end-to-end identity. Unlike
// Signal, which uses one Curve25519 key for both signing (XEdDSA) and
// agreement, kanal keeps two standard keys: an Ed25519 key that signs prekeys
// and sender-key messages, and an X25519 key used in PQXDH. Both are always
// handled, encoded and fingerprinted together, so they cannot be mixed up.

const (
	identityPublicLen  = 2 + ed25519.PublicKeySize + 32
	identityPrivateLen = 2 + ed25519.SeedSize + 32

	identityPublicPrefix  = "kanal-idpub:"
	identityPrivatePrefix = "kanal-idpriv:"
)

// IdentityPublic is the public half of a device's E2E identity: an Ed25519
// verification key and an X25519 agreement key. The zero value is invalid.
type IdentityPublic struct {
	sig ed25519.PublicKey
	dh  *ecdh.PublicKey
}

// IdentityPrivate holds both private identity keys. The zero value is invalid.
type IdentityPrivate struct {
	sig ed25519.PrivateKey
	dh  *ecdh.PrivateKey
}

// GenerateIdentity creates a new identity key pair from rand (crypto/rand
// when nil).
func GenerateIdentity(rand io.Reader) (IdentityPrivate, error) {
	seed, err := randomBytes(rand, ed25519.SeedSize+32)
	if err != nil {
		return IdentityPrivate{}, fmt.Errorf("keys.GenerateIdentity: %w", err)
	}
	return newIdentityPrivate(seed[:32], seed[32:])
}

func newIdentityPrivate(sigSeed, dhKey []byte) (IdentityPrivate, error) {
	dh, err := ecdh.X25519().NewPrivateKey(dhKey)
	if err != nil {
		return IdentityPrivate{}, fmt.Errorf("keys.identity: %w: %w", ErrInvalidKey, err)
	}
	return IdentityPrivate{sig: ed25519.NewKeyFromSeed(sigSeed), dh: dh}, nil
}

// IsZero reports whether k is the zero (unset) key.
func (k IdentityPublic) IsZero() bool { return k.sig == nil || k.dh == nil }

// IsZero reports whether k is the zero (unset) key.
func (k IdentityPrivate) IsZero() bool { return k.sig == nil || k.dh == nil }

// Public returns the public identity.
func (k IdentityPrivate) Public() IdentityPublic {
	if k.IsZero() {
		return IdentityPublic{}
	}
	return IdentityPublic{sig: k.sig.Public().(ed25519.PublicKey), dh: k.dh.PublicKey()}
}

// SigningKey returns the Ed25519 verification key.
func (k IdentityPublic) SigningKey() ed25519.PublicKey { return k.sig }

// AgreementKey returns the X25519 agreement key.
func (k IdentityPublic) AgreementKey() *ecdh.PublicKey { return k.dh }

// Equal reports whether k and o are the same identity, in constant time.
func (k IdentityPublic) Equal(o IdentityPublic) bool {
	return subtle.ConstantTimeCompare(k.bytes(), o.bytes()) == 1
}

// Equal reports whether k and o are the same private identity, in constant
// time.
func (k IdentityPrivate) Equal(o IdentityPrivate) bool {
	return subtle.ConstantTimeCompare(k.bytes(), o.bytes()) == 1
}

// bytes is the binary encoding, or nil for the zero key. It is also the
// Encode(IK) of PQXDH associated data and of safety numbers.
func (k IdentityPublic) bytes() []byte {
	if k.IsZero() {
		return nil
	}
	b := make([]byte, 0, identityPublicLen)
	b = append(b, header(kindIdentityPublic)...)
	b = append(b, k.sig...)
	return append(b, k.dh.Bytes()...)
}

func (k IdentityPrivate) bytes() []byte {
	if k.IsZero() {
		return nil
	}
	b := make([]byte, 0, identityPrivateLen)
	b = append(b, header(kindIdentityPrivate)...)
	b = append(b, k.sig.Seed()...)
	return append(b, k.dh.Bytes()...)
}

// MarshalBinary encodes k as version || kind || Ed25519 key || X25519 key.
func (k IdentityPublic) MarshalBinary() ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("keys.IdentityPublic: %w", ErrInvalidKey)
	}
	return k.bytes(), nil
}

// UnmarshalBinary decodes the form written by MarshalBinary.
func (k *IdentityPublic) UnmarshalBinary(b []byte) error {
	d := newDecoder("IdentityPublic", b, kindIdentityPublic)
	sig := d.bytes(ed25519.PublicKeySize)
	dh := d.bytes(32)
	if err := d.finish(); err != nil {
		return err
	}
	pub, err := parseX25519Public(dh)
	if err != nil {
		return fmt.Errorf("keys.IdentityPublic: %w: %w", ErrInvalidEncoding, err)
	}
	*k = IdentityPublic{sig: ed25519.PublicKey(append([]byte(nil), sig...)), dh: pub}
	return nil
}

// MarshalText encodes k as "kanal-idpub:" + base64url(binary).
func (k IdentityPublic) MarshalText() ([]byte, error) {
	bin, err := k.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return marshalText(identityPublicPrefix, bin), nil
}

// UnmarshalText decodes the form written by MarshalText.
func (k *IdentityPublic) UnmarshalText(text []byte) error {
	bin, err := unmarshalText("IdentityPublic", identityPublicPrefix, text)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(bin)
}

// String returns the text form, or "kanal-idpub:<invalid>" for the zero key.
func (k IdentityPublic) String() string {
	t, err := k.MarshalText()
	if err != nil {
		return identityPublicPrefix + "<invalid>"
	}
	return string(t)
}

// MarshalBinary encodes k as version || kind || Ed25519 seed || X25519 key.
// The result is secret.
func (k IdentityPrivate) MarshalBinary() ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("keys.IdentityPrivate: %w", ErrInvalidKey)
	}
	return k.bytes(), nil
}

// UnmarshalBinary decodes the form written by MarshalBinary.
func (k *IdentityPrivate) UnmarshalBinary(b []byte) error {
	d := newDecoder("IdentityPrivate", b, kindIdentityPrivate)
	seed := d.bytes(ed25519.SeedSize)
	dh := d.bytes(32)
	if err := d.finish(); err != nil {
		return err
	}
	p, err := newIdentityPrivate(seed, dh)
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// MarshalText encodes k as "kanal-idpriv:" + base64url(binary). The result is
// secret.
func (k IdentityPrivate) MarshalText() ([]byte, error) {
	bin, err := k.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return marshalText(identityPrivatePrefix, bin), nil
}

// UnmarshalText decodes the form written by MarshalText.
func (k *IdentityPrivate) UnmarshalText(text []byte) error {
	bin, err := unmarshalText("IdentityPrivate", identityPrivatePrefix, text)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(bin)
}

// String never reveals the private key.
func (k IdentityPrivate) String() string { return "kanal-idpriv:<redacted>" }

// sign signs a domain-separated message with the identity's Ed25519 key.
func (k IdentityPrivate) sign(context string, msg []byte) ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("keys.sign: %w", ErrInvalidKey)
	}
	return ed25519.Sign(k.sig, signedMessage(context, msg)), nil
}

// verify checks a signature made by sign under the same context.
func (k IdentityPublic) verify(context string, msg, sig []byte) error {
	if k.IsZero() {
		return fmt.Errorf("keys.verify: %w", ErrInvalidKey)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.sig, signedMessage(context, msg), sig) {
		return fmt.Errorf("keys.verify %s: %w", context, ErrBadSignature)
	}
	return nil
}

// signedMessage prefixes msg with a NUL-terminated context string, so a
// signature made for one purpose (a prekey) can never be presented as one for
// another (a sender-key message). Contexts never contain NUL.
func signedMessage(context string, msg []byte) []byte {
	out := make([]byte, 0, len(context)+1+len(msg))
	out = append(out, context...)
	out = append(out, 0)
	return append(out, msg...)
}
