package keys

// PQXDH key agreement, following Signal's "The PQXDH Key Agreement Protocol"
// (revision 3, 2024) with these parameters and deviations:
//
// Parameters: curve X25519, hash SHA-256, pqkem ML-KEM-768 (FIPS 203),
// info "kanal PQXDH X25519 SHA-256 ML-KEM-768 v1", AEAD and ratchet as in
// ratchet.go. Encode(PK) for identity keys is IdentityPublic's binary
// encoding; prekey ids travel in the initial message.
//
// Deviations from the specification:
//
//  1. Identity keys. Signal uses one Curve25519 identity key and XEdDSA
//     signatures. kanal uses a separate Ed25519 signing key and X25519
//     agreement key (IdentityPublic holds both). DH1 and DH2 use the X25519
//     key; prekey signatures use the Ed25519 key. Encode(IK) covers both
//     keys, so the associated data and safety numbers bind both.
//  2. Signed content. Signal signs Encode(SPKB) and Encode(PQPKB). kanal
//     signs a domain-separated message ("kanal signed prekey v1" or
//     "kanal pq prekey v1", a NUL, then the prekey's binary encoding, which
//     includes its id and, for PQ prekeys, the last-resort flag). This keeps
//     a directory from relabelling keys and keeps the two signature kinds
//     (and any other Ed25519 use of the identity key) apart.
//  3. Associated data. AD = Encode(IKA) || Encode(IKB), exactly as the spec's
//     minimum. Device ids and certificates are bound outside PQXDH: each
//     identity key is signed by its device key (SignIdentity), and the caller
//     checks that binding for both IKB (from the bundle) and IKA (from the
//     initial message) before trusting the session.
//  4. The initial message carries no ciphertext; the caller sends the first
//     Double Ratchet message next to it (see InitialMessage), which is what
//     the spec's "initial ciphertext" is in practice.
//  5. Key erasure. The spec asks that DH outputs and SS be deleted. Go cannot
//     guarantee erasure of heap memory; kanal drops every reference
//     immediately and keeps none of them in any returned value.
//
// The responder must delete the one-time prekeys (X25519 and, if one-time,
// the PQ prekey) named in an initial message once RespondPQXDH succeeded, so
// they cannot be used again.

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"fmt"
	"io"
)

const pqxdhInfo = "kanal PQXDH X25519 SHA-256 ML-KEM-768 v1"

// SharedKeySize is the size of the PQXDH shared key SK.
const SharedKeySize = 32

// InitialMessage is the PQXDH initial message the initiator sends with its
// first ratchet message (spec §3.3): its identity, its ephemeral key, the ML-KEM
// ciphertext and the ids of the prekeys it used.
type InitialMessage struct {
	Identity         IdentityPublic
	Ephemeral        *ecdh.PublicKey
	SignedPrekeyID   uint32
	PQPrekeyID       uint32
	HasOneTimePrekey bool
	OneTimePrekeyID  uint32
	KEMCiphertext    []byte
}

// PQXDHInitiation is the initiator's result.
type PQXDHInitiation struct {
	// SharedKey is SK, the root key for NewInitiatorSession.
	SharedKey []byte
	// AssociatedData is AD = Encode(IKA) || Encode(IKB).
	AssociatedData []byte
	// Message is sent to the responder.
	Message InitialMessage
	// RemoteRatchetKey is the responder's signed prekey, which the Double
	// Ratchet uses as the responder's first ratchet public key.
	RemoteRatchetKey SignedPrekeyPublic
}

// ResponderPrekeys are the responder's private keys named by an initial
// message. The caller looks them up by the ids in the message.
type ResponderPrekeys struct {
	Identity      IdentityPrivate
	SignedPrekey  SignedPrekeyPrivate
	PQPrekey      PQPrekeyPrivate
	OneTimePrekey *OneTimePrekeyPrivate // nil when the message names none
}

// encapsulateFunc performs ML-KEM encapsulation. It is a parameter only so
// that known-answer tests can use derandomized encapsulation
// (crypto/mlkem/mlkemtest); production always uses stdEncapsulate.
type encapsulateFunc func(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)

func stdEncapsulate(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
	ss, ct := ek.Encapsulate()
	return ss, ct, nil
}

// InitiatePQXDH runs the initiator side against a bundle fetched from the
// directory. It verifies the bundle's signatures first (spec §3.3: abort if
// they fail). rand (crypto/rand when nil) supplies the ephemeral key; the
// ML-KEM encapsulation always uses crypto/rand.
func InitiatePQXDH(rand io.Reader, self IdentityPrivate, bundle *PrekeyBundle) (*PQXDHInitiation, error) {
	return initiatePQXDH(rand, self, bundle, stdEncapsulate)
}

