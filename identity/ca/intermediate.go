package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The offline root and its issuing intermediate.
//
//	root (ECDSA P-256, ~10 years; key kept offline)
//	└── issuing intermediate (path length 1, ~2 years; key on the nodes)
//	    ├── device certificates
//	    ├── the notary certificate
//	    └── organisation certificates ── membership certificates
//
// Clients pin the root. A node holds only the intermediate's key, so a
// stolen node can mint certificates until the intermediate is retired and
// its certificates expire, but cannot make a new intermediate. An
// intermediate is recognised as such by being a CA certificate signed by
// the root that names no organisation (organisation certificates carry a
// kanal:org URI and path length 0).

// File names of a CA directory under an offline root.
const (
	RootCertFile    = "root.pem"
	IssuingCertFile = "issuing.pem"
	IssuingKeyFile  = "issuing.key"
	RetiredFile     = "retired.pem" // earlier intermediates, newest first
)

// IntermediateLifetime is how long an intermediate IssueIntermediate makes
// is valid (at most until the root expires).
const IntermediateLifetime = 2 * 365 * 24 * time.Hour

// IssueIntermediate makes a new issuing intermediate under c, which must
// be a root (a CA from Create or LoadOrCreateDir). The intermediate has a
// fresh ECDSA P-256 key, path length 1 (so it can issue organisation CAs,
// which issue only memberships), and is valid from an hour before now for
// IntermediateLifetime or until the root expires.
func (c *CA) IssueIntermediate(name string, now time.Time) (*CA, error) {
	if c.root != nil {
		return nil, errors.New("ca: only the root issues intermediates")
	}
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
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(IntermediateLifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kanal issuing CA " + name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: create intermediate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, root: c.cert}, nil
}

// checkIntermediate says whether cert is an issuing intermediate of root.
func checkIntermediate(root, cert *x509.Certificate) error {
	switch {
	case cert.Equal(root):
		return fmt.Errorf("%w: the root is not an intermediate", ErrUntrusted)
	case !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("%w: %q is not a CA certificate", ErrUntrusted, cert.Subject.CommonName)
	case len(cert.URIs) != 0 || cert.MaxPathLenZero || cert.MaxPathLen == 0:
		return fmt.Errorf("%w: %q is an organisation or end-entity CA, not an issuing intermediate", ErrUntrusted, cert.Subject.CommonName)
	case cert.CheckSignatureFrom(root) != nil:
		return fmt.Errorf("%w: %q is not signed by the deployment root", ErrUntrusted, cert.Subject.CommonName)
	case cert.NotAfter.After(root.NotAfter):
		return fmt.Errorf("%w: %q outlives the root", ErrUntrusted, cert.Subject.CommonName)
	}
	return nil
}

// TrustPool returns the pool clients verify with: the pinned root and
// each intermediate, after checking that the root signed it as an issuing
// intermediate. The intermediates are anchors in the pool, so every
// Verify function accepts a certificate exactly one step below an
// intermediate as it accepts one below the root; checking them here, once,
// is what makes the chain root → intermediate → certificate. A foreign
// intermediate (another root's, self-signed, an organisation's) is refused
// and the pool is not made.
func TrustPool(root *x509.Certificate, intermediates []*x509.Certificate) (*x509.CertPool, error) {
	if root == nil {
		return nil, fmt.Errorf("%w: no root", ErrUntrusted)
	}
	p := x509.NewCertPool()
	p.AddCert(root)
	for _, c := range intermediates {
		if err := checkIntermediate(root, c); err != nil {
			return nil, err
		}
		p.AddCert(c)
	}
	return p, nil
}

// ParseCertificatesPEM parses a sequence of PEM certificates (as in
// retired.pem, or a chain a server sends).
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %q", ErrMalformed, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(b)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the certificates", ErrMalformed)
	}
	return out, nil
}

// HasIssuingDir says whether dir holds an intermediate (issuing.pem).
func HasIssuingDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, IssuingCertFile))
	return err == nil
}

