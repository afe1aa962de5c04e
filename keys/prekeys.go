package keys

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
)

// Prekeys are the keys a device publishes to the directory so that others can
// start sessions while it is offline (Signal PQXDH §3.2):
//
//   - a signed prekey (X25519), replaced periodically;
//   - ML-KEM-768 prekeys, each signed: one "last resort" key used when the
//     one-time ones run out, and a batch of one-time keys;
//   - one-time X25519 prekeys, unsigned as in Signal.
//
// Every prekey has a uint32 id chosen by the device, which the initial
// message names so the responder finds the private half.

const (
	signedPrekeyPrefix         = "kanal-spk:"
	signedPrekeyPrivatePrefix  = "kanal-spkpriv:"
	oneTimePrekeyPrefix        = "kanal-otpk:"
	oneTimePrekeyPrivatePrefix = "kanal-otpkpriv:"
	pqPrekeyPrefix             = "kanal-pqpk:"
	pqPrekeyPrivatePrefix      = "kanal-pqpkpriv:"

	// Signature contexts; see signedMessage.
	signedPrekeyContext = "kanal signed prekey v1"
	pqPrekeyContext     = "kanal pq prekey v1"
)

// xPub and xPriv are the shared representation of the two X25519 prekey
// kinds. The exported types wrap them so the compiler keeps a one-time
// prekey from being passed where a signed prekey is expected.
type xPub struct {
	id  uint32
	key *ecdh.PublicKey
}

type xPriv struct {
	id  uint32
	key *ecdh.PrivateKey
}

func (p xPub) encode(k kind) []byte {
	if p.key == nil {
		return nil
	}
	b := append(header(k), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[2:], p.id)
	return append(b, p.key.Bytes()...)
}

func (p xPriv) encode(k kind) []byte {
	if p.key == nil {
		return nil
	}
	b := append(header(k), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[2:], p.id)
	return append(b, p.key.Bytes()...)
}

func (p xPriv) public() xPub {
	if p.key == nil {
		return xPub{}
	}
	return xPub{id: p.id, key: p.key.PublicKey()}
}

func decodeXPub(op string, b []byte, k kind) (xPub, error) {
	d := newDecoder(op, b, k)
	id := d.u32()
	raw := d.bytes(32)
	if err := d.finish(); err != nil {
		return xPub{}, err
	}
	key, err := parseX25519Public(raw)
	if err != nil {
		return xPub{}, fmt.Errorf("keys.%s: %w: %w", op, ErrInvalidEncoding, err)
	}
	return xPub{id: id, key: key}, nil
}

func decodeXPriv(op string, b []byte, k kind) (xPriv, error) {
	d := newDecoder(op, b, k)
	id := d.u32()
	raw := d.bytes(32)
	if err := d.finish(); err != nil {
		return xPriv{}, err
	}
	key, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return xPriv{}, fmt.Errorf("keys.%s: %w: %w", op, ErrInvalidEncoding, err)
	}
	return xPriv{id: id, key: key}, nil
}

func generateXPriv(op string, rand io.Reader, id uint32) (xPriv, error) {
	key, err := newX25519(rand)
	if err != nil {
		return xPriv{}, fmt.Errorf("keys.%s: %w", op, err)
	}
	return xPriv{id: id, key: key}, nil
}

func marshalOrErr(op string, b []byte) ([]byte, error) {
	if b == nil {
		return nil, fmt.Errorf("keys.%s: %w", op, ErrInvalidKey)
	}
	return b, nil
}

func textOrErr(op, prefix string, b []byte) ([]byte, error) {
	if b == nil {
		return nil, fmt.Errorf("keys.%s: %w", op, ErrInvalidKey)
	}
	return marshalText(prefix, b), nil
}

func ctEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// ---- signed prekey ----

// SignedPrekeyPublic is a published X25519 signed prekey (SPK).
type SignedPrekeyPublic struct{ p xPub }

// SignedPrekeyPrivate is the private half of a signed prekey.
type SignedPrekeyPrivate struct{ p xPriv }

// GenerateSignedPrekey creates a signed prekey with the given id.
func GenerateSignedPrekey(rand io.Reader, id uint32) (SignedPrekeyPrivate, error) {
	p, err := generateXPriv("GenerateSignedPrekey", rand, id)
	return SignedPrekeyPrivate{p}, err
}

