package keys

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
)

func newSenderPair(t testing.TB) (*SenderKey, *SenderKeyReceiver) {
	t.Helper()
	sk, err := NewSenderKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The distribution travels as bytes over a pairwise session.
	wire, err := sk.Distribution().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var dist SenderKeyDistribution
	if err := dist.UnmarshalBinary(wire); err != nil {
		t.Fatal(err)
	}
	r, err := NewSenderKeyReceiver(&dist)
	if err != nil {
		t.Fatal(err)
	}
	return sk, r
}

var groupAD = []byte("conversation 42 epoch 1")

func TestSenderKeyRoundTripOutOfOrder(t *testing.T) {
	sk, r := newSenderPair(t)
	var msgs [][]byte
	for i := range 10 {
		m, err := sk.Encrypt([]byte(fmt.Sprint("m", i)), groupAD)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	for _, i := range []int{3, 0, 9, 1, 2, 8, 4, 5, 7, 6} {
		pt, err := r.Decrypt(msgs[i], groupAD)
		if err != nil || string(pt) != fmt.Sprint("m", i) {
			t.Fatalf("message %d: %q, %v", i, pt, err)
		}
		if _, err := r.Decrypt(msgs[i], groupAD); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of %d: %v, want ErrReplay", i, err)
		}
	}
	if id, err := SenderKeyMessageKeyID(msgs[0]); err != nil || id != sk.KeyID() {
		t.Fatalf("key id = %d, %v", id, err)
	}
}

func TestSenderKeyTamper(t *testing.T) {
	sk, r := newSenderPair(t)
	m, _ := sk.Encrypt([]byte("pay 10 EUR"), groupAD)
	before, _ := r.MarshalBinary()
	for bit := range len(m) * 8 {
		c := bytes.Clone(m)
		c[bit/8] ^= 1 << (bit % 8)
		if _, err := r.Decrypt(c, groupAD); err == nil {
			t.Fatalf("bit %d flipped: accepted", bit)
		}
	}
	if _, err := r.Decrypt(m, []byte("other group")); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong associated data: %v, want ErrBadSignature", err)
	}
	after, _ := r.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("rejected messages changed the receiver state")
	}
	if pt, err := r.Decrypt(m, groupAD); err != nil || string(pt) != "pay 10 EUR" {
		t.Fatalf("original after tampering: %q, %v", pt, err)
	}
}

// TestSenderKeyForgery: a group member knows the chain key and can produce a
// valid AEAD ciphertext, but without the sender's signing key the message is
// rejected.
func TestSenderKeyForgery(t *testing.T) {
	sk, r := newSenderPair(t)
	insider := *sk // a member who learned the chain key (same key id, iteration)
	_, forgerSig, _ := ed25519.GenerateKey(nil)
	insider.sig = forgerSig
	forged, err := insider.Encrypt([]byte("I am the sender"), groupAD)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Decrypt(forged, groupAD); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged message: %v, want ErrBadSignature", err)
	}
	m, _ := sk.Encrypt([]byte("genuine"), groupAD)
	if pt, err := r.Decrypt(m, groupAD); err != nil || string(pt) != "genuine" {
		t.Fatalf("genuine after forgery: %q, %v", pt, err)
	}
}

func TestSenderKeyRotation(t *testing.T) {
	sk, oldReceiver := newSenderPair(t)
	m, _ := sk.Encrypt([]byte("before"), groupAD)
	if _, err := oldReceiver.Decrypt(m, groupAD); err != nil {
		t.Fatal(err)
	}
	rotated, err := sk.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.KeyID() == sk.KeyID() {
		t.Fatal("rotation kept the key id")
	}
	newReceiver, _ := NewSenderKeyReceiver(rotated.Distribution())
	m2, _ := rotated.Encrypt([]byte("after"), groupAD)
	if _, err := oldReceiver.Decrypt(m2, groupAD); !errors.Is(err, ErrUnknownSenderKey) {
		t.Fatalf("old receiver on rotated key: %v, want ErrUnknownSenderKey", err)
	}
	// Even a receiver that ignores key ids (same id forced) cannot verify or
	// decrypt: the new key shares nothing with the old one.
	hacked := *oldReceiver
	hacked.keyID = rotated.KeyID()
	if _, err := hacked.Decrypt(m2, groupAD); err == nil {
		t.Fatal("old key material decrypted a message under the rotated key")
	}
	if pt, err := newReceiver.Decrypt(m2, groupAD); err != nil || string(pt) != "after" {
		t.Fatalf("new receiver: %q, %v", pt, err)
	}
}

