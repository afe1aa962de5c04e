package keys

// The Double Ratchet, following Signal's "The Double Ratchet Algorithm"
// (revision 1, 2016-11-20) with these choices (spec §5.2):
//
//   - GENERATE_DH / DH: X25519 (RFC 7748) via circl's dh/x25519 on raw
//     keys (newRatchetKey, ratchetDH in kdf.go); all-zero outputs rejected.
//   - KDF_RK(rk, dh_out): HKDF-SHA-256 with salt rk, input dh_out, info
//     "kanal ratchet root v1", 64 bytes → (root key, chain key).
//   - KDF_CK(ck): HMAC-SHA-256(ck, 0x01) → message key,
//     HMAC-SHA-256(ck, 0x02) → next chain key.
//   - ENCRYPT(mk, pt, ad): HKDF-SHA-256(mk, zero salt, "kanal ratchet message
//     v1") → 32-byte ChaCha20-Poly1305 key || 12-byte nonce. A nonce derived
//     from the key is safe because every message key is used exactly once.
//     The AEAD's associated data is len(AD) || AD || header (CONCAT with a
//     length prefix, so the split is unambiguous).
//   - MAX_SKIP = MaxSkip per chain for the current receiving chain. When a
//     new ratchet key arrives with PN more than MaxSkip ahead, the rest of the
//     previous chain is abandoned instead of rejecting the message (see
//     skipPrevious). In addition at most MaxSkippedKeys are
//     stored (oldest dropped first) and each lives MaxSkippedSteps receiving
//     ratchet steps. A session keeps no clock; lifetimes count ratchet steps.
//
// Deviations and additions: header encryption (spec §4) is not implemented,
// so the ratchet public key and counters are visible to the server. A failed
// decryption leaves the session exactly as it was: all changes are staged and
// committed only after the AEAD has authenticated the message (the spec's
// "exception → discard changes"). Replays of keys already used are reported
// as ErrReplay, using the recent remote ratchet keys to recognise old chains.
//
// A chain key is used only when it exists: Decrypt derives message keys
// from a receiving chain only after a DH ratchet step has created it from
// the root key (the PQXDH secret, or a later root) and a DH output of our
// own private ratchet key. Before the initiator has decrypted the
// responder's first reply it has no receiving chain, so a message whose
// header names the responder's signed prekey fails with ErrDecrypt instead
// of being read under a chain key made of public values (spec: CKr = None).
// An all-zero PQXDH shared key is refused when a session starts.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	ratchetRootInfo    = "kanal ratchet root v1"
	ratchetMessageInfo = "kanal ratchet message v1"

	// ratchetHeaderLen is version || kind || DHs(32) || PN(4) || N(4).
	ratchetHeaderLen = 2 + 32 + 4 + 4
)

// Session is one side of a pairwise Double Ratchet session. It is not safe
// for concurrent use. Persist it with MarshalBinary after every Encrypt and
// successful Decrypt.
type Session struct {
	rand io.Reader
	ad   []byte

	rk [32]byte
	// dhs is our ratchet private key as read from randomness (X25519
	// clamps it when used), nil until the session is set up.
	dhs    *[32]byte
	dhsPub [32]byte
	dhr    [32]byte
	hasDHr bool
	cks    [32]byte
	hasCKs bool
	ckr    [32]byte
	hasCKr bool
	ns     uint32
	nr     uint32
	pn     uint32

	// step counts receiving DH ratchet steps; it is the clock of skipped-key
	// lifetimes.
	step uint32
	// seq orders skipped keys by insertion, so the oldest go first.
	seq        uint64
	skipped    map[skippedKey]skippedEntry
	prevRemote [][32]byte
}

type skippedKey struct {
	dh [32]byte
	n  uint32
}

type skippedEntry struct {
	mk   [32]byte
	step uint32
	seq  uint64
}

