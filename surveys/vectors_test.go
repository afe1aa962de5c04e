package surveys

import (
	"bytes"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// TestRFC9474Vectors runs the RFC 9474 test vector of the variant kanal
// uses (RSABSSA-SHA384-PSS-Randomized, Appendix A) through the same
// library calls the server and the client make: Prepare's output is
// prefix || msg, the server's BlindSign of the vector's blinded message
// gives its blind signature, unblinding with the vector's inverse gives
// its signature, the blinded message is the PSS encoding times r^e, and
// the final signature verifies.
func TestRFC9474Vectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc9474_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []map[string]string
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vs {
		t.Run(v["name"], func(t *testing.T) {
			num := func(k string) *big.Int {
				n, ok := new(big.Int).SetString(strings.TrimPrefix(v[k], "0x"), 16)
				if !ok {
					t.Fatalf("bad %s", k)
				}
				return n
			}
			bin := func(k string) []byte {
				b, err := hex.DecodeString(v[k])
				if err != nil {
					t.Fatalf("bad %s: %v", k, err)
				}
				return b
			}
			n, e := num("n"), num("e")
			key := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: int(e.Int64())}, D: num("d"), Primes: []*big.Int{num("p"), num("q")}}
			key.Precompute()
			if err := key.Validate(); err != nil {
				t.Fatal(err)
			}
			input := bin("input_msg")
			if !bytes.Equal(input, append(bin("msg_prefix"), bin("msg")...)) {
				t.Fatal("input_msg is not msg_prefix || msg")
			}
			blindSig, err := BlindSign(key, bin("blinded_msg"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(blindSig, bin("blind_sig")) {
				t.Fatal("blind signature differs from the vector")
			}
			inv := num("inv")
			sig := new(big.Int).Mod(new(big.Int).Mul(new(big.Int).SetBytes(blindSig), inv), n)
			if !bytes.Equal(sig.FillBytes(make([]byte, key.Size())), bin("sig")) {
				t.Fatal("unblinded signature differs from the vector")
			}
			// blinded = encoded · r^e with r = inv⁻¹, and encoded = sig^e.
			r := new(big.Int).ModInverse(inv, n)
			encoded := new(big.Int).Exp(sig, e, n)
			blinded := new(big.Int).Mod(new(big.Int).Mul(encoded, new(big.Int).Exp(r, e, n)), n)
			if !bytes.Equal(blinded.FillBytes(make([]byte, key.Size())), bin("blinded_msg")) {
				t.Fatal("blinded message is not the PSS encoding blinded by r")
			}
			ver, err := blindrsa.NewVerifier(tokenVariant, &key.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if err := ver.Verify(input, bin("sig")); err != nil {
				t.Fatalf("vector signature does not verify: %v", err)
			}
			bad := bin("sig")
			bad[10] ^= 1
			if ver.Verify(input, bad) == nil {
				t.Fatal("tampered signature verifies")
			}
			// The server's check (crypto/rsa's RSASSA-PSS) agrees.
			if err := verifyTokenSignature(&key.PublicKey, input, bin("sig")); err != nil {
				t.Fatalf("vector signature does not verify with crypto/rsa: %v", err)
			}
			if verifyTokenSignature(&key.PublicKey, input, bad) == nil {
				t.Fatal("tampered signature verifies with crypto/rsa")
			}
			if verifyTokenSignature(&key.PublicKey, bin("msg"), bin("sig")) == nil {
				t.Fatal("the signature verifies for the message without its prefix")
			}
		})
	}
}
