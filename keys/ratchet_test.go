package keys

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

func TestRatchetRoundTrip(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	if _, err := bob.Encrypt([]byte("too early")); !errors.Is(err, ErrNoSendingChain) {
		t.Fatalf("responder encrypt before receiving: %v, want ErrNoSendingChain", err)
	}
	for i := range 5 {
		mustDecrypt(t, bob, mustEncrypt(t, alice, fmt.Sprint("a", i)), fmt.Sprint("a", i))
		mustDecrypt(t, alice, mustEncrypt(t, bob, fmt.Sprint("b", i)), fmt.Sprint("b", i))
	}
	if !bytes.Equal(alice.AssociatedData(), bob.AssociatedData()) {
		t.Fatal("associated data differs")
	}
}

func TestRatchetReplayRejected(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	m0 := mustEncrypt(t, alice, "m0")
	m1 := mustEncrypt(t, alice, "m1")
	mustDecrypt(t, bob, m1, "m1") // m0 becomes a skipped key
	mustDecrypt(t, bob, m0, "m0")
	for _, m := range [][]byte{m0, m1} {
		if _, err := bob.Decrypt(m); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay: %v, want ErrReplay", err)
		}
	}
	// After Bob replies and Alice answers on a new chain, the old chain's
	// messages are still recognised as replays.
	mustDecrypt(t, alice, mustEncrypt(t, bob, "r"), "r")
	mustDecrypt(t, bob, mustEncrypt(t, alice, "n"), "n")
	if _, err := bob.Decrypt(m1); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay from old chain: %v, want ErrReplay", err)
	}
}

func TestRatchetTooManySkipped(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	mustDecrypt(t, bob, mustEncrypt(t, alice, "first"), "first")
	for range MaxSkip + 1 {
		mustEncrypt(t, alice, "lost")
	}
	far := mustEncrypt(t, alice, "far")
	before, _ := bob.MarshalBinary()
	if _, err := bob.Decrypt(far); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("skip %d: %v, want ErrTooManySkipped", MaxSkip+1, err)
	}
	after, _ := bob.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("rejected message changed the session state")
	}
	// The session still works in both directions.
	mustDecrypt(t, alice, mustEncrypt(t, bob, "still here"), "still here")
	mustDecrypt(t, bob, mustEncrypt(t, alice, "and again"), "and again")
}

func TestRatchetSkipExactlyMaxSkip(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	var msgs [][]byte
	for i := range MaxSkip + 1 {
		msgs = append(msgs, mustEncrypt(t, alice, fmt.Sprint(i)))
	}
	mustDecrypt(t, bob, msgs[MaxSkip], fmt.Sprint(MaxSkip))
	if bob.SkippedKeys() != MaxSkip {
		t.Fatalf("skipped keys = %d, want %d", bob.SkippedKeys(), MaxSkip)
	}
	mustDecrypt(t, bob, msgs[0], "0")
}

