package keys

// Attack tests for the Double Ratchet.
//
// The adversary is whoever can put a message in a device's mailbox: the
// server's operator, a database writer, a bus publisher. They hold every
// public value — the published prekey bundles (identity keys, signed
// prekey, one-time prekeys), the PQXDH initial message (ephemeral key,
// ML-KEM ciphertext) and the header of every ratchet message (ratchet
// public keys and counters) — and keys of their own, but no private key of
// either party and not the PQXDH shared key. Nothing they build from that
// may ever decrypt, in any state of a session, and a refused message must
// leave the session exactly as it was.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// forgeRatchetMessage builds a ratchet message the way the adversary does:
// from the wire format in ratchet.go and the standard library, under a
// chain key of their choosing. It is message n of the chain that starts at
// ck, claiming ratchet key dh and previous-chain length pn; ad is the
// session's associated data, Encode(IKA) || Encode(IKB), public too.
func forgeRatchetMessage(ad []byte, dh [32]byte, pn, n uint32, ck [32]byte, pt []byte) []byte {
	var mk [32]byte
	for i := uint32(0); ; i++ {
		m := hmac.New(sha256.New, ck[:])
		m.Write([]byte{0x01})
		m.Sum(mk[:0])
		if i == n {
			break
		}
		m = hmac.New(sha256.New, ck[:])
		m.Write([]byte{0x02})
		m.Sum(ck[:0])
	}
	okm, err := hkdf.Key(sha256.New, mk[:], make([]byte, 32), "kanal ratchet message v1", 44)
	if err != nil {
		panic(err)
	}
	aead, err := chacha20poly1305.New(okm[:32])
	if err != nil {
		panic(err)
	}
	hdr := []byte{1, 0x12} // version, kind "ratchet message"
	hdr = append(hdr, dh[:]...)
	hdr = binary.BigEndian.AppendUint32(hdr, pn)
	hdr = binary.BigEndian.AppendUint32(hdr, n)
	aad := binary.BigEndian.AppendUint16(nil, uint16(len(ad)))
	aad = append(append(aad, ad...), hdr...)
	return aead.Seal(hdr, okm[32:], pt, aad)
}

// pub32 is the raw X25519 public key, as a header carries it.
func pub32(k *ecdh.PublicKey) (out [32]byte) {
	copy(out[:], k.Bytes())
	return out
}

// publicAD is Encode(IKA) || Encode(IKB), built from the published
// identity keys.
func publicAD(t testing.TB, a, b IdentityPublic) []byte {
	t.Helper()
	ea, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	eb, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return append(ea, eb...)
}

// TestAttackForgedBeforeFirstReply: Alice has started a session from Bob's
// published bundle and sent her first message; Bob has not answered. The
// adversary writes a message "from Bob" whose header carries Bob's signed
// prekey (Alice's current remote ratchet key) as its ratchet key, under
// the chain key a missing receiving chain would be: all zeros. It must not
// decrypt, and Alice's session must not change.
func TestAttackForgedBeforeFirstReply(t *testing.T) {
	a := newParty(t, nil, "alice-phone")
	b := newParty(t, nil, "bob-laptop")
	bundle := b.bundle(t, true) // what the directory hands anyone
	init, err := InitiatePQXDH(nil, a.id, bundle)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := NewInitiatorSession(nil, init.SharedKey, init.AssociatedData, init.RemoteRatchetKey)
	if err != nil {
		t.Fatal(err)
	}
	first := mustEncrypt(t, alice, "Guten Tag")
	before, _ := alice.MarshalBinary()

	ad := publicAD(t, a.id.Public(), bundle.Identity)
	spk := pub32(bundle.SignedPrekey.Key())
	for _, n := range []uint32{0, 1, 7} {
		forged := forgeRatchetMessage(ad, spk, 0, n, [32]byte{}, []byte("Ich bin Bob. Überweise 500 € an DE00 1234."))
		pt, err := alice.Decrypt(forged)
		if err == nil {
			t.Fatalf("forged message %d under Bob's signed prekey decrypted: %q", n, pt)
		}
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("forged message %d: %v, want ErrDecrypt", n, err)
		}
		if after, _ := alice.MarshalBinary(); !bytes.Equal(before, after) {
			t.Fatalf("forged message %d changed the session", n)
		}
	}

	// The session is unharmed: Bob reads Alice's first message and his
	// answer reaches her.
	sk, bad, err := RespondPQXDH(b.responderKeys(true), &init.Message)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewResponderSession(nil, sk, bad, b.spk)
	if err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, bob, first, "Guten Tag")
	// Control: the forger is right about the format. With Bob's real
	// sending chain key — the secret the adversary lacks — the same
	// construction is Bob's real answer, and Alice reads it.
	mustDecrypt(t, alice, forgeRatchetMessage(ad, bob.dhsPub, 0, 0, bob.cks, []byte("Hallo Alice")), "Hallo Alice")
	mustDecrypt(t, bob, mustEncrypt(t, alice, "Gut."), "Gut.")
}

