package surveys

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"testing"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// TestTokenSignerMatchesCircl checks the CRT signer against circl's
// BlindSign (s = m^d mod n computed the long way) on random requests,
// including the smallest and the largest the modulus allows, and that a
// key without precomputed CRT values signs the same.
func TestTokenSignerMatchesCircl(t *testing.T) {
	k, err := GenerateTokenKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewTokenSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	bare := &rsa.PrivateKey{PublicKey: k.PublicKey, D: k.D, Primes: k.Primes}
	sBare, err := NewTokenSigner(bare)
	if err != nil {
		t.Fatal(err)
	}
	if bare.Precomputed.Dp != nil {
		t.Fatal("NewTokenSigner changed the caller's key")
	}
	nMinus1 := new(big.Int).Sub(k.N, big.NewInt(1)).FillBytes(make([]byte, k.Size()))
	one := big.NewInt(1).FillBytes(make([]byte, k.Size()))
	reqs := [][]byte{one, nMinus1}
	for range 20 {
		m, err := rand.Int(rand.Reader, k.N)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, m.FillBytes(make([]byte, k.Size())))
	}
	ref := blindrsa.NewSigner(k)
	for i, m := range reqs {
		want, err := ref.BlindSign(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []*TokenSigner{s, sBare} {
			got, err := s.BlindSign(m)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("request %d: the CRT signature differs from m^d mod n", i)
			}
		}
	}
}

// TestTokenSignerRefusesBadRequests: a request of the wrong length or
// not below the modulus is refused as invalid input, and a key that is
// not a two-prime RSA key is refused when the signer is made.
func TestTokenSignerRefusesBadRequests(t *testing.T) {
	k, err := GenerateTokenKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewTokenSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	n := k.N.FillBytes(make([]byte, k.Size()))
	ff := bytes.Repeat([]byte{0xff}, k.Size())
	for name, m := range map[string][]byte{"short": n[1:], "long": append([]byte{0}, n...), "n": n, "all ones": ff, "empty": nil} {
		if _, err := s.BlindSign(m); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if _, err := NewTokenSigner(&rsa.PrivateKey{PublicKey: k.PublicKey, D: k.D, Primes: k.Primes[:1]}); err == nil {
		t.Error("a key with one prime was accepted")
	}
}
