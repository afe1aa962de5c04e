package keys

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("%s line %d:\n got %s\nwant %s", name, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s: %d lines, want %d", name, len(gl), len(wl))
	}
}

// TestRFC7748AndRFC8032ThroughIdentity loads the RFC 8032 test 1 Ed25519
// seed and the RFC 7748 §6.1 X25519 key of Alice into an IdentityPrivate and
// checks the public keys, the shared secret with Bob and the signature.
func TestRFC7748AndRFC8032ThroughIdentity(t *testing.T) {
	edSeed := unhex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	edPub := unhex(t, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	edSig := unhex(t, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
	xPriv := unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	xPub := unhex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	bobPub := unhex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	shared := unhex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

	bin := append(append([]byte{encodingVersion, byte(kindIdentityPrivate)}, edSeed...), xPriv...)
	var id IdentityPrivate
	if err := id.UnmarshalBinary(bin); err != nil {
		t.Fatal(err)
	}
	pub := id.Public()
	if !bytes.Equal(pub.SigningKey(), edPub) {
		t.Errorf("Ed25519 public = %x, want %x", pub.SigningKey(), edPub)
	}
	if !bytes.Equal(pub.AgreementKey().Bytes(), xPub) {
		t.Errorf("X25519 public = %x, want %x", pub.AgreementKey().Bytes(), xPub)
	}
	var bob OneTimePrekeyPublic
	if err := bob.UnmarshalBinary(append([]byte{encodingVersion, byte(kindOneTimePrekeyPublic), 0, 0, 0, 1}, bobPub...)); err != nil {
		t.Fatal(err)
	}
	got, err := x25519(id.dh, bob.Key())
	if err != nil || !bytes.Equal(got, shared) {
		t.Errorf("X25519 shared = %x, %v; want %x", got, err, shared)
	}
	if sig := ed25519.Sign(id.sig, nil); !bytes.Equal(sig, edSig) {
		t.Errorf("Ed25519 signature = %x, want %x", sig, edSig)
	}
	if !ed25519.Verify(pub.SigningKey(), nil, edSig) {
		t.Error("RFC 8032 signature does not verify under IdentityPublic's key")
	}
}

func TestX25519RejectsLowOrder(t *testing.T) {
	id, _ := GenerateIdentity(nil)
	for _, p := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	} {
		pub, err := parseX25519Public(unhex(t, p))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x25519(id.dh, pub); err == nil {
			t.Errorf("low-order point %s accepted", p)
		}
	}
}

// TestRatchetX25519MatchesECDH checks the Double Ratchet's X25519
// (circl, on raw keys) against crypto/ecdh: RFC 7748 §6.1, then random
// keys and points, including scalars with the bits clamping clears set and
// public keys with the top bit set (ignored by both).
func TestRatchetX25519MatchesECDH(t *testing.T) {
	priv := [32]byte(unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	if got, want := ratchetPublic(&priv), unhex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"); !bytes.Equal(got[:], want) {
		t.Errorf("RFC 7748 public = %x, want %x", got, want)
	}
	bob := [32]byte(unhex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
	if got, err := ratchetDH(&priv, bob); err != nil || !bytes.Equal(got, unhex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")) {
		t.Errorf("RFC 7748 shared = %x, %v", got, err)
	}
	r := newDetReader("ratchet x25519")
	for i := range 500 {
		k, pub, err := newRatchetKey(r)
		if err != nil {
			t.Fatal(err)
		}
		ek, err := ecdh.X25519().NewPrivateKey(k[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pub[:], ek.PublicKey().Bytes()) {
			t.Fatalf("key %d: public %x, crypto/ecdh %x", i, pub, ek.PublicKey().Bytes())
		}
		var peer [32]byte
		r.Read(peer[:])
		if i%2 == 1 {
			peer[31] |= 0x80
		}
		want, errWant := ek.ECDH(mustX25519Public(t, peer[:]))
		got, err := ratchetDH(k, peer)
		if (err == nil) != (errWant == nil) || !bytes.Equal(got, want) {
			t.Fatalf("key %d, peer %x: %x, %v; crypto/ecdh %x, %v", i, peer, got, err, want, errWant)
		}
	}
}

// TestRatchetX25519RejectsLowOrder: the low-order points of Curve25519 and
// its twist (0, 1, the two points of order 8, and p-1, p, p+1, which reduce
// to low-order points) give the all-zero output, which ratchetDH refuses
// as x25519 does; for points that only look alike with the top bit set
// (which X25519 ignores) it agrees with crypto/ecdh.
func TestRatchetX25519RejectsLowOrder(t *testing.T) {
	k, _, err := newRatchetKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"0000000000000000000000000000000000000000000000000000000000000080",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	} {
		if out, err := ratchetDH(k, [32]byte(unhex(t, p))); !errors.Is(err, ErrLowOrderPoint) {
			t.Errorf("low-order point %s: %x, %v; want ErrLowOrderPoint", p, out, err)
		}
	}
	for _, p := range []string{
		"cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
		"4c9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
		"d9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"daffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"dbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	} {
		got, err := ratchetDH(k, [32]byte(unhex(t, p)))
		want, errWant := ek.ECDH(mustX25519Public(t, unhex(t, p)))
		if (err == nil) != (errWant == nil) || !bytes.Equal(got, want) {
			t.Errorf("point %s: %x, %v; crypto/ecdh %x, %v", p, got, err, want, errWant)
		}
	}
	if _, err := ratchetDH(nil, [32]byte{9}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("no private key: %v, want ErrInvalidKey", err)
	}
}

func mustX25519Public(t *testing.T, b []byte) *ecdh.PublicKey {
	t.Helper()
	p, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRFC5869Case1 runs RFC 5869 test case 1 through hkdfSHA256, the helper
// behind every kanal KDF.
func TestRFC5869Case1(t *testing.T) {
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	salt := unhex(t, "000102030405060708090a0b0c")
	info := string(unhex(t, "f0f1f2f3f4f5f6f7f8f9"))
	want := unhex(t, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
	got, err := hkdfSHA256(ikm, salt, info, 42)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("OKM = %x, %v; want %x", got, err, want)
	}
}

func fill(b byte) (a [32]byte) {
	for i := range a {
		a[i] = b
	}
	return a
}

// TestKDFKnownAnswers pins every KDF step to golden values, so an accidental
// change to a label, an order or a length breaks the test, not interop.
func TestKDFKnownAnswers(t *testing.T) {
	var out strings.Builder
	line := func(name string, b []byte) { fmt.Fprintf(&out, "%s %x\n", name, b) }

	rk, ck, err := rootKDF(fill(0x01), bytes.Repeat([]byte{0x02}, 32))
	if err != nil {
		t.Fatal(err)
	}
	line("root_kdf.rk", rk[:])
	line("root_kdf.ck", ck[:])

	mk, next := chainKDF(fill(0x03))
	line("chain_kdf.mk", mk[:])
	line("chain_kdf.ck", next[:])

	okm, _ := hkdfSHA256(mk[:], make([]byte, 32), ratchetMessageInfo, 44)
	line("message_kdf.key_nonce", okm)
	aead, nonce, _ := messageAEAD(mk, ratchetMessageInfo)
	line("message_aead.seal", aead.Seal(nil, nonce, []byte("kanal"), []byte("ad")))

	ikm := pqxdhPrefix()
	ikm = append(ikm, bytes.Repeat([]byte{0x05}, 4*32)...)
	ikm = append(ikm, bytes.Repeat([]byte{0x06}, 32)...)
	sk, err := pqxdhKDF(ikm)
	if err != nil {
		t.Fatal(err)
	}
	line("pqxdh_kdf.sk", sk)

	a, _ := GenerateIdentity(newDetReader("safety a"))
	b, _ := GenerateIdentity(newDetReader("safety b"))
	sn, err := NewSafetyNumber("alice", a.Public(), "bob", b.Public())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&out, "safety_number %s\n", sn.Digits())
	checkGolden(t, "kdf.golden", out.String())
}

// TestTranscriptKnownAnswer runs a whole PQXDH + Double Ratchet exchange with
// fixed randomness (including derandomized ML-KEM encapsulation) and pins
// every wire message and the final states.
func TestTranscriptKnownAnswer(t *testing.T) {
	r := newDetReader("kanal transcript v1")
	var out strings.Builder
	line := func(name string, b []byte) { fmt.Fprintf(&out, "%s %x\n", name, b) }

	alice := newParty(t, r, "alice-phone")
	bob := newParty(t, r, "bob-laptop")
	bundle := bob.bundle(t, true)
	bb, _ := bundle.MarshalBinary()
	line("bundle", bb)
	init, err := initiatePQXDH(r, alice.id, bundle, detEncapsulate(r))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := init.Message.MarshalBinary()
	line("initial_message", im)
	line("sk", init.SharedKey)
	line("ad", init.AssociatedData)

	var msg InitialMessage
	if err := msg.UnmarshalBinary(im); err != nil {
		t.Fatal(err)
	}
	sk, ad, err := RespondPQXDH(bob.responderKeys(true), &msg)
	if err != nil || !bytes.Equal(sk, init.SharedKey) || !bytes.Equal(ad, init.AssociatedData) {
		t.Fatalf("responder SK/AD differ: %v", err)
	}
	as, err := NewInitiatorSession(r, init.SharedKey, init.AssociatedData, init.RemoteRatchetKey)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := NewResponderSession(r, sk, ad, bob.spk)
	if err != nil {
		t.Fatal(err)
	}
	a0 := mustEncrypt(t, as, "hello bob")
	a1 := mustEncrypt(t, as, "second")
	mustDecrypt(t, bs, a1, "second") // out of order: a0 becomes skipped
	mustDecrypt(t, bs, a0, "hello bob")
	b0 := mustEncrypt(t, bs, "hello alice")
	mustDecrypt(t, as, b0, "hello alice")
	a2 := mustEncrypt(t, as, "third")
	mustDecrypt(t, bs, a2, "third")
	for i, m := range [][]byte{a0, a1, b0, a2} {
		line(fmt.Sprint("message", i), m)
	}
	ast, _ := as.MarshalBinary()
	bst, _ := bs.MarshalBinary()
	line("alice_state", ast)
	line("bob_state", bst)
	checkGolden(t, "transcript.golden", out.String())
}