func initiatePQXDH(rand io.Reader, self IdentityPrivate, bundle *PrekeyBundle, encap encapsulateFunc) (*PQXDHInitiation, error) {
	if self.IsZero() || bundle == nil {
		return nil, fmt.Errorf("keys.pqxdh: %w", ErrInvalidKey)
	}
	if err := bundle.Verify(); err != nil {
		return nil, fmt.Errorf("keys.pqxdh: %w", err)
	}
	ek, err := newX25519(rand)
	if err != nil {
		return nil, fmt.Errorf("keys.pqxdh: %w", err)
	}
	// The DH order follows the spec: DH1 gives mutual authentication via the
	// identity key, DH2 and DH3 forward secrecy via the ephemeral key, DH4
	// (optional) one-time forward secrecy.
	pairs := []dhPair{
		{self.dh, bundle.SignedPrekey.Key()}, // DH1 = DH(IKA, SPKB)
		{ek, bundle.Identity.AgreementKey()}, // DH2 = DH(EKA, IKB)
		{ek, bundle.SignedPrekey.Key()},      // DH3 = DH(EKA, SPKB)
	}
	if bundle.HasOneTimePrekey() {
		pairs = append(pairs, dhPair{ek, bundle.OneTimePrekey.Key()}) // DH4 = DH(EKA, OPKB)
	}
	ikm, err := pqxdhDH(pairs)
	if err != nil {
		return nil, err
	}
	// (CT, SS) = PQKEM-ENC(PQPKB): the post-quantum contribution, so that an
	// adversary who later breaks X25519 still lacks SS.
	ss, ct, err := encap(bundle.PQPrekey.Key())
	if err != nil {
		return nil, fmt.Errorf("keys.pqxdh: encapsulate: %w", err)
	}
	ikm = append(ikm, ss...)
	sk, err := pqxdhKDF(ikm)
	if err != nil {
		return nil, err
	}
	msg := InitialMessage{
		Identity:         self.Public(),
		Ephemeral:        ek.PublicKey(),
		SignedPrekeyID:   bundle.SignedPrekey.ID(),
		PQPrekeyID:       bundle.PQPrekey.ID(),
		HasOneTimePrekey: bundle.HasOneTimePrekey(),
		KEMCiphertext:    ct,
	}
	if msg.HasOneTimePrekey {
		msg.OneTimePrekeyID = bundle.OneTimePrekey.ID()
	}
	return &PQXDHInitiation{
		SharedKey:        sk,
		AssociatedData:   pqxdhAD(self.Public(), bundle.Identity),
		Message:          msg,
		RemoteRatchetKey: bundle.SignedPrekey,
	}, nil
}

// RespondPQXDH runs the responder side: it recomputes SK from its private
// prekeys and the initial message and returns SK and AD. The caller must have
// checked msg.Identity against the initiator's device binding, and must delete
// the one-time prekeys afterwards.
func RespondPQXDH(keys ResponderPrekeys, msg *InitialMessage) (sharedKey, ad []byte, err error) {
	if keys.Identity.IsZero() || keys.SignedPrekey.IsZero() || keys.PQPrekey.IsZero() || msg == nil ||
		msg.Identity.IsZero() || msg.Ephemeral == nil {
		return nil, nil, fmt.Errorf("keys.pqxdh: %w", ErrInvalidKey)
	}
	if err := checkResponderPrekeys(keys, msg); err != nil {
		return nil, nil, err
	}
	ikA := msg.Identity.AgreementKey()
	pairs := []dhPair{
		{keys.SignedPrekey.p.key, ikA},           // DH1 = DH(SPKB, IKA)
		{keys.Identity.dh, msg.Ephemeral},        // DH2 = DH(IKB, EKA)
		{keys.SignedPrekey.p.key, msg.Ephemeral}, // DH3 = DH(SPKB, EKA)
	}
	if msg.HasOneTimePrekey {
		pairs = append(pairs, dhPair{keys.OneTimePrekey.p.key, msg.Ephemeral}) // DH4 = DH(OPKB, EKA)
	}
	ikm, err := pqxdhDH(pairs)
	if err != nil {
		return nil, nil, err
	}
	ss, err := keys.PQPrekey.key.Decapsulate(msg.KEMCiphertext)
	if err != nil {
		return nil, nil, fmt.Errorf("keys.pqxdh: decapsulate: %w: %w", ErrInvalidEncoding, err)
	}
	ikm = append(ikm, ss...)
	sk, err := pqxdhKDF(ikm)
	if err != nil {
		return nil, nil, err
	}
	return sk, pqxdhAD(msg.Identity, keys.Identity.Public()), nil
}

type dhPair struct {
	priv *ecdh.PrivateKey
	pub  *ecdh.PublicKey
}

