package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// The notary is the deployment's server signing key. It signs what kanal
// itself states — the head of a survey's bulletin board, a tally result —
// so that anyone holding only ca.pem can check such a statement offline.
//
// It is an Ed25519 key kept beside ca.key (notary.key, mode 0600) and
// created on first use; every node of a deployment shares it because they
// share the CA directory. Its certificate (notary.pem) is issued by the
// deployment CA directly, names the key kanal:server:notary and allows
// digital signatures only, so no device or membership certificate can pass
// for it and it cannot pass for them (they must carry client
// authentication and an account).

// File names of the notary inside the CA directory.
const (
	NotaryKeyFile  = "notary.key"
	NotaryCertFile = "notary.pem"
)

// Lifetimes of the notary certificate. The key stays; the certificate is
// re-issued for it when less than NotaryRenewBefore of its life is left.
const (
	NotaryLifetime    = 2 * 365 * 24 * time.Hour
	NotaryRenewBefore = 90 * 24 * time.Hour
)

// notaryURI names the notary in its certificate.
const uriServer, notaryName = "server", "notary"

// ErrBadNotarySignature is returned by VerifyNotarized for a signature that
// does not verify.
var ErrBadNotarySignature = errors.New("ca: bad notary signature")

// Notary signs statements for the deployment. It is safe for concurrent use.
type Notary struct {
	key  ed25519.PrivateKey
	cert *x509.Certificate
}

// Notary loads the deployment's notary from dir, the CA directory, creating
// its key on first use and (re-)issuing its certificate when it is missing,
// not issued by c, or close to expiry. Racing callers on one directory end
// with the same key: the key file is installed with a link that fails if
// one already exists, and the loser reads the winner's.
func (c *CA) Notary(dir string, now time.Time) (*Notary, error) {
	if now.IsZero() {
		return nil, fmt.Errorf("%w: zero now", ErrInvalidTime)
	}
	keyPath := filepath.Join(dir, NotaryKeyFile)
	key, err := loadNotaryKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		_, fresh, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("ca: notary key: %w", gerr)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(fresh)
		if merr != nil {
			return nil, fmt.Errorf("ca: notary key: %w", merr)
		}
		if werr := writeExclusive(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); werr != nil && !errors.Is(werr, fs.ErrExist) {
			return nil, werr
		}
		key, err = loadNotaryKey(keyPath)
	}
	if err != nil {
		return nil, err
	}
	certPath := filepath.Join(dir, NotaryCertFile)
	if b, err := os.ReadFile(certPath); err == nil {
		if cert, err := parseNotaryCertPEM(b); err == nil && c.isNotaryCert(cert, key, now) {
			return &Notary{key: key, cert: cert}, nil
		}
	}
	cert, err := c.issueNotary(key, now)
	if err != nil {
		return nil, err
	}
	// Nodes starting together each issue one; the first written wins and
	// the others take it, so every node signs with the same certificate.
	// An existing certificate that is due for renewal is replaced.
	err = writeExclusiveMode(certPath, pemCert(cert.Raw), 0o644)
	if errors.Is(err, fs.ErrExist) {
		if b, rerr := os.ReadFile(certPath); rerr == nil {
			if won, perr := parseNotaryCertPEM(b); perr == nil && c.isNotaryCert(won, key, now) {
				return &Notary{key: key, cert: won}, nil
			}
		}
		err = writeReplace(certPath, pemCert(cert.Raw), 0o644)
	}
	if err != nil {
		return nil, err
	}
	return &Notary{key: key, cert: cert}, nil
}

func loadNotaryKey(path string) (ed25519.PrivateKey, error) {
	b, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := parsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", path, err)
	}
	key, ok := signer.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds %T, want Ed25519", ErrUnsupportedKey, path, signer)
	}
	return key, nil
}

func parseNotaryCertPEM(b []byte) (*x509.Certificate, error) {
	der, err := onePEM(b, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// isNotaryCert reports whether cert is a current notary certificate of c
// for key that need not be renewed yet.
func (c *CA) isNotaryCert(cert *x509.Certificate, key ed25519.PrivateKey, now time.Time) bool {
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(key.Public()) || cert.CheckSignatureFrom(c.cert) != nil {
		return false
	}
	return !now.Before(cert.NotBefore) && now.Add(NotaryRenewBefore).Before(cert.NotAfter)
}

func (c *CA) issueNotary(key ed25519.PrivateKey, now time.Time) (*x509.Certificate, error) {
	notBefore := now.Add(-time.Hour)
	notAfter := now.Add(NotaryLifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	if notBefore.Before(c.cert.NotBefore) {
		notBefore = c.cert.NotBefore
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "kanal server notary"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         []*url.URL{kanalURI(uriServer, notaryName)},
	}
	return sign(tmpl, c.cert, key.Public(), c.key)
}

// Certificate returns the notary certificate. Callers must not modify it.
func (n *Notary) Certificate() *x509.Certificate { return n.cert }

// CertPEM returns the notary certificate in PEM form, as published beside
// every signed statement.
func (n *Notary) CertPEM() []byte { return pemCert(n.cert.Raw) }

// Sign signs msg for purpose, a short fixed name of what is being stated
// ("surveys.board-head", "payments.receipt"). The purpose is part of the
// signed bytes, so a signature for one kind of statement never verifies as
// another.
func (n *Notary) Sign(purpose string, msg []byte) []byte {
	return ed25519.Sign(n.key, notaryMessage(purpose, msg))
}

func notaryMessage(purpose string, msg []byte) []byte {
	out := make([]byte, 0, len("kanal notary v1")+len(purpose)+len(msg)+2)
	out = append(out, "kanal notary v1"...)
	out = append(out, 0)
	out = append(out, purpose...)
	out = append(out, 0)
	return append(out, msg...)
}

// VerifyNotarized checks offline that sig is the deployment notary's
// signature of msg for purpose: certDER must be a notary certificate issued
// directly by one of roots and valid at at (the time the statement claims
// to have been made).
func VerifyNotarized(certDER []byte, roots *x509.CertPool, at time.Time, purpose string, msg, sig []byte) error {
	pub, err := VerifyNotary(certDER, roots, at)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, notaryMessage(purpose, msg), sig) {
		return ErrBadNotarySignature
	}
	return nil
}

// VerifyNotary checks a notary certificate and returns its key.
func VerifyNotary(certDER []byte, roots *x509.CertPool, at time.Time) (ed25519.PublicKey, error) {
	cert, err := parseForVerify(certDER, roots, at)
	if err != nil {
		return nil, err
	}
	if cert.IsCA || cert.KeyUsage != x509.KeyUsageDigitalSignature || len(cert.ExtKeyUsage) != 0 || len(cert.UnknownExtKeyUsage) != 0 {
		return nil, fmt.Errorf("%w: not a notary certificate", ErrMalformed)
	}
	names, err := parseURIs(cert.URIs, uriServer)
	if err != nil || names[uriServer] != notaryName {
		return nil, fmt.Errorf("%w: not a notary certificate", ErrMalformed)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: notary key %T", ErrUnsupportedKey, cert.PublicKey)
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			return nil, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	for _, chain := range chains {
		if len(chain) == 2 {
			return pub, nil
		}
	}
	return nil, fmt.Errorf("%w: not issued by the deployment CA", ErrUntrusted)
}