// NewInitiatorSession starts the session of the PQXDH initiator (spec §3.5,
// RatchetInitAlice): the responder's signed prekey is its first ratchet key,
// so the initiator can send at once. rand (crypto/rand when nil) supplies
// ratchet keys for the session's lifetime.
func NewInitiatorSession(rand io.Reader, sharedKey, ad []byte, remote SignedPrekeyPublic) (*Session, error) {
	s, err := newSession(rand, sharedKey, ad)
	if err != nil {
		return nil, err
	}
	if remote.IsZero() {
		return nil, fmt.Errorf("keys.ratchet: %w", ErrInvalidKey)
	}
	if s.dhs, s.dhsPub, err = newRatchetKey(s.rand); err != nil {
		return nil, fmt.Errorf("keys.ratchet: %w", err)
	}
	copy(s.dhr[:], remote.Key().Bytes())
	s.hasDHr = true
	out, err := ratchetDH(s.dhs, s.dhr)
	if err != nil {
		return nil, fmt.Errorf("keys.ratchet: %w", err)
	}
	if s.rk, s.cks, err = rootKDF(s.rk, out); err != nil {
		return nil, err
	}
	s.hasCKs = true
	return s, nil
}

// NewResponderSession starts the responder's session (RatchetInitBob): its
// signed prekey is its first ratchet key pair. It cannot send until it has
// decrypted the initiator's first message.
func NewResponderSession(rand io.Reader, sharedKey, ad []byte, spk SignedPrekeyPrivate) (*Session, error) {
	s, err := newSession(rand, sharedKey, ad)
	if err != nil {
		return nil, err
	}
	if spk.IsZero() {
		return nil, fmt.Errorf("keys.ratchet: %w", ErrInvalidKey)
	}
	priv := [32]byte(spk.p.key.Bytes())
	s.dhs = &priv
	copy(s.dhsPub[:], spk.p.key.PublicKey().Bytes())
	return s, nil
}

func newSession(rand io.Reader, sharedKey, ad []byte) (*Session, error) {
	if len(sharedKey) != SharedKeySize {
		return nil, fmt.Errorf("keys.ratchet: shared key length %d: %w", len(sharedKey), ErrInvalidKey)
	}
	if len(ad) > MaxAssociatedDataLen {
		return nil, fmt.Errorf("keys.ratchet: associated data: %w", ErrTooLarge)
	}
	// SK is the root of every chain key; an all-zero SK is what an unset
	// key looks like, and anyone could compute the chains under it.
	if subtle.ConstantTimeCompare(sharedKey, make([]byte, SharedKeySize)) == 1 {
		return nil, fmt.Errorf("keys.ratchet: all-zero shared key: %w", ErrInvalidKey)
	}
	s := &Session{rand: rand, ad: append([]byte(nil), ad...), skipped: map[skippedKey]skippedEntry{}}
	copy(s.rk[:], sharedKey)
	return s, nil
}

// rootKDF is KDF_RK: the DH output is the HKDF input and the root key the
// salt, so each DH ratchet step mixes fresh DH secrets into the root chain.
func rootKDF(rk [32]byte, dhOut []byte) (newRK, ck [32]byte, err error) {
	out, err := hkdfSHA256(dhOut, rk[:], ratchetRootInfo, 64)
	if err != nil {
		return newRK, ck, fmt.Errorf("keys.ratchet: root kdf: %w", err)
	}
	copy(newRK[:], out[:32])
	copy(ck[:], out[32:])
	return newRK, ck, nil
}

// chainKDF is KDF_CK. Distinct constants for the message key and the next
// chain key make the message key useless for deriving later keys, which is
// what lets a used message key be deleted for forward secrecy.
func chainKDF(ck [32]byte) (mk, next [32]byte) {
	h := hmac.New(sha256.New, ck[:])
	h.Write([]byte{0x01})
	h.Sum(mk[:0])
	h.Reset()
	h.Write([]byte{0x02})
	h.Sum(next[:0])
	return mk, next
}

// messageAEAD expands a message key into the AEAD key and nonce.
func messageAEAD(mk [32]byte, info string) (aead aeadCipher, nonce []byte, err error) {
	okm, err := hkdfSHA256(mk[:], make([]byte, 32), info, chacha20poly1305.KeySize+chacha20poly1305.NonceSize)
	if err != nil {
		return nil, nil, err
	}
	aead, err = chacha20poly1305.New(okm[:chacha20poly1305.KeySize])
	if err != nil {
		return nil, nil, err
	}
	return aead, okm[chacha20poly1305.KeySize:], nil
}

