package keys

import (
	"bytes"
	"encoding"
	"encoding/json"
	"testing"
)

// Every decoder gets a fuzz target. Each asserts that decoding never panics
// and that whatever decodes re-encodes to the same bytes (the encodings are
// canonical). Seeds are valid encodings, so `go test` runs the round trips.

// fuzzRoundTrip is the shared body for types with canonical binary forms.
func fuzzRoundTrip[T any, P interface {
	*T
	encoding.BinaryUnmarshaler
	encoding.BinaryMarshaler
}](t *testing.T, data []byte) {
	var v T
	if err := P(&v).UnmarshalBinary(data); err != nil {
		return
	}
	again, err := P(&v).MarshalBinary()
	if err != nil {
		t.Fatalf("decoded value does not re-encode: %v", err)
	}
	if !bytes.Equal(again, data) {
		t.Fatalf("non-canonical decode:\n in %x\nout %x", data, again)
	}
}

func seedKeys(f *testing.F, text bool) {
	p := newParty(f, newDetReader("fuzz seeds"), "dev")
	for _, k := range []codec{p.id.Public(), p.id, p.spk.Public(), p.spk, p.opk.Public(), p.opk, p.pq.Public(), p.pq} {
		if text {
			b, _ := k.MarshalText()
			f.Add(b)
		} else {
			b, _ := k.MarshalBinary()
			f.Add(b)
		}
	}
}

func FuzzDecodeKeysBinary(f *testing.F) {
	seedKeys(f, false)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip[IdentityPublic](t, data)
		fuzzRoundTrip[IdentityPrivate](t, data)
		fuzzRoundTrip[SignedPrekeyPublic](t, data)
		fuzzRoundTrip[SignedPrekeyPrivate](t, data)
		fuzzRoundTrip[OneTimePrekeyPublic](t, data)
		fuzzRoundTrip[OneTimePrekeyPrivate](t, data)
		fuzzRoundTrip[PQPrekeyPublic](t, data)
		fuzzRoundTrip[PQPrekeyPrivate](t, data)
	})
}

func FuzzDecodeKeysText(f *testing.F) {
	seedKeys(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range []interface {
			encoding.TextUnmarshaler
			encoding.TextMarshaler
		}{new(IdentityPublic), new(IdentityPrivate), new(SignedPrekeyPublic), new(SignedPrekeyPrivate),
			new(OneTimePrekeyPublic), new(OneTimePrekeyPrivate), new(PQPrekeyPublic), new(PQPrekeyPrivate)} {
			if d.UnmarshalText(data) != nil {
				continue
			}
			again, err := d.MarshalText()
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("non-canonical text decode: %q -> %q (%v)", data, again, err)
			}
		}
	})
}

func FuzzDecodeBundle(f *testing.F) {
	p := newParty(f, newDetReader("fuzz bundle"), "dev")
	for _, opk := range []bool{true, false} {
		b := p.bundle(f, opk)
		bin, _ := b.MarshalBinary()
		js, _ := json.Marshal(b)
		f.Add(bin)
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b PrekeyBundle
		if b.UnmarshalBinary(data) == nil && b.Verify() == nil {
			again, err := b.MarshalBinary()
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("non-canonical bundle: %v", err)
			}
		}
		var j PrekeyBundle
		if j.UnmarshalJSON(data) == nil {
			_ = j.Verify() // must not panic on any decoded bundle
			j.MarshalJSON()
		}
	})
}

func FuzzDecodeInitialMessage(f *testing.F) {
	r := newDetReader("fuzz initial")
	a, b := newParty(f, r, "a"), newParty(f, r, "b")
	for _, opk := range []bool{true, false} {
		init, err := initiatePQXDH(r, a.id, b.bundle(f, opk), detEncapsulate(r))
		if err != nil {
			f.Fatal(err)
		}
		m, _ := init.Message.MarshalBinary()
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip[InitialMessage](t, data)
		var m InitialMessage
		if m.UnmarshalBinary(data) == nil {
			// The responder must fail cleanly, never panic, on anything.
			RespondPQXDH(b.responderKeys(m.HasOneTimePrekey), &m)
		}
	})
}

func FuzzDecodeRatchetMessage(f *testing.F) {
	alice, bob := newSessionPair(f, newDetReader("fuzz ratchet"))
	waiting, _ := alice.MarshalBinary() // the initiator before any reply
	m0 := mustEncrypt(f, alice, "hello")
	f.Add(m0)
	f.Add(mustEncrypt(f, alice, ""))
	mustDecrypt(f, bob, m0, "hello")
	reply := mustEncrypt(f, bob, "reply")
	f.Add(reply)
	// A forgery under the responder's signed prekey and an all-zero chain.
	spk := cloneSession(f, alice).dhr
	f.Add(forgeRatchetMessage(alice.ad, spk, 0, 0, [32]byte{}, []byte("forged")))
	state, _ := bob.MarshalBinary()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := UnmarshalSession(newDetReader("fuzz"), state)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Decrypt(data); err != nil {
			after, _ := s.MarshalBinary()
			if !bytes.Equal(after, state) {
				t.Fatal("failed decryption changed the session")
			}
		}
		// The initiator before the first reply accepts Bob's real reply
		// and nothing else.
		w, err := UnmarshalSession(newDetReader("fuzz"), waiting)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Decrypt(data); err == nil && !bytes.Equal(data, reply) {
			t.Fatalf("initiator before the first reply decrypted %x", data)
		} else if err != nil {
			if after, _ := w.MarshalBinary(); !bytes.Equal(after, waiting) {
				t.Fatal("failed decryption changed the waiting initiator")
			}
		}
	})
}

func FuzzDecodeSession(f *testing.F) {
	alice, bob := newSessionPair(f, newDetReader("fuzz session"))
	mustEncrypt(f, alice, "skipped")
	mustDecrypt(f, bob, mustEncrypt(f, alice, "x"), "x")
	mustDecrypt(f, alice, mustEncrypt(f, bob, "y"), "y")
	for _, s := range []*Session{alice, bob} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip[Session](t, data)
		var s Session
		if s.UnmarshalBinary(data) == nil {
			s.rand = newDetReader("fuzz")
			// A decoded state must be usable without panicking.
			if ct, err := s.Encrypt([]byte("x")); err == nil {
				s.Decrypt(ct)
			}
		}
	})
}

func FuzzDecodeSenderKey(f *testing.F) {
	sk, err := NewSenderKey(newDetReader("fuzz sender key"))
	if err != nil {
		f.Fatal(err)
	}
	r, _ := NewSenderKeyReceiver(sk.Distribution())
	m0, _ := sk.Encrypt([]byte("zero"), groupAD)
	m1, _ := sk.Encrypt([]byte("one"), groupAD)
	r.Decrypt(m1, groupAD)
	db, _ := sk.Distribution().MarshalBinary()
	sb, _ := sk.MarshalBinary()
	rb, _ := r.MarshalBinary()
	for _, s := range [][]byte{m0, m1, db, sb, rb} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip[SenderKeyDistribution](t, data)
		fuzzRoundTrip[SenderKey](t, data)
		fuzzRoundTrip[SenderKeyReceiver](t, data)
		var rr SenderKeyReceiver
		if err := rr.UnmarshalBinary(rb); err != nil {
			t.Fatal(err)
		}
		if _, err := rr.Decrypt(data, groupAD); err != nil {
			after, _ := rr.MarshalBinary()
			if !bytes.Equal(after, rb) {
				t.Fatal("failed decryption changed the receiver")
			}
		}
		SenderKeyMessageKeyID(data)
	})
}
