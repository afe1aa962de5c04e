package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type codec interface {
	encoding.BinaryMarshaler
	encoding.TextMarshaler
}

type decodable interface {
	encoding.BinaryUnmarshaler
	encoding.TextUnmarshaler
}

// allKeys returns one key of every type with a fresh decoder for it.
func allKeys(t *testing.T) map[string]struct {
	k   codec
	new func() decodable
} {
	p := newParty(t, nil, "dev")
	pq1, _ := GeneratePQPrekey(nil, 3, false)
	return map[string]struct {
		k   codec
		new func() decodable
	}{
		"idpub":    {p.id.Public(), func() decodable { return new(IdentityPublic) }},
		"idpriv":   {p.id, func() decodable { return new(IdentityPrivate) }},
		"spk":      {p.spk.Public(), func() decodable { return new(SignedPrekeyPublic) }},
		"spkpriv":  {p.spk, func() decodable { return new(SignedPrekeyPrivate) }},
		"otpk":     {p.opk.Public(), func() decodable { return new(OneTimePrekeyPublic) }},
		"otpkpriv": {p.opk, func() decodable { return new(OneTimePrekeyPrivate) }},
		"pqpk":     {pq1.Public(), func() decodable { return new(PQPrekeyPublic) }},
		"pqpkpriv": {pq1, func() decodable { return new(PQPrekeyPrivate) }},
	}
}

func TestKeyEncodingsRoundTripAndStrictness(t *testing.T) {
	keys := allKeys(t)
	for name, c := range keys {
		bin, err := c.k.MarshalBinary()
		if err != nil {
			t.Fatal(name, err)
		}
		text, _ := c.k.MarshalText()
		if !strings.HasPrefix(string(text), "kanal-"+name+":") {
			t.Errorf("%s: text %q lacks its prefix", name, text[:20])
		}
		for _, dec := range []func(decodable) error{
			func(d decodable) error { return d.UnmarshalBinary(bin) },
			func(d decodable) error { return d.UnmarshalText(text) },
		} {
			d := c.new()
			if err := dec(d); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			again, _ := d.(codec).MarshalBinary()
			if !bytes.Equal(again, bin) {
				t.Errorf("%s: round trip changed the key", name)
			}
		}
		bad := map[string][]byte{
			"truncated":     bin[:len(bin)-1],
			"trailing":      append(bytes.Clone(bin), 0),
			"wrong version": append([]byte{2}, bin[1:]...),
			"empty":         nil,
		}
		for what, b := range bad {
			if err := c.new().UnmarshalBinary(b); !errors.Is(err, ErrInvalidEncoding) {
				t.Errorf("%s %s: %v, want ErrInvalidEncoding", name, what, err)
			}
		}
		// A key of every other type, pasted here, fails loudly.
		for other, o := range keys {
			if other == name {
				continue
			}
			ob, _ := o.k.MarshalBinary()
			ot, _ := o.k.MarshalText()
			if err := c.new().UnmarshalBinary(ob); err == nil {
				t.Errorf("%s accepted binary %s", name, other)
			}
			if err := c.new().UnmarshalText(ot); err == nil {
				t.Errorf("%s accepted text %s", name, other)
			}
		}
		if err := c.new().UnmarshalText(append(bytes.Clone(text), 'A')); err == nil {
			t.Errorf("%s: text with extra character accepted", name)
		}
	}
}

func TestKeyEqualAndZero(t *testing.T) {
	a, _ := GenerateIdentity(nil)
	b, _ := GenerateIdentity(nil)
	var c IdentityPublic
	c.UnmarshalText([]byte(a.Public().String()))
	if !a.Public().Equal(c) || a.Public().Equal(b.Public()) || !a.Equal(a) || a.Equal(b) {
		t.Fatal("Equal is wrong")
	}
	if _, err := (IdentityPublic{}).MarshalBinary(); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("zero key marshal: %v", err)
	}
	if strings.Contains(a.String(), "redacted") == false || strings.Contains(SignedPrekeyPrivate{}.String(), "redacted") == false {
		t.Fatal("private key String must not reveal the key")
	}
}

func TestIdentityBinding(t *testing.T) {
	id, _ := GenerateIdentity(nil)
	other, _ := GenerateIdentity(nil)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, dk := range map[string]crypto.Signer{"ed25519": edKey, "p256": p256} {
		sig, err := SignIdentity(dk, id.Public(), "device-1")
		if err != nil {
			t.Fatal(name, err)
		}
		pub := dk.Public()
		if err := VerifyIdentity(pub, id.Public(), "device-1", sig); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := VerifyIdentity(pub, id.Public(), "device-2", sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s other device id: %v", name, err)
		}
		if err := VerifyIdentity(pub, other.Public(), "device-1", sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s other identity: %v", name, err)
		}
	}
	if _, err := SignIdentity(p384, id.Public(), "d"); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-384: %v", err)
	}
	if err := VerifyIdentity(&p384.PublicKey, id.Public(), "d", []byte{1}); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-384 verify: %v", err)
	}
}