// sessionState is one named state of a session pair, with everything
// public about it so far.
type sessionState struct {
	name string
	ad   []byte
	// victims are the sessions to attack in this state, restored from
	// their serialization as a client's store would hold them.
	victims map[string]*Session
}

// publicStates drives a session pair through the states the property
// covers, recording the public values an observer of the mailbox learns.
func publicStates(t *testing.T) (states []*sessionState, public [][32]byte) {
	t.Helper()
	a := newParty(t, nil, "alice-phone")
	b := newParty(t, nil, "bob-laptop")
	bundle := b.bundle(t, true)
	init, err := InitiatePQXDH(nil, a.id, bundle)
	if err != nil {
		t.Fatal(err)
	}
	public = [][32]byte{
		pub32(a.id.Public().AgreementKey()), pub32(b.id.Public().AgreementKey()),
		pub32(bundle.SignedPrekey.Key()), pub32(bundle.OneTimePrekey.Key()),
		pub32(init.Message.Ephemeral), pub32(a.spk.Public().Key()),
	}
	alice, err := NewInitiatorSession(nil, init.SharedKey, init.AssociatedData, init.RemoteRatchetKey)
	if err != nil {
		t.Fatal(err)
	}
	sk, ad, err := RespondPQXDH(b.responderKeys(true), &init.Message)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewResponderSession(nil, sk, ad, b.spk)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[32]byte]bool{}
	observe := func(msg []byte) []byte {
		h, _, _, err := parseRatchetMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !seen[h.dh] {
			seen[h.dh] = true
			public = append(public, h.dh)
		}
		return msg
	}
	snap := func(name string, victims ...string) {
		st := &sessionState{name: name, ad: ad, victims: map[string]*Session{}}
		for _, v := range victims {
			switch v {
			case "alice":
				st.victims[v] = cloneSession(t, alice)
			case "bob":
				st.victims[v] = cloneSession(t, bob)
			}
		}
		states = append(states, st)
	}

	snap("initiator fresh, responder fresh", "alice", "bob")
	m0 := observe(mustEncrypt(t, alice, "m0"))
	observe(mustEncrypt(t, alice, "m1"))
	m2 := observe(mustEncrypt(t, alice, "m2"))
	snap("initiator before a reply, after sending", "alice")
	mustDecrypt(t, bob, m2, "m2") // m0 and m1 become skipped keys
	snap("responder after skipped messages", "bob")
	mustDecrypt(t, bob, m0, "m0") // m1 stays skipped
	snap("responder", "bob")
	r0 := observe(mustEncrypt(t, bob, "r0"))
	snap("responder after answering", "bob")
	mustDecrypt(t, alice, r0, "r0")
	snap("initiator after a reply", "alice")
	a1 := observe(mustEncrypt(t, alice, "a1"))
	mustDecrypt(t, bob, a1, "a1")
	for i := range 3 {
		mustDecrypt(t, alice, observe(mustEncrypt(t, bob, fmt.Sprint("b", i))), fmt.Sprint("b", i))
		mustDecrypt(t, bob, observe(mustEncrypt(t, alice, fmt.Sprint("a", i))), fmt.Sprint("a", i))
	}
	snap("after DH ratchet steps", "alice", "bob")
	observe(mustEncrypt(t, bob, "lost 1"))
	mustDecrypt(t, alice, observe(mustEncrypt(t, bob, "late")), "late")
	snap("initiator after skipped messages and a ratchet step", "alice")
	return states, public
}