type aeadCipher interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}

// ratchetAD is len(AD) || AD || header.
func ratchetAD(ad, hdr []byte) []byte {
	out := make([]byte, 0, 2+len(ad)+len(hdr))
	out = binary.BigEndian.AppendUint16(out, uint16(len(ad)))
	out = append(out, ad...)
	return append(out, hdr...)
}

// Encrypt encrypts plaintext as the next message of the sending chain. The
// result is header || ciphertext, ready to be sent.
func (s *Session) Encrypt(plaintext []byte) ([]byte, error) {
	if !s.hasCKs {
		return nil, fmt.Errorf("keys.ratchet: encrypt: %w", ErrNoSendingChain)
	}
	if len(plaintext) > MaxMessageLen-ratchetHeaderLen-chacha20poly1305.Overhead {
		return nil, fmt.Errorf("keys.ratchet: encrypt: %w", ErrTooLarge)
	}
	if s.ns == math.MaxUint32 {
		return nil, fmt.Errorf("keys.ratchet: encrypt: sending chain exhausted: %w", ErrTooLarge)
	}
	mk, next := chainKDF(s.cks)
	hdr := make([]byte, 0, ratchetHeaderLen+len(plaintext)+chacha20poly1305.Overhead)
	hdr = append(hdr, encodingVersion, byte(kindRatchetMessage))
	hdr = append(hdr, s.dhsPub[:]...)
	hdr = be32(hdr, s.pn)
	hdr = be32(hdr, s.ns)
	aead, nonce, err := messageAEAD(mk, ratchetMessageInfo)
	if err != nil {
		return nil, fmt.Errorf("keys.ratchet: encrypt: %w", err)
	}
	out := aead.Seal(hdr, nonce, plaintext, ratchetAD(s.ad, hdr))
	// Advance only after everything that can fail has succeeded.
	s.cks = next
	s.ns++
	return out, nil
}

// ratchetHeader is a parsed message header.
type ratchetHeader struct {
	dh    [32]byte
	pn, n uint32
}

func parseRatchetMessage(msg []byte) (h ratchetHeader, hdr, ct []byte, err error) {
	if len(msg) > MaxMessageLen {
		return h, nil, nil, fmt.Errorf("keys.ratchet: %w", ErrTooLarge)
	}
	d := newDecoder("ratchet", msg, kindRatchetMessage)
	h.dh = d.array32()
	h.pn = d.u32()
	h.n = d.u32()
	ct = d.rest()
	if d.err == nil && len(ct) < chacha20poly1305.Overhead {
		d.fail("truncated ciphertext")
	}
	if d.err != nil {
		return h, nil, nil, d.err
	}
	return h, msg[:ratchetHeaderLen], ct, nil
}

