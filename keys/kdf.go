package keys

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
)

// hkdfSHA256 is the one HKDF instance kanal uses (RFC 5869 with SHA-256).
// All protocol KDFs go through it so the RFC 5869 vector in the tests covers
// them.
func hkdfSHA256(secret, salt []byte, info string, n int) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, salt, info, n)
}

// x25519 computes a Diffie-Hellman output and refuses the all-zero result.
// crypto/ecdh already returns an error for it; the explicit check documents
// the requirement (Signal PQXDH §4.6, RFC 7748 §6.1) and keeps it should the
// library ever change.
func x25519(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) ([]byte, error) {
	if priv == nil || pub == nil {
		return nil, fmt.Errorf("keys.x25519: missing key: %w", ErrInvalidKey)
	}
	out, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("keys.x25519: %w: %w", ErrLowOrderPoint, err)
	}
	var zero [32]byte
	if subtle.ConstantTimeCompare(out, zero[:]) == 1 {
		return nil, fmt.Errorf("keys.x25519: %w", ErrLowOrderPoint)
	}
	return out, nil
}

// randomBytes reads n bytes from r, or from crypto/rand when r is nil.
// Keys are derived from these bytes with the stdlib's seed constructors
// (ecdh NewPrivateKey, ed25519.NewKeyFromSeed, mlkem.NewDecapsulationKey768)
// because since Go 1.26 the stdlib's GenerateKey functions ignore custom
// readers; reading the seed ourselves is what lets tests fix randomness.
func randomBytes(r io.Reader, n int) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("keys: reading randomness: %w", err)
	}
	return b, nil
}

// newX25519 derives an X25519 private key from 32 bytes of r.
func newX25519(r io.Reader) (*ecdh.PrivateKey, error) {
	seed, err := randomBytes(r, 32)
	if err != nil {
		return nil, err
	}
	return ecdh.X25519().NewPrivateKey(seed)
}

// parseX25519Public accepts any 32 bytes: RFC 7748 keys have no invalid
// encodings, and low-order points are caught by x25519 when they are used.
func parseX25519Public(b []byte) (*ecdh.PublicKey, error) {
	return ecdh.X25519().NewPublicKey(b)
}