func (k SignedPrekeyPublic) ID() uint32           { return k.p.id }
func (k SignedPrekeyPublic) Key() *ecdh.PublicKey { return k.p.key }
func (k SignedPrekeyPublic) IsZero() bool         { return k.p.key == nil }
func (k SignedPrekeyPublic) Equal(o SignedPrekeyPublic) bool {
	return ctEqual(k.p.encode(kindSignedPrekeyPublic), o.p.encode(kindSignedPrekeyPublic))
}
func (k SignedPrekeyPublic) MarshalBinary() ([]byte, error) {
	return marshalOrErr("SignedPrekeyPublic", k.p.encode(kindSignedPrekeyPublic))
}
func (k *SignedPrekeyPublic) UnmarshalBinary(b []byte) (err error) {
	k.p, err = decodeXPub("SignedPrekeyPublic", b, kindSignedPrekeyPublic)
	return err
}
func (k SignedPrekeyPublic) MarshalText() ([]byte, error) {
	return textOrErr("SignedPrekeyPublic", signedPrekeyPrefix, k.p.encode(kindSignedPrekeyPublic))
}
func (k *SignedPrekeyPublic) UnmarshalText(t []byte) error {
	b, err := unmarshalText("SignedPrekeyPublic", signedPrekeyPrefix, t)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(b)
}

func (k SignedPrekeyPrivate) ID() uint32                 { return k.p.id }
func (k SignedPrekeyPrivate) IsZero() bool               { return k.p.key == nil }
func (k SignedPrekeyPrivate) Public() SignedPrekeyPublic { return SignedPrekeyPublic{k.p.public()} }
func (k SignedPrekeyPrivate) String() string             { return signedPrekeyPrivatePrefix + "<redacted>" }
func (k SignedPrekeyPrivate) Equal(o SignedPrekeyPrivate) bool {
	return ctEqual(k.p.encode(kindSignedPrekeyPrivate), o.p.encode(kindSignedPrekeyPrivate))
}
func (k SignedPrekeyPrivate) MarshalBinary() ([]byte, error) {
	return marshalOrErr("SignedPrekeyPrivate", k.p.encode(kindSignedPrekeyPrivate))
}
func (k *SignedPrekeyPrivate) UnmarshalBinary(b []byte) (err error) {
	k.p, err = decodeXPriv("SignedPrekeyPrivate", b, kindSignedPrekeyPrivate)
	return err
}
func (k SignedPrekeyPrivate) MarshalText() ([]byte, error) {
	return textOrErr("SignedPrekeyPrivate", signedPrekeyPrivatePrefix, k.p.encode(kindSignedPrekeyPrivate))
}
func (k *SignedPrekeyPrivate) UnmarshalText(t []byte) error {
	b, err := unmarshalText("SignedPrekeyPrivate", signedPrekeyPrivatePrefix, t)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(b)
}

// SignSignedPrekey signs the prekey's binary encoding (id included, so a
// directory cannot relabel a key) with the identity's Ed25519 key.
func (k IdentityPrivate) SignSignedPrekey(p SignedPrekeyPublic) ([]byte, error) {
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return k.sign(signedPrekeyContext, b)
}

// VerifySignedPrekey checks a signature made by SignSignedPrekey.
func (k IdentityPublic) VerifySignedPrekey(p SignedPrekeyPublic, sig []byte) error {
	b, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	return k.verify(signedPrekeyContext, b, sig)
}

// ---- one-time prekey ----

// OneTimePrekeyPublic is a published one-time X25519 prekey (OPK).
type OneTimePrekeyPublic struct{ p xPub }

// OneTimePrekeyPrivate is the private half of a one-time prekey. The device
// deletes it once a session using it has been established.
type OneTimePrekeyPrivate struct{ p xPriv }

// GenerateOneTimePrekey creates a one-time prekey with the given id.
func GenerateOneTimePrekey(rand io.Reader, id uint32) (OneTimePrekeyPrivate, error) {
	p, err := generateXPriv("GenerateOneTimePrekey", rand, id)
	return OneTimePrekeyPrivate{p}, err
}