func TestSafetyNumberSymmetric(t *testing.T) {
	a, _ := GenerateIdentity(nil)
	b, _ := GenerateIdentity(nil)
	c, _ := GenerateIdentity(nil)
	ab, _ := NewSafetyNumber("alice", a.Public(), "bob", b.Public())
	ba, _ := NewSafetyNumber("bob", b.Public(), "alice", a.Public())
	ac, _ := NewSafetyNumber("alice", a.Public(), "bob", c.Public())
	if !ab.Equal(ba) || ab.String() != ba.String() {
		t.Fatalf("not symmetric: %s vs %s", ab, ba)
	}
	if ab.Equal(ac) {
		t.Fatal("different key, same safety number")
	}
	if len(ab.Digits()) != 60 || len(strings.Fields(ab.String())) != 12 {
		t.Fatalf("format: %q", ab.String())
	}
}

func TestBundleVerifyAndEncodings(t *testing.T) {
	p := newParty(t, nil, "bob-laptop")
	for _, withOPK := range []bool{true, false} {
		b := p.bundle(t, withOPK)
		bin, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var b2 PrekeyBundle
		if err := b2.UnmarshalBinary(bin); err != nil || b2.Verify() != nil || b2.HasOneTimePrekey() != withOPK {
			t.Fatalf("binary round trip: %v", err)
		}
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var b3 PrekeyBundle
		if err := json.Unmarshal(js, &b3); err != nil || b3.Verify() != nil {
			t.Fatalf("json round trip: %v\n%s", err, js)
		}
		bin3, _ := b3.MarshalBinary()
		if !bytes.Equal(bin, bin3) {
			t.Fatal("JSON and binary forms disagree")
		}
	}
	b := p.bundle(t, true)
	b.SignedPrekeySig[0] ^= 1
	if err := b.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered SPK signature: %v", err)
	}
	// A directory swapping in another PQ prekey (or flipping last-resort) is
	// caught: the signature covers id, flag and key.
	b = p.bundle(t, true)
	other, _ := GeneratePQPrekey(nil, p.pq.ID(), true)
	b.PQPrekey = other.Public()
	if err := b.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("swapped PQ prekey: %v", err)
	}
	var j PrekeyBundle
	if err := json.Unmarshal([]byte(`{"device_id":"x","extra":1}`), &j); err == nil {
		t.Fatal("unknown JSON field accepted")
	}
}

func TestPQXDHAgreement(t *testing.T) {
	alice := newParty(t, nil, "a")
	bob := newParty(t, nil, "b")
	for _, withOPK := range []bool{true, false} {
		init, err := InitiatePQXDH(nil, alice.id, bob.bundle(t, withOPK))
		if err != nil {
			t.Fatal(err)
		}
		wire, _ := init.Message.MarshalBinary()
		var msg InitialMessage
		if err := msg.UnmarshalBinary(wire); err != nil {
			t.Fatal(err)
		}
		sk, ad, err := RespondPQXDH(bob.responderKeys(withOPK), &msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sk, init.SharedKey) || !bytes.Equal(ad, init.AssociatedData) {
			t.Fatal("shared key or AD differ")
		}
		wantAD := append(alice.id.Public().bytes(), bob.id.Public().bytes()...)
		if !bytes.Equal(ad, wantAD) {
			t.Fatal("AD is not Encode(IKA) || Encode(IKB)")
		}
		// Wrong prekeys are named as such.
		if _, _, err := RespondPQXDH(bob.responderKeys(!withOPK), &msg); !errors.Is(err, ErrPrekeyMismatch) {
			t.Fatalf("one-time prekey mismatch: %v", err)
		}
		// A corrupted KEM ciphertext yields a different key (ML-KEM implicit
		// rejection), so the first ratchet message would not decrypt.
		msg.KEMCiphertext[0] ^= 1
		sk2, _, err := RespondPQXDH(bob.responderKeys(withOPK), &msg)
		if err != nil || bytes.Equal(sk2, sk) {
			t.Fatalf("corrupted ciphertext: same key or error %v", err)
		}
	}
	bad := bob.bundle(t, true)
	bad.PQPrekeySig[5] ^= 1
	if _, err := InitiatePQXDH(nil, alice.id, bad); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad bundle signature: %v", err)
	}
}

func TestPQXDHRejectsLowOrderEphemeral(t *testing.T) {
	alice := newParty(t, nil, "a")
	bob := newParty(t, nil, "b")
	init, _ := InitiatePQXDH(nil, alice.id, bob.bundle(t, true))
	msg := init.Message
	msg.Ephemeral, _ = parseX25519Public(make([]byte, 32))
	if _, _, err := RespondPQXDH(bob.responderKeys(true), &msg); !errors.Is(err, ErrLowOrderPoint) {
		t.Fatalf("zero ephemeral: %v, want ErrLowOrderPoint", err)
	}
}