// Decrypt authenticates and decrypts a message. On any error the session is
// unchanged, so a forged or corrupted message cannot desynchronise it.
func (s *Session) Decrypt(msg []byte) ([]byte, error) {
	h, hdr, ct, err := parseRatchetMessage(msg)
	if err != nil {
		return nil, err
	}
	if s.dhs == nil {
		return nil, fmt.Errorf("keys.ratchet: uninitialised session: %w", ErrInvalidKey)
	}
	// A key skipped earlier: use it once, then delete it.
	if e, ok := s.skipped[skippedKey{h.dh, h.n}]; ok {
		pt, err := openMessage(e.mk, s.ad, hdr, ct)
		if err != nil {
			return nil, err
		}
		delete(s.skipped, skippedKey{h.dh, h.n})
		return pt, nil
	}
	st := s.begin()
	if !s.hasDHr || h.dh != s.dhr {
		if s.isPrevRemote(h.dh) {
			return nil, fmt.Errorf("keys.ratchet: message from an old chain: %w", ErrReplay)
		}
		// A new ratchet key: store the keys the peer sent on its previous
		// chain that we have not seen, then step the DH ratchet.
		st.skipPrevious(h.pn)
		if err := st.dhRatchet(h.dh, s.rand); err != nil {
			return nil, err
		}
	} else if h.n < s.nr {
		return nil, fmt.Errorf("keys.ratchet: message %d already received: %w", h.n, ErrReplay)
	}
	if err := st.skipTo(h.n); err != nil {
		return nil, err
	}
	if !st.hasCKr {
		// The spec's CKr = None. Until the responder's first reply the
		// initiator's remote ratchet key is the responder's signed prekey,
		// and no receiving chain belongs to it: a message under that key
		// was not made by anyone holding a secret of this session (its
		// chain key would be derived from nothing), so it fails here.
		return nil, fmt.Errorf("keys.ratchet: no receiving chain for this ratchet key: %w", ErrDecrypt)
	}
	mk, next := chainKDF(st.ckr)
	pt, err := openMessage(mk, s.ad, hdr, ct)
	if err != nil {
		return nil, err
	}
	st.ckr = next
	st.nr++
	s.commit(st)
	return pt, nil
}

func openMessage(mk [32]byte, ad, hdr, ct []byte) ([]byte, error) {
	aead, nonce, err := messageAEAD(mk, ratchetMessageInfo)
	if err != nil {
		return nil, fmt.Errorf("keys.ratchet: decrypt: %w", err)
	}
	pt, err := aead.Open(nil, nonce, ct, ratchetAD(ad, hdr))
	if err != nil {
		return nil, fmt.Errorf("keys.ratchet: decrypt: %w", ErrDecrypt)
	}
	return pt, nil
}

func (s *Session) isPrevRemote(dh [32]byte) bool {
	for _, k := range s.prevRemote {
		if k == dh {
			return true
		}
	}
	return false
}

// ratchetStage holds tentative changes of one Decrypt. Nothing in Session is
// modified until the message has authenticated; then commit applies it.
type ratchetStage struct {
	rk, cks, ckr   [32]byte
	hasCKs, hasCKr bool
	dhs            *[32]byte
	dhsPub         [32]byte
	dhr            [32]byte
	hasDHr         bool
	ns, nr, pn     uint32
	step           uint32
	skipped        []stagedSkip
	oldDHr         [32]byte
	retireDHr      bool
}

type stagedSkip struct {
	key  skippedKey
	mk   [32]byte
	step uint32
}

func (s *Session) begin() *ratchetStage {
	return &ratchetStage{
		rk: s.rk, cks: s.cks, ckr: s.ckr, hasCKs: s.hasCKs, hasCKr: s.hasCKr,
		dhs: s.dhs, dhsPub: s.dhsPub, dhr: s.dhr, hasDHr: s.hasDHr,
		ns: s.ns, nr: s.nr, pn: s.pn, step: s.step,
	}
}

// skipTo derives and stages the message keys of the receiving chain up to
// (not including) until. MaxSkip bounds the work a single message can cause.
func (st *ratchetStage) skipTo(until uint32) error {
	if !st.hasCKr || until <= st.nr {
		return nil
	}
	if until-st.nr > MaxSkip {
		return fmt.Errorf("keys.ratchet: message skips %d keys: %w", until-st.nr, ErrTooManySkipped)
	}
	for st.nr < until {
		mk, next := chainKDF(st.ckr)
		st.skipped = append(st.skipped, stagedSkip{key: skippedKey{st.dhr, st.nr}, mk: mk, step: st.step})
		st.ckr = next
		st.nr++
	}
	return nil
}

// skipPrevious stores the unseen keys of the receiving chain that a new
// ratchet key closes. Unlike skipTo it never fails: if PN is more than
// MaxSkip ahead, the rest of the old chain is abandoned (those messages count
// as lost) without deriving anything. Rejecting instead, as the spec does,
// would break the session for good after a burst of lost messages, because
// every later message of the peer carries the same PN.
func (st *ratchetStage) skipPrevious(pn uint32) {
	if pn > st.nr && pn-st.nr > MaxSkip {
		return
	}
	_ = st.skipTo(pn)
}

