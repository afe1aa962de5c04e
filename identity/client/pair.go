package client

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Pairing: a new device makes a certificate request (CertificateRequest)
// and carries it to an enrolled device, which approves it (EnrollCSR with
// WithDevice); the certificate comes back and the new device installs it.
// The request travels by whatever the user has at hand — a file, a paste
// between windows — so both ends show the fingerprint of the key in it,
// and the user compares the two before approving: a request swapped on
// the way shows another fingerprint.

// KeyFingerprint is the fingerprint of a device's public key that the
// user compares between the new device and the approving one: the first
// 16 bytes of SHA-256 over the key's PKIX (SubjectPublicKeyInfo) DER
// encoding, in eight groups of four upper-case hex digits.
func KeyFingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	groups := make([]string, 8)
	for i := range groups {
		groups[i] = fmt.Sprintf("%02X%02X", sum[2*i], sum[2*i+1])
	}
	return strings.Join(groups, " "), nil
}

// ParseRequest reads a PEM "CERTIFICATE REQUEST", checks its signature
// (the proof that whoever made it holds the key) and that the key is one
// the CA certifies, and returns the request's DER and its key's
// fingerprint.
func ParseRequest(pemData []byte) (der []byte, fingerprint string, err error) {
	blk, _ := pem.Decode(pemData)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, "", errors.New("want a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("certificate request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("certificate request: %w", err)
	}
	if err := checkPublic(req.PublicKey); err != nil {
		return nil, "", err
	}
	fp, err := KeyFingerprint(req.PublicKey)
	return blk.Bytes, fp, err
}