func (k OneTimePrekeyPublic) ID() uint32           { return k.p.id }
func (k OneTimePrekeyPublic) Key() *ecdh.PublicKey { return k.p.key }
func (k OneTimePrekeyPublic) IsZero() bool         { return k.p.key == nil }
func (k OneTimePrekeyPublic) Equal(o OneTimePrekeyPublic) bool {
	return ctEqual(k.p.encode(kindOneTimePrekeyPublic), o.p.encode(kindOneTimePrekeyPublic))
}
func (k OneTimePrekeyPublic) MarshalBinary() ([]byte, error) {
	return marshalOrErr("OneTimePrekeyPublic", k.p.encode(kindOneTimePrekeyPublic))
}
func (k *OneTimePrekeyPublic) UnmarshalBinary(b []byte) (err error) {
	k.p, err = decodeXPub("OneTimePrekeyPublic", b, kindOneTimePrekeyPublic)
	return err
}
func (k OneTimePrekeyPublic) MarshalText() ([]byte, error) {
	return textOrErr("OneTimePrekeyPublic", oneTimePrekeyPrefix, k.p.encode(kindOneTimePrekeyPublic))
}
func (k *OneTimePrekeyPublic) UnmarshalText(t []byte) error {
	b, err := unmarshalText("OneTimePrekeyPublic", oneTimePrekeyPrefix, t)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(b)
}

func (k OneTimePrekeyPrivate) ID() uint32                  { return k.p.id }
func (k OneTimePrekeyPrivate) IsZero() bool                { return k.p.key == nil }
func (k OneTimePrekeyPrivate) Public() OneTimePrekeyPublic { return OneTimePrekeyPublic{k.p.public()} }
func (k OneTimePrekeyPrivate) String() string              { return oneTimePrekeyPrivatePrefix + "<redacted>" }
func (k OneTimePrekeyPrivate) Equal(o OneTimePrekeyPrivate) bool {
	return ctEqual(k.p.encode(kindOneTimePrekeyPrivate), o.p.encode(kindOneTimePrekeyPrivate))
}
func (k OneTimePrekeyPrivate) MarshalBinary() ([]byte, error) {
	return marshalOrErr("OneTimePrekeyPrivate", k.p.encode(kindOneTimePrekeyPrivate))
}
func (k *OneTimePrekeyPrivate) UnmarshalBinary(b []byte) (err error) {
	k.p, err = decodeXPriv("OneTimePrekeyPrivate", b, kindOneTimePrekeyPrivate)
	return err
}
func (k OneTimePrekeyPrivate) MarshalText() ([]byte, error) {
	return textOrErr("OneTimePrekeyPrivate", oneTimePrekeyPrivatePrefix, k.p.encode(kindOneTimePrekeyPrivate))
}
func (k *OneTimePrekeyPrivate) UnmarshalText(t []byte) error {
	b, err := unmarshalText("OneTimePrekeyPrivate", oneTimePrekeyPrivatePrefix, t)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(b)
}

// ---- ML-KEM-768 prekey ----

const (
	pqPublicLen = 2 + 4 + 1 + mlkem.EncapsulationKeySize768
)

// PQPrekeyPublic is a published, signed ML-KEM-768 prekey (PQSPK or PQOPK).
type PQPrekeyPublic struct {
	id         uint32
	lastResort bool
	key        *mlkem.EncapsulationKey768
}

// PQPrekeyPrivate is the private half of a PQ prekey, stored as its 64-byte
// seed (FIPS 203 "d || z").
type PQPrekeyPrivate struct {
	id         uint32
	lastResort bool
	key        *mlkem.DecapsulationKey768
}

// GeneratePQPrekey creates an ML-KEM-768 prekey. lastResort marks the key
// that is reused when no one-time PQ prekey is left; a one-time PQ prekey is
// deleted after use.
func GeneratePQPrekey(rand io.Reader, id uint32, lastResort bool) (PQPrekeyPrivate, error) {
	seed, err := randomBytes(rand, mlkem.SeedSize)
	if err != nil {
		return PQPrekeyPrivate{}, fmt.Errorf("keys.GeneratePQPrekey: %w", err)
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return PQPrekeyPrivate{}, fmt.Errorf("keys.GeneratePQPrekey: %w", err)
	}
	return PQPrekeyPrivate{id: id, lastResort: lastResort, key: dk}, nil
}

func (k PQPrekeyPublic) ID() uint32                      { return k.id }
func (k PQPrekeyPublic) LastResort() bool                { return k.lastResort }
func (k PQPrekeyPublic) Key() *mlkem.EncapsulationKey768 { return k.key }
func (k PQPrekeyPublic) IsZero() bool                    { return k.key == nil }
func (k PQPrekeyPublic) Equal(o PQPrekeyPublic) bool     { return ctEqual(k.bytes(), o.bytes()) }
func (k PQPrekeyPrivate) ID() uint32                     { return k.id }
func (k PQPrekeyPrivate) LastResort() bool               { return k.lastResort }
func (k PQPrekeyPrivate) IsZero() bool                   { return k.key == nil }
func (k PQPrekeyPrivate) Equal(o PQPrekeyPrivate) bool   { return ctEqual(k.bytes(), o.bytes()) }
func (k PQPrekeyPrivate) String() string                 { return pqPrekeyPrivatePrefix + "<redacted>" }
func (k PQPrekeyPublic) MarshalBinary() ([]byte, error) {
	return marshalOrErr("PQPrekeyPublic", k.bytes())
}
func (k PQPrekeyPrivate) MarshalBinary() ([]byte, error) {
	return marshalOrErr("PQPrekeyPrivate", k.bytes())
}

