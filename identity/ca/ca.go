package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// CA is a deployment CA: the certificate that issues and its private key.
// It is either the root itself (a deployment made by LoadOrCreateDir) or
// an issuing intermediate under an offline root (IssueIntermediate,
// LoadIssuingDir), in which case root and retired intermediates come with
// it. A CA is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	root    *x509.Certificate   // nil: cert is the root
	retired []*x509.Certificate // earlier intermediates, still trusted for what they issued
}

// Create generates a new deployment CA: an ECDSA P-256 key and a self-signed
// root certificate named "kanal deployment CA <name>", valid from an hour
// before now (to tolerate clock skew) for RootLifetime.
func Create(name string, now time.Time) (*CA, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if now.IsZero() {
		return nil, fmt.Errorf("%w: zero now", ErrInvalidTime)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	cert, err := selfSign(key, name, now)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key}, nil
}

func selfSign(key crypto.Signer, name string, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kanal deployment CA " + name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(RootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// Parse loads an operator-provided CA from a PEM certificate and a PEM
// private key (PKCS#8 "PRIVATE KEY", or SEC 1 "EC PRIVATE KEY" as openssl
// writes it). The certificate must be a CA allowed to sign certificates and
// CRLs, the key must match it, and the key must be ECDSA P-256, P-384 or
// Ed25519. The certificate need not be self-signed: an operator may run the
// deployment CA under a municipal root.
func Parse(certPEM, keyPEM []byte) (*CA, error) {
	certDER, err := onePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCAKey, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA ||
		cert.KeyUsage&x509.KeyUsageCertSign == 0 || cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("%w: certificate is not a CA allowed to sign certificates and CRLs", ErrBadCAKey)
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: CA key curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
	case ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("%w: CA key %T", ErrUnsupportedKey, key)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: key does not match certificate", ErrBadCAKey)
	}
	return &CA{cert: cert, key: key}, nil
}

func onePEM(data []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("%w: no %s PEM block", ErrBadCAKey, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after %s", ErrBadCAKey, typ)
	}
	return block.Bytes, nil
}

func parsePrivateKeyPEM(keyPEM []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(keyPEM)
	if block == nil || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: want one PEM private key", ErrBadCAKey)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM type %q", ErrBadCAKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCAKey, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
	}
	return signer, nil
}

// Certificate returns the CA certificate. Callers must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Pool returns a new pool for the Verify functions: the root and, under
// an offline root, the issuing and retired intermediates (see TrustPool).
func (c *CA) Pool() *x509.CertPool {
	if c.root == nil {
		p := x509.NewCertPool()
		p.AddCert(c.cert)
		return p
	}
	p, _ := TrustPool(c.root, c.Intermediates()) // checked when loaded
	return p
}

// CertPEM returns the issuing certificate in PEM form.
func (c *CA) CertPEM() []byte { return pemCert(c.cert.Raw) }

// Root is the deployment's root certificate, what clients pin: the CA
// certificate itself, or the offline root above the intermediate.
func (c *CA) Root() *x509.Certificate {
	if c.root != nil {
		return c.root
	}
	return c.cert
}

// RootPEM is Root in PEM form, as distributed to clients.
func (c *CA) RootPEM() []byte { return pemCert(c.Root().Raw) }

// Intermediates are the issuing intermediate and the retired ones, newest
// first; nil for a CA that is its own root.
func (c *CA) Intermediates() []*x509.Certificate {
	if c.root == nil {
		return nil
	}
	return append([]*x509.Certificate{c.cert}, c.retired...)
}

// KeyPEM returns the CA private key as PEM PKCS#8. It is the deployment's
// most sensitive secret.
func (c *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// randomSerial returns a random positive 128-bit serial number. Random
// serials make the certificate contents unpredictable to a requester, which
// is what defeats chosen-prefix collision attacks on the signature.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("ca: serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// checkDeviceKey accepts the key types devices may hold: ECDSA P-256 (what
// phone secure hardware offers) and Ed25519.
func checkDeviceKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 key size", ErrUnsupportedKey)
		}
		return nil
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
}

// checkValidity validates a requested validity window and fills a zero
// NotAfter with def. The window must lie inside the issuer's own.
func checkValidity(notBefore, notAfter time.Time, def, max time.Duration, issuer *x509.Certificate) (time.Time, time.Time, error) {
	if notBefore.IsZero() {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: zero NotBefore", ErrInvalidLifetime)
	}
	if notAfter.IsZero() {
		notAfter = notBefore.Add(def)
	}
	if !notAfter.After(notBefore) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: NotAfter not after NotBefore", ErrInvalidLifetime)
	}
	if notAfter.Sub(notBefore) > max {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: longer than %v", ErrInvalidLifetime, max)
	}
	if notBefore.Before(issuer.NotBefore) || notAfter.After(issuer.NotAfter) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: outside the issuer's validity", ErrInvalidLifetime)
	}
	return notBefore, notAfter, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