// pqxdhDH returns F || DH1 || DH2 || DH3 [|| DH4]. Any low-order peer key
// aborts the whole exchange (spec §4.6).
func pqxdhDH(pairs []dhPair) ([]byte, error) {
	ikm := pqxdhPrefix()
	for _, p := range pairs {
		out, err := x25519(p.priv, p.pub)
		if err != nil {
			return nil, fmt.Errorf("keys.pqxdh: %w", err)
		}
		ikm = append(ikm, out...)
	}
	return ikm, nil
}

// checkResponderPrekeys makes sure the caller looked up the keys the message
// names; using a different key would only fail later, with a less helpful
// error.
func checkResponderPrekeys(keys ResponderPrekeys, msg *InitialMessage) error {
	if keys.SignedPrekey.ID() != msg.SignedPrekeyID || keys.PQPrekey.ID() != msg.PQPrekeyID {
		return fmt.Errorf("keys.pqxdh: %w", ErrPrekeyMismatch)
	}
	hasOPK := keys.OneTimePrekey != nil && !keys.OneTimePrekey.IsZero()
	if hasOPK != msg.HasOneTimePrekey || (hasOPK && keys.OneTimePrekey.ID() != msg.OneTimePrekeyID) {
		return fmt.Errorf("keys.pqxdh: one-time prekey: %w", ErrPrekeyMismatch)
	}
	return nil
}

// pqxdhPrefix returns F, 32 0xFF bytes. As in X3DH/PQXDH it makes the KDF
// input distinct from any XEdDSA-style use of the same keys, and the
// capacity leaves room for four DH outputs and SS without reallocation.
func pqxdhPrefix() []byte {
	ikm := make([]byte, 32, 32*6)
	for i := range ikm {
		ikm[i] = 0xFF
	}
	return ikm
}

// pqxdhKDF is KDF(KM) from spec §2.2: HKDF-SHA-256 with a zero salt of hash
// length, F || KM as input key material, and kanal's info string.
func pqxdhKDF(ikm []byte) ([]byte, error) {
	salt := make([]byte, 32)
	sk, err := hkdfSHA256(ikm, salt, pqxdhInfo, SharedKeySize)
	if err != nil {
		return nil, fmt.Errorf("keys.pqxdh: kdf: %w", err)
	}
	return sk, nil
}

// pqxdhAD is AD = Encode(IKA) || Encode(IKB). Both encodings have a fixed
// length, so the concatenation is unambiguous.
func pqxdhAD(initiator, responder IdentityPublic) []byte {
	return append(initiator.bytes(), responder.bytes()...)
}

const initialMessageMinLen = 2 + identityPublicLen + 32 + 4 + 4 + 1

// MarshalBinary encodes the message:
//
//	version || kind || IdentityPublic || EK(32) || SPK id(4) || PQPK id(4) ||
//	hasOPK(1) || [OPK id(4)] || ML-KEM ciphertext(1088)
func (m *InitialMessage) MarshalBinary() ([]byte, error) {
	if m.Identity.IsZero() || m.Ephemeral == nil || len(m.KEMCiphertext) != mlkem.CiphertextSize768 {
		return nil, fmt.Errorf("keys.InitialMessage: %w", ErrInvalidKey)
	}
	b := header(kindInitialMessage)
	b = append(b, m.Identity.bytes()...)
	b = append(b, m.Ephemeral.Bytes()...)
	b = be32(b, m.SignedPrekeyID)
	b = be32(b, m.PQPrekeyID)
	b = appendBool(b, m.HasOneTimePrekey)
	if m.HasOneTimePrekey {
		b = be32(b, m.OneTimePrekeyID)
	}
	return append(b, m.KEMCiphertext...), nil
}

// UnmarshalBinary decodes the form written by MarshalBinary.
func (m *InitialMessage) UnmarshalBinary(data []byte) error {
	d := newDecoder("InitialMessage", data, kindInitialMessage)
	idb := d.bytes(identityPublicLen)
	ekb := d.bytes(32)
	var nm InitialMessage
	nm.SignedPrekeyID = d.u32()
	nm.PQPrekeyID = d.u32()
	nm.HasOneTimePrekey = d.bool()
	if nm.HasOneTimePrekey {
		nm.OneTimePrekeyID = d.u32()
	}
	nm.KEMCiphertext = append([]byte(nil), d.bytes(mlkem.CiphertextSize768)...)
	if err := d.finish(); err != nil {
		return err
	}
	if err := nm.Identity.UnmarshalBinary(idb); err != nil {
		return fmt.Errorf("keys.InitialMessage: %w", err)
	}
	ek, err := parseX25519Public(ekb)
	if err != nil {
		return fmt.Errorf("keys.InitialMessage: %w: %w", ErrInvalidEncoding, err)
	}
	nm.Ephemeral = ek
	*m = nm
	return nil
}