func TestSenderKeySkipBound(t *testing.T) {
	sk, r := newSenderPair(t)
	for range MaxSkip + 1 {
		sk.Encrypt(nil, groupAD)
	}
	far, _ := sk.Encrypt([]byte("far"), groupAD)
	if _, err := r.Decrypt(far, groupAD); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("far message: %v, want ErrTooManySkipped", err)
	}
	// A late joiner's distribution starts at the current iteration: it cannot
	// read earlier messages (forward secrecy for new members).
	late, _ := NewSenderKeyReceiver(sk.Distribution())
	if _, err := late.Decrypt(far, groupAD); !errors.Is(err, ErrReplay) {
		t.Fatalf("late joiner on earlier message: %v, want ErrReplay", err)
	}
	next, _ := sk.Encrypt([]byte("next"), groupAD)
	if pt, err := late.Decrypt(next, groupAD); err != nil || string(pt) != "next" {
		t.Fatalf("late joiner: %q, %v", pt, err)
	}
}

func TestSenderKeySerialization(t *testing.T) {
	sk, r := newSenderPair(t)
	m0, _ := sk.Encrypt([]byte("0"), groupAD)
	m1, _ := sk.Encrypt([]byte("1"), groupAD)
	r.Decrypt(m1, groupAD)
	rb, _ := r.MarshalBinary()
	var r2 SenderKeyReceiver
	if err := r2.UnmarshalBinary(rb); err != nil {
		t.Fatal(err)
	}
	if pt, err := r2.Decrypt(m0, groupAD); err != nil || string(pt) != "0" {
		t.Fatalf("restored receiver: %q, %v", pt, err)
	}
	sb, _ := sk.MarshalBinary()
	var sk2 SenderKey
	if err := sk2.UnmarshalBinary(sb); err != nil {
		t.Fatal(err)
	}
	m2, _ := sk2.Encrypt([]byte("2"), groupAD)
	if pt, err := r2.Decrypt(m2, groupAD); err != nil || string(pt) != "2" {
		t.Fatalf("restored sender: %q, %v", pt, err)
	}
	if err := new(SenderKeyReceiver).UnmarshalBinary(append(rb, 0)); !errors.Is(err, ErrInvalidEncoding) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestZeroValuesDoNotPanic(t *testing.T) {
	if _, err := new(SenderKey).Encrypt(nil, nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero SenderKey: %v", err)
	}
	sk, _ := NewSenderKey(nil)
	m, _ := sk.Encrypt([]byte("x"), nil)
	if _, err := new(SenderKeyReceiver).Decrypt(m, nil); err == nil {
		t.Error("zero SenderKeyReceiver decrypted")
	}
	alice, _ := newSessionPair(t, nil)
	if _, err := new(Session).Decrypt(mustEncrypt(t, alice, "x")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero Session: %v", err)
	}
	if _, err := new(Session).Encrypt(nil); !errors.Is(err, ErrNoSendingChain) {
		t.Errorf("zero Session encrypt: %v", err)
	}
	if err := new(PrekeyBundle).Verify(); err == nil {
		t.Error("zero bundle verified")
	}
	if _, err := InitiatePQXDH(nil, IdentityPrivate{}, &PrekeyBundle{}); err == nil {
		t.Error("zero PQXDH inputs accepted")
	}
	if _, _, err := RespondPQXDH(ResponderPrekeys{}, &InitialMessage{}); err == nil {
		t.Error("zero responder inputs accepted")
	}
}