// dhRatchet is the spec's DHRatchet: derive the receiving chain from the
// peer's new key, then a fresh key pair of ours and the sending chain. The
// fresh key pair is what heals the session after a compromise.
func (st *ratchetStage) dhRatchet(remote [32]byte, rand io.Reader) error {
	st.oldDHr, st.retireDHr = st.dhr, st.hasDHr
	st.pn, st.ns, st.nr = st.ns, 0, 0
	st.dhr, st.hasDHr = remote, true
	out, err := ratchetDH(st.dhs, remote)
	if err != nil {
		return fmt.Errorf("keys.ratchet: %w", err)
	}
	if st.rk, st.ckr, err = rootKDF(st.rk, out); err != nil {
		return err
	}
	if st.dhs, st.dhsPub, err = newRatchetKey(rand); err != nil {
		return fmt.Errorf("keys.ratchet: %w", err)
	}
	if out, err = ratchetDH(st.dhs, remote); err != nil {
		return fmt.Errorf("keys.ratchet: %w", err)
	}
	if st.rk, st.cks, err = rootKDF(st.rk, out); err != nil {
		return err
	}
	st.hasCKr, st.hasCKs = true, true
	st.step++
	return nil
}

func (s *Session) commit(st *ratchetStage) {
	s.rk, s.cks, s.ckr, s.hasCKs, s.hasCKr = st.rk, st.cks, st.ckr, st.hasCKs, st.hasCKr
	s.dhs, s.dhsPub, s.dhr, s.hasDHr = st.dhs, st.dhsPub, st.dhr, st.hasDHr
	s.ns, s.nr, s.pn = st.ns, st.nr, st.pn
	if s.skipped == nil {
		s.skipped = map[skippedKey]skippedEntry{}
	}
	for _, k := range st.skipped {
		s.skipped[k.key] = skippedEntry{mk: k.mk, step: k.step, seq: s.seq}
		s.seq++
	}
	if st.retireDHr {
		s.prevRemote = append(s.prevRemote, st.oldDHr)
		if len(s.prevRemote) > MaxSkippedSteps {
			s.prevRemote = s.prevRemote[len(s.prevRemote)-MaxSkippedSteps:]
		}
	}
	if st.step != s.step {
		s.step = st.step
		s.expireSkipped()
	}
	s.evictSkipped()
}

// expireSkipped deletes skipped keys older than MaxSkippedSteps ratchet
// steps: a message that late is treated as lost, and its key stops being a
// liability on disk.
func (s *Session) expireSkipped() {
	for k, e := range s.skipped {
		if s.step-e.step > MaxSkippedSteps {
			delete(s.skipped, k)
		}
	}
}

// evictSkipped enforces MaxSkippedKeys by dropping the oldest keys first.
func (s *Session) evictSkipped() {
	over := len(s.skipped) - MaxSkippedKeys
	if over <= 0 {
		return
	}
	for _, k := range s.sortedSkipped()[:over] {
		delete(s.skipped, k)
	}
}

// sortedSkipped returns the skipped keys, oldest first.
func (s *Session) sortedSkipped() []skippedKey {
	ks := make([]skippedKey, 0, len(s.skipped))
	for k := range s.skipped {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b skippedKey) int {
		ea, eb := s.skipped[a].seq, s.skipped[b].seq
		switch {
		case ea < eb:
			return -1
		case ea > eb:
			return 1
		}
		return 0
	})
	return ks
}

// HasReceivingChain reports whether the session has a receiving chain,
// that is whether it has decrypted a message of the peer's. An initiator
// has none until the responder's first reply has decrypted; until then the
// peer may not have the session yet, so the caller keeps sending the PQXDH
// initial message with every message.
func (s *Session) HasReceivingChain() bool { return s.hasCKr }

// SkippedKeys reports how many skipped message keys the session holds.
func (s *Session) SkippedKeys() int { return len(s.skipped) }

// AssociatedData returns the session's associated data (from PQXDH).
func (s *Session) AssociatedData() []byte { return append([]byte(nil), s.ad...) }
