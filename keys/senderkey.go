package keys

// Sender keys for large groups, after Signal's sender-key construction: each
// sender has a symmetric chain (KDF_CK as in the Double Ratchet) and an
// Ed25519 signing key. The sender hands both to every member once, in a
// SenderKeyDistribution sent over the pairwise Double Ratchet sessions, and
// then encrypts each group message once instead of once per device.
//
// Every member can derive the chain, so the AEAD alone only proves "someone
// in the group"; the per-message Ed25519 signature proves the sender. The
// signature covers the group's associated data as well as header and
// ciphertext, because Poly1305 is not committing: a member who knows the
// message key could otherwise make the same ciphertext verify under other
// associated data.
//
// Sender keys have no DH ratchet, hence no post-compromise security: clients
// Rotate whenever membership changes (so removed members cannot read on) and
// periodically.

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	senderKeyMessageInfo    = "kanal sender key message v1"
	senderKeyMessageContext = "kanal sender key message v1"

	// senderKeyHeaderLen is version || kind || key id(4) || iteration(4).
	senderKeyHeaderLen = 2 + 4 + 4
)

// SenderKey is a member's own sending state for one group. It is secret and
// not safe for concurrent use; persist it after every Encrypt.
type SenderKey struct {
	keyID     uint32
	iteration uint32
	chainKey  [32]byte
	sig       ed25519.PrivateKey
}

// SenderKeyDistribution gives a member what it needs to read a sender's group
// messages from the current iteration on. It is secret: send it only inside
// pairwise sessions.
type SenderKeyDistribution struct {
	keyID     uint32
	iteration uint32
	chainKey  [32]byte
	sigPub    ed25519.PublicKey
}

// SenderKeyReceiver is a member's receiving state for one sender's key.
type SenderKeyReceiver struct {
	keyID     uint32
	iteration uint32
	chainKey  [32]byte
	sigPub    ed25519.PublicKey
	skipped   map[uint32][32]byte
}

// NewSenderKey creates a sender key with a random key id, chain key and
// signing key, from rand (crypto/rand when nil).
func NewSenderKey(rand io.Reader) (*SenderKey, error) {
	seed, err := randomBytes(rand, 4+32+ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("keys.senderkey: %w", err)
	}
	k := &SenderKey{keyID: binary.BigEndian.Uint32(seed), sig: ed25519.NewKeyFromSeed(seed[36:])}
	copy(k.chainKey[:], seed[4:36])
	return k, nil
}

// Rotate returns a fresh, unrelated sender key with a different key id.
// Members holding the old distribution cannot read messages under the new
// key; distribute the new one to the current members only.
func (k *SenderKey) Rotate(rand io.Reader) (*SenderKey, error) {
	for {
		n, err := NewSenderKey(rand)
		if err != nil || n.keyID != k.keyID {
			return n, err
		}
	}
}

// KeyID identifies the sender key; messages name it.
func (k *SenderKey) KeyID() uint32 { return k.keyID }

// Distribution returns the distribution message for the current iteration.
func (k *SenderKey) Distribution() *SenderKeyDistribution {
	return &SenderKeyDistribution{
		keyID: k.keyID, iteration: k.iteration, chainKey: k.chainKey,
		sigPub: k.sig.Public().(ed25519.PublicKey),
	}
}

// KeyID identifies the sender key being distributed.
func (d *SenderKeyDistribution) KeyID() uint32 { return d.keyID }

func senderKeyAEAD(mk [32]byte) (aeadCipher, []byte, error) {
	return messageAEAD(mk, senderKeyMessageInfo)
}

// senderKeySigned is the signed content: context || 0 || len(ad) || ad ||
// header || ciphertext.
func senderKeySigned(ad, body []byte) []byte {
	msg := make([]byte, 0, 2+len(ad)+len(body))
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(ad)))
	msg = append(msg, ad...)
	return signedMessage(senderKeyMessageContext, append(msg, body...))
}

// Encrypt encrypts and signs a group message. ad binds group context (for
// example the conversation id and epoch) and must be the same on decryption.
// The result is key id || iteration || ciphertext || Ed25519 signature.
func (k *SenderKey) Encrypt(plaintext, ad []byte) ([]byte, error) {
	if len(k.sig) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("keys.senderkey: %w", ErrInvalidKey)
	}
	if len(plaintext) > MaxMessageLen-senderKeyHeaderLen-chacha20poly1305.Overhead-ed25519.SignatureSize {
		return nil, fmt.Errorf("keys.senderkey: encrypt: %w", ErrTooLarge)
	}
	if len(ad) > MaxAssociatedDataLen {
		return nil, fmt.Errorf("keys.senderkey: associated data: %w", ErrTooLarge)
	}
	if k.iteration == math.MaxUint32 {
		return nil, fmt.Errorf("keys.senderkey: chain exhausted, rotate: %w", ErrTooLarge)
	}
	mk, next := chainKDF(k.chainKey)
	aead, nonce, err := senderKeyAEAD(mk)
	if err != nil {
		return nil, fmt.Errorf("keys.senderkey: encrypt: %w", err)
	}
	out := make([]byte, 0, senderKeyHeaderLen+len(plaintext)+chacha20poly1305.Overhead+ed25519.SignatureSize)
	out = append(out, encodingVersion, byte(kindSenderKeyMessage))
	out = be32(out, k.keyID)
	out = be32(out, k.iteration)
	out = aead.Seal(out, nonce, plaintext, ratchetAD(ad, out[:senderKeyHeaderLen]))
	out = append(out, ed25519.Sign(k.sig, senderKeySigned(ad, out))...)
	k.chainKey = next
	k.iteration++
	return out, nil
}

