package miniapps

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// signingKey is the provider's key: ES256 (P-256), derived from the
// deployment secret so that every node signs with the same key and the
// database never holds it. ID tokens, launch tokens and the JWKS use it.
type signingKey struct {
	priv *ecdsa.PrivateKey
	id   string // kid: the first 16 hex digits of the SHA-256 of the public key's SPKI
}

// deriveSigningKey derives the key: HKDF-SHA256 output taken as the
// scalar, counter appended to the label until it is a valid one (a
// scalar of zero or at least the group order happens with probability
// about 2^-32).
func deriveSigningKey(secret []byte) (*signingKey, error) {
	for i := 0; i < 16; i++ {
		label := labelSigning
		if i > 0 {
			label = fmt.Sprintf("%s %d", labelSigning, i)
		}
		d, err := hkdf.Key(sha256.New, secret, nil, label, 32)
		if err != nil {
			return nil, err
		}
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		if err != nil {
			continue
		}
		spki, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		if err != nil {
			return nil, err
		}
		h := sha256.Sum256(spki)
		return &signingKey{priv: priv, id: hex.EncodeToString(h[:8])}, nil
	}
	return nil, fmt.Errorf("miniapps: no signing key derivable")
}

// op.SigningKey and op.Key.
func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k *signingKey) Algorithm() jose.SignatureAlgorithm          { return jose.ES256 }
func (k *signingKey) ID() string                                  { return k.id }
func (k *signingKey) Use() string                                 { return "sig" }

// Key is the private key for signing (op.SigningKey).
func (k *signingKey) Key() any { return k.priv }

// publicKey is the published half (op.Key).
type publicKey struct{ *signingKey }

func (k publicKey) Key() any { return &k.priv.PublicKey }

// JWKS returns the provider's public keys as a JSON Web Key Set.
func (s *Service) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &s.keys.priv.PublicKey, KeyID: s.keys.id, Algorithm: string(jose.ES256), Use: "sig"}}}
}