// LoadIssuingDir loads a CA directory under an offline root: root.pem,
// issuing.pem, issuing.key (0600) and, if present, retired.pem. The root's
// key is neither needed nor looked for.
func LoadIssuingDir(dir string) (*CA, error) {
	rootPEM, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	roots, err := ParseCertificatesPEM(rootPEM)
	if err != nil || len(roots) != 1 {
		return nil, fmt.Errorf("%w: %s must hold one certificate", ErrBadCAKey, RootCertFile)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, IssuingCertFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	keyPEM, err := readPrivateFile(filepath.Join(dir, IssuingKeyFile))
	if err != nil {
		return nil, err
	}
	c, err := Parse(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if err := checkIntermediate(roots[0], c.cert); err != nil {
		return nil, err
	}
	c.root = roots[0]
	if b, err := os.ReadFile(filepath.Join(dir, RetiredFile)); err == nil {
		if c.retired, err = ParseCertificatesPEM(b); err != nil {
			return nil, err
		}
		for _, r := range c.retired {
			if err := checkIntermediate(c.root, r); err != nil {
				return nil, fmt.Errorf("%s: %w", RetiredFile, err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return c, nil
}

// InitOffline creates a deployment under an offline root: the root's key
// is written to rootKeyFile (0600, refused if it exists) — to be moved
// off the machine — and dir receives root.pem, issuing.pem and
// issuing.key. A directory that already holds a CA is refused.
func InitOffline(dir, rootKeyFile, name string, now time.Time) (*CA, error) {
	for _, f := range []string{KeyFile, CertFile, IssuingCertFile, IssuingKeyFile, RootCertFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("ca: %s already holds a CA (%s)", dir, f)
		}
	}
	root, err := Create(name, now)
	if err != nil {
		return nil, err
	}
	inter, err := root.IssueIntermediate(name, now)
	if err != nil {
		return nil, err
	}
	rootKey, err := root.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create directory: %w", err)
	}
	if err := writeExclusive(rootKeyFile, rootKey); err != nil {
		return nil, err
	}
	if err := writeReplace(filepath.Join(dir, RootCertFile), root.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	return inter, saveIssuing(dir, inter)
}

func saveIssuing(dir string, c *CA) error {
	keyPEM, err := c.KeyPEM()
	if err != nil {
		return err
	}
	// The key first: a crash between the two leaves the old certificate
	// with a key that does not match it, which Parse refuses loudly.
	if err := writeReplace(filepath.Join(dir, IssuingKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeReplace(filepath.Join(dir, IssuingCertFile), c.CertPEM(), 0o644)
}

// RotateIntermediate signs a new intermediate with the root (certificate
// root.pem in dir, key from rootKeyPEM), installs it as issuing.pem/.key
// and moves the previous intermediate to the front of retired.pem, where
// clients keep trusting it for the certificates it issued.
func RotateIntermediate(dir string, rootKeyPEM []byte, name string, now time.Time) (*CA, error) {
	rootPEM, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	root, err := Parse(rootPEM, rootKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: the root key does not match %s: %w", RootCertFile, err)
	}
	old, err := LoadIssuingDir(dir)
	if err != nil {
		return nil, err
	}
	inter, err := root.IssueIntermediate(name, now)
	if err != nil {
		return nil, err
	}
	var retired []byte
	for _, c := range old.Intermediates() {
		retired = append(retired, pemCert(c.Raw)...)
	}
	if err := writeReplace(filepath.Join(dir, RetiredFile), retired, 0o644); err != nil {
		return nil, err
	}
	if err := saveIssuing(dir, inter); err != nil {
		return nil, err
	}
	inter.retired = old.Intermediates()
	return inter, nil
}

// IssuerOf returns the certificate that issued cert among the deployment's
// anchors: the root and its issuing intermediates (each checked as
// TrustPool checks it). Certificate statuses and revocation lists of a
// certificate are signed by its issuer, so a verifier checks them against
// what IssuerOf returns. A certificate no anchor signed is ErrUntrusted.
func IssuerOf(cert, root *x509.Certificate, intermediates []*x509.Certificate) (*x509.Certificate, error) {
	if cert == nil || root == nil {
		return nil, fmt.Errorf("%w: no certificate or no root", ErrUntrusted)
	}
	for _, c := range append([]*x509.Certificate{root}, intermediates...) {
		if !bytes.Equal(cert.RawIssuer, c.RawSubject) || cert.CheckSignatureFrom(c) != nil {
			continue
		}
		if c != root {
			if err := checkIntermediate(root, c); err != nil {
				return nil, err
			}
		}
		return c, nil
	}
	return nil, fmt.Errorf("%w: %q was issued by none of the deployment's CA certificates", ErrUntrusted, cert.Subject.CommonName)
}