// TestRatchetReorderLoss sends 10,000 messages in both directions with random
// reordering and loss within the skip bound; every delivered message must
// decrypt exactly once and redelivery must fail.
func TestRatchetReorderLoss(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	rng := mrand.New(mrand.NewPCG(1, 2)) // schedule only, never key material
	type inflight struct {
		to  *Session
		ct  []byte
		txt string
	}
	var queue []inflight
	delivered := map[string]bool{}
	sent := 0
	deliver := func(m inflight) {
		pt, err := m.to.Decrypt(m.ct)
		if err != nil {
			t.Fatalf("message %q: %v", m.txt, err)
		}
		if string(pt) != m.txt || delivered[m.txt] {
			t.Fatalf("got %q for %q (delivered before: %v)", pt, m.txt, delivered[m.txt])
		}
		delivered[m.txt] = true
		if _, err := m.to.Decrypt(m.ct); err == nil {
			t.Fatalf("message %q decrypted twice", m.txt)
		}
	}
	// Bob cannot send before he has heard from Alice.
	first := mustEncrypt(t, alice, "hello")
	mustDecrypt(t, bob, first, "hello")
	for sent < 10000 {
		// Bursts in one direction, then switch: each switch is a DH ratchet.
		from, to, name := alice, bob, "a"
		if rng.IntN(2) == 0 {
			from, to, name = bob, alice, "b"
		}
		for range 1 + rng.IntN(20) {
			txt := fmt.Sprintf("%s%d", name, sent)
			sent++
			m := inflight{to: to, ct: mustEncrypt(t, from, txt), txt: txt}
			if rng.IntN(20) == 0 {
				continue // lost
			}
			queue = append(queue, m)
		}
		// Deliver a random subset of the queue in random order; the rest
		// stays in flight for a while.
		rng.Shuffle(len(queue), func(i, j int) { queue[i], queue[j] = queue[j], queue[i] })
		keep := rng.IntN(len(queue) + 1)
		if len(queue) > 40 {
			keep = 10
		}
		for _, m := range queue[keep:] {
			deliver(m)
		}
		queue = queue[:keep]
	}
	for _, m := range queue {
		deliver(m)
	}
	if len(delivered) < 9000 {
		t.Fatalf("only %d messages delivered", len(delivered))
	}
	if alice.SkippedKeys()+bob.SkippedKeys() > 2*MaxSkippedKeys {
		t.Fatal("skipped keys above the cap")
	}
}

// TestRatchetBitFlips flips every bit of a few messages (header and
// ciphertext) and checks each flip is rejected without changing the state.
func TestRatchetBitFlips(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	mustDecrypt(t, bob, mustEncrypt(t, alice, "warm up"), "warm up")
	msgs := [][]byte{
		mustEncrypt(t, alice, "short"),
		mustEncrypt(t, alice, string(bytes.Repeat([]byte("x"), 100))),
	}
	before, _ := bob.MarshalBinary()
	for mi, m := range msgs {
		for bit := range len(m) * 8 {
			c := bytes.Clone(m)
			c[bit/8] ^= 1 << (bit % 8)
			if pt, err := bob.Decrypt(c); err == nil {
				t.Fatalf("message %d bit %d flipped: decrypted to %q", mi, bit, pt)
			}
		}
	}
	after, _ := bob.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("rejected messages changed the session state")
	}
	mustDecrypt(t, bob, msgs[1], string(bytes.Repeat([]byte("x"), 100)))
	mustDecrypt(t, bob, msgs[0], "short")
}

// TestRatchetForwardSecrecy: once a message is decrypted, a copy of the later
// state (as an attacker stealing the device would get) cannot decrypt it.
func TestRatchetForwardSecrecy(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	m0 := mustEncrypt(t, alice, "m0")
	m1 := mustEncrypt(t, alice, "m1")
	m2 := mustEncrypt(t, alice, "m2")
	mustDecrypt(t, bob, m0, "m0")
	mustDecrypt(t, bob, m2, "m2") // m1 stays a skipped key, on purpose
	stolen := cloneSession(t, bob)
	for _, m := range [][]byte{m0, m2} {
		if _, err := stolen.Decrypt(m); err == nil {
			t.Fatal("stolen later state decrypted an already-read message")
		}
	}
	// Only the not-yet-received message is readable, and once Bob reads it
	// the key is gone from his state too.
	mustDecrypt(t, bob, m1, "m1")
	stolen = cloneSession(t, bob)
	if _, err := stolen.Decrypt(m1); !errors.Is(err, ErrReplay) {
		t.Fatalf("stolen state after reading m1: %v, want ErrReplay", err)
	}
}