// guessableChainKeys are the chain keys an adversary can compute without
// a secret: zero, the public keys themselves and their hashes, and the
// chains a DH ratchet step would derive from a guessable root key (zero,
// or a public value) and a DH the adversary can compute with a key pair of
// its own against each public key.
func guessableChainKeys(t *testing.T, public [][32]byte, own *ecdh.PrivateKey) [][32]byte {
	t.Helper()
	var zero [32]byte
	cks := [][32]byte{zero}
	rks := [][32]byte{zero}
	for _, p := range public {
		cks = append(cks, p, sha256.Sum256(p[:]))
		rks = append(rks, p)
	}
	for _, p := range public {
		pk, err := parseX25519Public(p[:])
		if err != nil {
			continue
		}
		dh, err := x25519(own, pk)
		if err != nil {
			continue
		}
		for _, rk := range rks[:2] {
			_, ck, err := rootKDF(rk, dh)
			if err != nil {
				t.Fatal(err)
			}
			cks = append(cks, ck)
		}
	}
	return cks
}

// TestPropertyNoForgeryFromPublicValues: in every state of a session —
// initiator and responder, before and after the first reply, with skipped
// keys stored, after DH ratchet steps, and restored from storage — no
// message built from public values alone decrypts, and none changes the
// session.
func TestPropertyNoForgeryFromPublicValues(t *testing.T) {
	states, public := publicStates(t)
	own, err := newX25519(nil)
	if err != nil {
		t.Fatal(err)
	}
	ratchetKeys := append(append([][32]byte{}, public...),
		[32]byte{},             // the zero key
		[32]byte{1},            // a low-order point
		pub32(own.PublicKey()), // the adversary's own ratchet key
	)
	cks := guessableChainKeys(t, public, own)
	pt := []byte(`{"v":1,"msg":"forged"}`)
	tried := 0
	for _, st := range states {
		for who, victim := range st.victims {
			before, err := victim.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			for _, dh := range ratchetKeys {
				for _, ck := range cks {
					for _, c := range []struct{ pn, n uint32 }{{0, 0}, {0, 2}, {3, 1}} {
						forged := forgeRatchetMessage(st.ad, dh, c.pn, c.n, ck, pt)
						tried++
						if got, err := victim.Decrypt(forged); err == nil {
							t.Fatalf("%s, %s: message with ratchet key %x, chain key %x, pn %d, n %d decrypted: %q",
								st.name, who, dh[:4], ck[:4], c.pn, c.n, got)
						}
						if after, _ := victim.MarshalBinary(); !bytes.Equal(before, after) {
							t.Fatalf("%s, %s: a refused forgery changed the session", st.name, who)
						}
					}
				}
			}
		}
	}
	t.Logf("%d forgeries over %d states refused", tried, len(states))
}

// TestAttackZeroSharedKey: a session whose root is the all-zero key (what
// an unset shared key looks like) would have chains anyone can compute; it
// is refused before it exists.
func TestAttackZeroSharedKey(t *testing.T) {
	b := newParty(t, nil, "bob-laptop")
	zero := make([]byte, SharedKeySize)
	if _, err := NewInitiatorSession(nil, zero, nil, b.spk.Public()); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("initiator session from a zero shared key: %v, want ErrInvalidKey", err)
	}
	if _, err := NewResponderSession(nil, zero, nil, b.spk); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("responder session from a zero shared key: %v, want ErrInvalidKey", err)
	}
}

// TestHasReceivingChain: the initiator has a receiving chain only once it
// has decrypted the responder's reply; a refused forgery does not give it
// one.
func TestHasReceivingChain(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	if alice.HasReceivingChain() || bob.HasReceivingChain() {
		t.Fatal("fresh sessions claim a receiving chain")
	}
	m := mustEncrypt(t, alice, "m")
	alice.Decrypt(forgeRatchetMessage(alice.ad, alice.dhr, 0, 0, [32]byte{}, []byte("forged")))
	if alice.HasReceivingChain() {
		t.Fatal("a refused forgery gave the initiator a receiving chain")
	}
	mustDecrypt(t, bob, m, "m")
	if !bob.HasReceivingChain() {
		t.Fatal("responder after the first message has no receiving chain")
	}
	mustDecrypt(t, alice, mustEncrypt(t, bob, "r"), "r")
	if !alice.HasReceivingChain() {
		t.Fatal("initiator after the reply has no receiving chain")
	}
}

