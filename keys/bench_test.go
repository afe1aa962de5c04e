package keys

import (
	"bytes"
	"testing"
)

// BenchmarkPQXDH measures one initiation and one response (key agreement
// only; bundle verification included, as a real initiator does it).
func BenchmarkPQXDH(b *testing.B) {
	alice := newParty(b, nil, "a")
	bob := newParty(b, nil, "b")
	bundle := bob.bundle(b, true)
	keys := bob.responderKeys(true)
	b.ReportAllocs()
	for b.Loop() {
		init, err := InitiatePQXDH(nil, alice.id, bundle)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := RespondPQXDH(keys, &init.Message); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRatchetEncryptDecrypt1KiB measures one Encrypt and one Decrypt of
// a 1 KiB message on an established session (same direction, so no DH step).
func BenchmarkRatchetEncryptDecrypt1KiB(b *testing.B) {
	alice, bob := newSessionPair(b, nil)
	msg := bytes.Repeat([]byte("k"), 1024)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		ct, err := alice.Encrypt(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.Decrypt(ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSenderKeyEncrypt1KiB measures one group encryption (chain step,
// AEAD and Ed25519 signature) of a 1 KiB message.
func BenchmarkSenderKeyEncrypt1KiB(b *testing.B) {
	sk, err := NewSenderKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := bytes.Repeat([]byte("k"), 1024)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sk.Encrypt(msg, groupAD); err != nil {
			b.Fatal(err)
		}
	}
}