// TestRatchetPostCompromise: after a DH ratchet round trip with fresh keys,
// a copy of the old state cannot decrypt new messages.
func TestRatchetPostCompromise(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	mustDecrypt(t, bob, mustEncrypt(t, alice, "hello"), "hello")
	stolenBob := cloneSession(t, bob)
	stolenAlice := cloneSession(t, alice)

	m := mustEncrypt(t, alice, "before healing")
	// The stolen copy can read the current chain: the compromise is real.
	mustDecrypt(t, cloneSession(t, stolenBob), m, "before healing")
	mustDecrypt(t, bob, m, "before healing")

	// Bob replies, Alice answers with a fresh ratchet key; Bob receives it
	// and generates a fresh ratchet key of his own, unknown to the thief.
	mustDecrypt(t, alice, mustEncrypt(t, bob, "reply"), "reply")
	mustDecrypt(t, bob, mustEncrypt(t, alice, "answer"), "answer")
	reply2 := mustEncrypt(t, bob, "bob after healing")
	if _, err := stolenAlice.Decrypt(reply2); err == nil {
		t.Fatal("old copy of Alice decrypted a message after the DH ratchet")
	}
	mustDecrypt(t, alice, reply2, "bob after healing")
	fresh := mustEncrypt(t, alice, "after healing")
	if _, err := stolenBob.Decrypt(fresh); err == nil {
		t.Fatal("old copy of Bob decrypted a message after the DH ratchet")
	}
	mustDecrypt(t, bob, fresh, "after healing")
}

func TestRatchetSkippedKeyLifetime(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	lost := mustEncrypt(t, alice, "delayed")
	mustDecrypt(t, bob, mustEncrypt(t, alice, "next"), "next")
	if bob.SkippedKeys() != 1 {
		t.Fatalf("skipped = %d, want 1", bob.SkippedKeys())
	}
	for i := range MaxSkippedSteps + 1 {
		mustDecrypt(t, alice, mustEncrypt(t, bob, fmt.Sprint("b", i)), fmt.Sprint("b", i))
		mustDecrypt(t, bob, mustEncrypt(t, alice, fmt.Sprint("a", i)), fmt.Sprint("a", i))
	}
	if bob.SkippedKeys() != 0 {
		t.Fatalf("skipped = %d after %d steps, want 0", bob.SkippedKeys(), MaxSkippedSteps+1)
	}
	if _, err := bob.Decrypt(lost); err == nil {
		t.Fatal("expired skipped message still decrypts")
	}
}

func TestRatchetSkippedKeyCap(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	var firsts [][]byte
	// Three chains each skipping MaxSkip-1 keys: more than MaxSkippedKeys.
	for c := range 3 {
		firsts = append(firsts, mustEncrypt(t, alice, fmt.Sprint("first", c)))
		for range MaxSkip - 2 {
			mustEncrypt(t, alice, "lost")
		}
		mustDecrypt(t, bob, mustEncrypt(t, alice, "last"), "last")
		mustDecrypt(t, alice, mustEncrypt(t, bob, "turn"), "turn")
	}
	if n := bob.SkippedKeys(); n > MaxSkippedKeys {
		t.Fatalf("skipped = %d, cap %d", n, MaxSkippedKeys)
	}
	// The oldest chain's keys were evicted first; the newest still work.
	if _, err := bob.Decrypt(firsts[0]); err == nil {
		t.Fatal("evicted key still decrypts")
	}
	mustDecrypt(t, bob, firsts[2], "first2")
}

func TestSessionSerializationRoundTrip(t *testing.T) {
	alice, bob := newSessionPair(t, nil)
	mustEncrypt(t, alice, "skipped")
	mustDecrypt(t, bob, mustEncrypt(t, alice, "x"), "x")
	b1, err := bob.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var restored Session
	if err := restored.UnmarshalBinary(b1); err != nil {
		t.Fatal(err)
	}
	b2, _ := restored.MarshalBinary()
	if !bytes.Equal(b1, b2) {
		t.Fatal("serialization is not canonical")
	}
	mustDecrypt(t, alice, mustEncrypt(t, &restored, "from restored"), "from restored")
	for _, bad := range [][]byte{nil, b1[:len(b1)-1], append(bytes.Clone(b1), 0), append([]byte{2}, b1[1:]...)} {
		if err := new(Session).UnmarshalBinary(bad); !errors.Is(err, ErrInvalidEncoding) {
			t.Fatalf("bad state accepted or wrong error: %v", err)
		}
	}
}