// NewSenderKeyReceiver starts receiving a sender's messages from a
// distribution message (received over the pairwise session with the sender).
func NewSenderKeyReceiver(d *SenderKeyDistribution) (*SenderKeyReceiver, error) {
	if d == nil || len(d.sigPub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("keys.senderkey: %w", ErrInvalidKey)
	}
	return &SenderKeyReceiver{
		keyID: d.keyID, iteration: d.iteration, chainKey: d.chainKey,
		sigPub: d.sigPub, skipped: map[uint32][32]byte{},
	}, nil
}

// KeyID identifies the sender key this receiver accepts.
func (r *SenderKeyReceiver) KeyID() uint32 { return r.keyID }

// SenderKeyMessageKeyID returns the key id a sender-key message names, so a
// client can pick the receiver state (or notice that it needs a new
// distribution).
func SenderKeyMessageKeyID(msg []byte) (uint32, error) {
	d := newDecoder("senderkey", msg, kindSenderKeyMessage)
	id := d.u32()
	return id, d.err
}

// Decrypt verifies the signature, then decrypts. The signature is checked
// first, against the key from the distribution, so nothing from an impostor
// reaches the chain. On error the receiver state is unchanged.
func (r *SenderKeyReceiver) Decrypt(msg, ad []byte) ([]byte, error) {
	if len(msg) > MaxMessageLen {
		return nil, fmt.Errorf("keys.senderkey: %w", ErrTooLarge)
	}
	if len(r.sigPub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("keys.senderkey: %w", ErrInvalidKey)
	}
	d := newDecoder("senderkey", msg, kindSenderKeyMessage)
	keyID, iter := d.u32(), d.u32()
	rest := d.rest()
	if d.err == nil && len(rest) < chacha20poly1305.Overhead+ed25519.SignatureSize {
		d.fail("truncated")
	}
	if d.err != nil {
		return nil, d.err
	}
	if keyID != r.keyID {
		return nil, fmt.Errorf("keys.senderkey: key id %d: %w", keyID, ErrUnknownSenderKey)
	}
	body, sig := msg[:len(msg)-ed25519.SignatureSize], msg[len(msg)-ed25519.SignatureSize:]
	if !ed25519.Verify(r.sigPub, senderKeySigned(ad, body), sig) {
		return nil, fmt.Errorf("keys.senderkey: %w", ErrBadSignature)
	}
	hdr, ct := body[:senderKeyHeaderLen], body[senderKeyHeaderLen:]
	if iter < r.iteration {
		return r.decryptSkipped(iter, hdr, ct, ad)
	}
	if iter-r.iteration > MaxSkip {
		return nil, fmt.Errorf("keys.senderkey: message skips %d keys: %w", iter-r.iteration, ErrTooManySkipped)
	}
	// Stage: derive up to iter on copies, commit after the AEAD succeeded.
	ck := r.chainKey
	var staged [][32]byte
	for i := r.iteration; i < iter; i++ {
		var mk [32]byte
		mk, ck = chainKDF(ck)
		staged = append(staged, mk)
	}
	mk, next := chainKDF(ck)
	pt, err := openSenderKey(mk, hdr, ct, ad)
	if err != nil {
		return nil, err
	}
	if r.skipped == nil {
		r.skipped = map[uint32][32]byte{}
	}
	for i, k := range staged {
		r.skipped[r.iteration+uint32(i)] = k
	}
	r.chainKey, r.iteration = next, iter+1
	r.evictSkipped()
	return pt, nil
}

func (r *SenderKeyReceiver) decryptSkipped(iter uint32, hdr, ct, ad []byte) ([]byte, error) {
	mk, ok := r.skipped[iter]
	if !ok {
		return nil, fmt.Errorf("keys.senderkey: iteration %d: %w", iter, ErrReplay)
	}
	pt, err := openSenderKey(mk, hdr, ct, ad)
	if err != nil {
		return nil, err
	}
	delete(r.skipped, iter)
	return pt, nil
}

