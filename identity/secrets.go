package identity

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// Bearer token prefixes. A token pasted in the wrong place fails loudly,
// and the prefix tells the server which table to look in.
const (
	prefixSession  = "kanal_s_"
	prefixRefresh  = "kanal_r_"
	prefixSetup    = "kanal_st_"
	prefixOperator = "kanal_op_"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func readRandom(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("identity: random: %w", err)
	}
	return b, nil
}

// newID returns prefix followed by 80 random bits in lower-case base32,
// e.g. dev_k3x…: unguessable, and valid as a certificate id.
func newID(r io.Reader, prefix string) (string, error) {
	b, err := readRandom(r, 10)
	if err != nil {
		return "", err
	}
	return prefix + idEncoding.EncodeToString(b), nil
}

// newToken returns a bearer token (prefix + 32 random bytes) and the hash
// under which it is stored. The token itself is never stored.
func newToken(r io.Reader, prefix string) (token, hash string, err error) {
	b, err := readRandom(r, 32)
	if err != nil {
		return "", "", err
	}
	token = prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token), nil
}

// hashToken is the stored form of a bearer token. Tokens carry 256 bits of
// entropy, so a plain SHA-256 is enough: there is nothing to brute-force.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// equalSecret compares two secret-derived strings in constant time.
func equalSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// newCode returns CodeDigits uniformly random decimal digits.
func newCode(r io.Reader) (string, error) {
	max := big.NewInt(1)
	for i := 0; i < CodeDigits; i++ {
		max.Mul(max, big.NewInt(10))
	}
	n, err := randInt(r, max)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*d", CodeDigits, n), nil
}

// randInt is crypto/rand.Int without its reader-quirk randomisation:
// rejection sampling on whole bytes.
func randInt(r io.Reader, max *big.Int) (*big.Int, error) {
	nbytes := (max.BitLen() + 7) / 8
	for {
		b, err := readRandom(r, nbytes)
		if err != nil {
			return nil, err
		}
		b[0] &= byte(0xff >> (8*nbytes - max.BitLen()))
		n := new(big.Int).SetBytes(b)
		if n.Cmp(max) < 0 {
			return n, nil
		}
	}
}

func validCode(s string) bool {
	if len(s) != CodeDigits {
		return false
	}
	return strings.Trim(s, "0123456789") == ""
}

// SecretSize is the size of the deployment secret in bytes.
const SecretSize = 32

// deriveKey derives a purpose-bound key from the deployment secret, so
// every node sharing the secret derives the same key and the database alone
// never holds it. (Before the deployment secret, master was the CA key's
// PEM; ResealLegacy moves what was sealed under it.)
func deriveKey(master []byte, purpose string) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, "kanal identity "+purpose, 32)
}

// codeMAC is the stored form of a sign-up code: an 8-digit code is easy to
// brute-force from a plain hash, not from an HMAC whose key is not in the
// database.
func codeMAC(secret []byte, email, code string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(email))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return hex.EncodeToString(m.Sum(nil))
}