// TestAttackForgedInitialMessage: instead of a ratchet message the
// adversary sends Alice a new PQXDH initial message "from Bob", built from
// Bob's published identity and Alice's published bundle: an ephemeral key
// of its own, an ML-KEM ciphertext it encapsulated itself (so it knows SS),
// and the DH outputs it can compute (DH2, DH3, DH4). DH1 = DH(IKB, SPKA)
// needs Bob's identity key; the adversary guesses it (zero, or a DH it can
// compute). The first ratchet message it builds on that guess must not
// decrypt in the session Alice starts as the responder.
func TestAttackForgedInitialMessage(t *testing.T) {
	a := newParty(t, nil, "alice-phone")
	b := newParty(t, nil, "bob-laptop")
	aliceBundle := a.bundle(t, true)
	ikB := b.id.Public()

	e, err := newX25519(nil)
	if err != nil {
		t.Fatal(err)
	}
	dh := func(pub *ecdh.PublicKey) []byte {
		out, err := e.ECDH(pub)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ss, ct := aliceBundle.PQPrekey.Key().Encapsulate()
	msg := InitialMessage{Identity: ikB, Ephemeral: e.PublicKey(), SignedPrekeyID: aliceBundle.SignedPrekey.ID(),
		PQPrekeyID: aliceBundle.PQPrekey.ID(), HasOneTimePrekey: true, OneTimePrekeyID: aliceBundle.OneTimePrekey.ID(), KEMCiphertext: ct}
	dh2 := dh(aliceBundle.Identity.AgreementKey()) // DH(EK, IKA) = DH(IKA, EK)
	dh3 := dh(aliceBundle.SignedPrekey.Key())
	dh4 := dh(aliceBundle.OneTimePrekey.Key())
	ad := publicAD(t, ikB, aliceBundle.Identity)
	ratchet, err := newX25519(nil)
	if err != nil {
		t.Fatal(err)
	}
	ratchetDH, err := ratchet.ECDH(aliceBundle.SignedPrekey.Key())
	if err != nil {
		t.Fatal(err)
	}

	realDH1, err := b.id.dh.ECDH(aliceBundle.SignedPrekey.Key())
	if err != nil {
		t.Fatal(err)
	}
	// The last "guess" is the real DH1, which needs Bob's identity key: a
	// control that the construction is right, so the refusals before it
	// come from the missing secret alone.
	guesses := [][]byte{make([]byte, 32), dh2, dh3, dh(ikB.AgreementKey()), realDH1}
	for i, dh1 := range guesses {
		ikm := bytes.Repeat([]byte{0xFF}, 32)
		for _, part := range [][]byte{dh1, dh2, dh3, dh4, ss} {
			ikm = append(ikm, part...)
		}
		guessSK, err := hkdf.Key(sha256.New, ikm, make([]byte, 32), "kanal PQXDH X25519 SHA-256 ML-KEM-768 v1", 32)
		if err != nil {
			t.Fatal(err)
		}
		// KDF_RK(SK, DH(SPKA, ratchet key)): the chain Alice would receive on.
		okm, err := hkdf.Key(sha256.New, ratchetDH, guessSK, "kanal ratchet root v1", 64)
		if err != nil {
			t.Fatal(err)
		}
		var ck [32]byte
		copy(ck[:], okm[32:])
		forged := forgeRatchetMessage(ad, pub32(ratchet.PublicKey()), 0, 0, ck, []byte("Hier ist Bob."))

		// Alice runs PQXDH as the responder and decrypts the first message,
		// as the SDK does.
		sk, rad, err := RespondPQXDH(a.responderKeys(true), &msg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewResponderSession(nil, sk, rad, a.spk)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := s.Decrypt(forged)
		if i == len(guesses)-1 {
			if err != nil || string(pt) != "Hier ist Bob." {
				t.Fatalf("control with Bob's identity key: %q %v", pt, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("guess %d: forged initial message opened a session: %q", i, pt)
		} else if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("guess %d: %v, want ErrDecrypt", i, err)
		}
	}
}