func openSenderKey(mk [32]byte, hdr, ct, ad []byte) ([]byte, error) {
	aead, nonce, err := senderKeyAEAD(mk)
	if err != nil {
		return nil, fmt.Errorf("keys.senderkey: decrypt: %w", err)
	}
	pt, err := aead.Open(nil, nonce, ct, ratchetAD(ad, hdr))
	if err != nil {
		return nil, fmt.Errorf("keys.senderkey: decrypt: %w", ErrDecrypt)
	}
	return pt, nil
}

// evictSkipped keeps at most MaxSkippedKeys, dropping the lowest (oldest)
// iterations first.
func (r *SenderKeyReceiver) evictSkipped() {
	over := len(r.skipped) - MaxSkippedKeys
	if over <= 0 {
		return
	}
	for _, it := range r.sortedSkipped()[:over] {
		delete(r.skipped, it)
	}
}

func (r *SenderKeyReceiver) sortedSkipped() []uint32 {
	its := make([]uint32, 0, len(r.skipped))
	for it := range r.skipped {
		its = append(its, it)
	}
	slices.Sort(its)
	return its
}

// ---- encodings ----

// MarshalBinary encodes version || kind || key id || iteration || chain key
// || Ed25519 public key.
func (d *SenderKeyDistribution) MarshalBinary() ([]byte, error) {
	if len(d.sigPub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("keys.SenderKeyDistribution: %w", ErrInvalidKey)
	}
	b := be32(header(kindSenderKeyDistribution), d.keyID)
	b = be32(b, d.iteration)
	b = append(b, d.chainKey[:]...)
	return append(b, d.sigPub...), nil
}

// UnmarshalBinary decodes the form written by MarshalBinary.
func (d *SenderKeyDistribution) UnmarshalBinary(data []byte) error {
	dec := newDecoder("SenderKeyDistribution", data, kindSenderKeyDistribution)
	n := SenderKeyDistribution{keyID: dec.u32(), iteration: dec.u32(), chainKey: dec.array32()}
	n.sigPub = ed25519.PublicKey(append([]byte(nil), dec.bytes(ed25519.PublicKeySize)...))
	if err := dec.finish(); err != nil {
		return err
	}
	*d = n
	return nil
}

// MarshalBinary encodes the sending state: version || kind || key id ||
// iteration || chain key || Ed25519 seed. The result is secret.
func (k *SenderKey) MarshalBinary() ([]byte, error) {
	if len(k.sig) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("keys.SenderKey: %w", ErrInvalidKey)
	}
	b := be32(header(kindSenderKeySender), k.keyID)
	b = be32(b, k.iteration)
	b = append(b, k.chainKey[:]...)
	return append(b, k.sig.Seed()...), nil
}

// UnmarshalBinary decodes the form written by MarshalBinary.
func (k *SenderKey) UnmarshalBinary(data []byte) error {
	d := newDecoder("SenderKey", data, kindSenderKeySender)
	n := SenderKey{keyID: d.u32(), iteration: d.u32(), chainKey: d.array32()}
	seed := d.bytes(ed25519.SeedSize)
	if err := d.finish(); err != nil {
		return err
	}
	n.sig = ed25519.NewKeyFromSeed(seed)
	*k = n
	return nil
}

// MarshalBinary encodes the receiving state: version || kind || key id ||
// iteration || chain key || Ed25519 public key || count(4) || count ×
// (iteration(4) || message key(32)), iterations ascending. It is secret.
func (r *SenderKeyReceiver) MarshalBinary() ([]byte, error) {
	if len(r.sigPub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("keys.SenderKeyReceiver: %w", ErrInvalidKey)
	}
	b := be32(header(kindSenderKeyReceiver), r.keyID)
	b = be32(b, r.iteration)
	b = append(b, r.chainKey[:]...)
	b = append(b, r.sigPub...)
	b = be32(b, uint32(len(r.skipped)))
	for _, it := range r.sortedSkipped() {
		mk := r.skipped[it]
		b = be32(b, it)
		b = append(b, mk[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes the form written by MarshalBinary.
func (r *SenderKeyReceiver) UnmarshalBinary(data []byte) error {
	if len(data) > MaxSessionLen {
		return fmt.Errorf("keys.SenderKeyReceiver: %w", ErrTooLarge)
	}
	d := newDecoder("SenderKeyReceiver", data, kindSenderKeyReceiver)
	n := SenderKeyReceiver{keyID: d.u32(), iteration: d.u32(), chainKey: d.array32(), skipped: map[uint32][32]byte{}}
	n.sigPub = ed25519.PublicKey(append([]byte(nil), d.bytes(ed25519.PublicKeySize)...))
	count := d.u32()
	if count > MaxSkippedKeys {
		d.fail("too many skipped keys")
	}
	var last uint32
	for i := uint32(0); i < count && d.err == nil; i++ {
		it, mk := d.u32(), d.array32()
		if (i > 0 && it <= last) || it >= n.iteration {
			d.fail("inconsistent skipped keys")
		}
		last = it
		n.skipped[it] = mk
	}
	if err := d.finish(); err != nil {
		return err
	}
	*r = n
	return nil
}
