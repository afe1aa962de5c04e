package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrUnsupportedKey is returned for a device key that is neither ECDSA
// P-256 nor Ed25519, the two kinds the deployment CA certifies.
var ErrUnsupportedKey = errors.New("identity client: device key must be ECDSA P-256 or Ed25519")

// CertificateRequest returns a DER PKCS#10 request signed by key, as the
// server's device routes expect it base64-encoded. The signature is the
// proof that the caller holds the key; the CA takes nothing else from the
// request (it sets names and lifetime itself), so the subject stays empty.
func CertificateRequest(key crypto.Signer) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return der, nil
}

// signMessage signs msg with a device key the way X.509 would: ECDSA over
// SHA-256 with an ASN.1 signature, Ed25519 over the message itself.
func signMessage(key crypto.Signer, msg []byte) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		digest := sha256.Sum256(msg)
		return key.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
}

func checkKey(key crypto.Signer) error {
	if key == nil {
		return ErrUnsupportedKey
	}
	return checkPublic(key.Public())
}

// checkPublic accepts the public keys the deployment CA certifies.
func checkPublic(pub crypto.PublicKey) error {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve.Params().Name != "P-256" {
			return ErrUnsupportedKey
		}
		return nil
	case ed25519.PublicKey:
		return nil
	default:
		return ErrUnsupportedKey
	}
}