// Public returns the public half.
func (k PQPrekeyPrivate) Public() PQPrekeyPublic {
	if k.key == nil {
		return PQPrekeyPublic{}
	}
	return PQPrekeyPublic{id: k.id, lastResort: k.lastResort, key: k.key.EncapsulationKey()}
}

func pqHeader(k kind, id uint32, lastResort bool) []byte {
	b := binary.BigEndian.AppendUint32(header(k), id)
	return appendBool(b, lastResort)
}

func (k PQPrekeyPublic) bytes() []byte {
	if k.key == nil {
		return nil
	}
	return append(pqHeader(kindPQPrekeyPublic, k.id, k.lastResort), k.key.Bytes()...)
}

func (k PQPrekeyPrivate) bytes() []byte {
	if k.key == nil {
		return nil
	}
	return append(pqHeader(kindPQPrekeyPrivate, k.id, k.lastResort), k.key.Bytes()...)
}

// UnmarshalBinary decodes the form written by MarshalBinary. The ML-KEM
// encapsulation key is checked as FIPS 203 requires (coefficients < q).
func (k *PQPrekeyPublic) UnmarshalBinary(b []byte) error {
	d := newDecoder("PQPrekeyPublic", b, kindPQPrekeyPublic)
	id, lr := d.u32(), d.bool()
	raw := d.bytes(mlkem.EncapsulationKeySize768)
	if err := d.finish(); err != nil {
		return err
	}
	ek, err := mlkem.NewEncapsulationKey768(raw)
	if err != nil {
		return fmt.Errorf("keys.PQPrekeyPublic: %w: %w", ErrInvalidEncoding, err)
	}
	*k = PQPrekeyPublic{id: id, lastResort: lr, key: ek}
	return nil
}

// UnmarshalBinary decodes the form written by MarshalBinary.
func (k *PQPrekeyPrivate) UnmarshalBinary(b []byte) error {
	d := newDecoder("PQPrekeyPrivate", b, kindPQPrekeyPrivate)
	id, lr := d.u32(), d.bool()
	raw := d.bytes(mlkem.SeedSize)
	if err := d.finish(); err != nil {
		return err
	}
	dk, err := mlkem.NewDecapsulationKey768(raw)
	if err != nil {
		return fmt.Errorf("keys.PQPrekeyPrivate: %w: %w", ErrInvalidEncoding, err)
	}
	*k = PQPrekeyPrivate{id: id, lastResort: lr, key: dk}
	return nil
}

func (k PQPrekeyPublic) MarshalText() ([]byte, error) {
	return textOrErr("PQPrekeyPublic", pqPrekeyPrefix, k.bytes())
}
func (k *PQPrekeyPublic) UnmarshalText(t []byte) error {
	b, err := unmarshalText("PQPrekeyPublic", pqPrekeyPrefix, t)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(b)
}
func (k PQPrekeyPrivate) MarshalText() ([]byte, error) {
	return textOrErr("PQPrekeyPrivate", pqPrekeyPrivatePrefix, k.bytes())
}
func (k *PQPrekeyPrivate) UnmarshalText(t []byte) error {
	b, err := unmarshalText("PQPrekeyPrivate", pqPrekeyPrivatePrefix, t)
	if err != nil {
		return err
	}
	return k.UnmarshalBinary(b)
}

// SignPQPrekey signs the PQ prekey's binary encoding, which includes its id
// and last-resort flag, so neither can be changed by the directory.
func (k IdentityPrivate) SignPQPrekey(p PQPrekeyPublic) ([]byte, error) {
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return k.sign(pqPrekeyContext, b)
}

// VerifyPQPrekey checks a signature made by SignPQPrekey.
func (k IdentityPublic) VerifyPQPrekey(p PQPrekeyPublic, sig []byte) error {
	b, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	return k.verify(pqPrekeyContext, b, sig)
}
