package keys

import (
	"crypto/hpke"
	"fmt"
)

// Key wrapping seals a short secret (a document key) to a device's
// identity agreement key with HPKE (RFC 9180) in base mode:
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305. The output
// is enc (32 bytes) followed by the AEAD ciphertext. The caller's info
// names the protocol and binds what the key is for and to whom, so that a
// wrapped key moved to another context does not open.

func wrapSuite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.ChaCha20Poly1305() }

// MaxWrapSecret is the largest secret WrapKey seals.
const MaxWrapSecret = 64

// WrapKey seals secret to the agreement key of to, under info.
func WrapKey(to IdentityPublic, info, secret []byte) ([]byte, error) {
	if to.IsZero() {
		return nil, fmt.Errorf("keys.WrapKey: %w", ErrInvalidKey)
	}
	if len(secret) == 0 || len(secret) > MaxWrapSecret {
		return nil, fmt.Errorf("keys.WrapKey: secret must be 1 to %d bytes", MaxWrapSecret)
	}
	pk, err := hpke.NewDHKEMPublicKey(to.dh)
	if err != nil {
		return nil, fmt.Errorf("keys.WrapKey: %w", err)
	}
	kdf, aead := wrapSuite()
	return hpke.Seal(pk, kdf, aead, info, secret)
}

// UnwrapKey opens a secret WrapKey sealed to k's public key under info.
func (k IdentityPrivate) UnwrapKey(info, wrapped []byte) ([]byte, error) {
	if k.IsZero() {
		return nil, fmt.Errorf("keys.UnwrapKey: %w", ErrInvalidKey)
	}
	sk, err := hpke.NewDHKEMPrivateKey(k.dh)
	if err != nil {
		return nil, fmt.Errorf("keys.UnwrapKey: %w", err)
	}
	kdf, aead := wrapSuite()
	secret, err := hpke.Open(sk, kdf, aead, info, wrapped)
	if err != nil {
		return nil, fmt.Errorf("keys.UnwrapKey: %w", ErrDecrypt)
	}
	return secret, nil
}
