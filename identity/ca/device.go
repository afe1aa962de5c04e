package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// DeviceRequest asks the CA to certify a device key.
type DeviceRequest struct {
	// CSR is the DER PKCS#10 request the device signed with its key. Only
	// the public key and the signature are used; the CA sets every other
	// field of the certificate itself.
	CSR       []byte
	AccountID string
	DeviceID  string
	Level     Level
	// NotBefore must be set; a zero NotAfter means NotBefore +
	// DefaultDeviceLifetime. The window may not exceed MaxDeviceLifetime.
	NotBefore, NotAfter time.Time
}

// IssueDevice certifies a device key for an account. The CSR's signature is
// the device's proof that it holds the private key: without it, anyone could
// bind someone else's public key to their account.
func (c *CA) IssueDevice(req DeviceRequest) (*x509.Certificate, error) {
	if err := checkID("account", req.AccountID); err != nil {
		return nil, err
	}
	if err := checkID("device", req.DeviceID); err != nil {
		return nil, err
	}
	if !req.Level.valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidLevel, uint8(req.Level))
	}
	notBefore, notAfter, err := checkValidity(req.NotBefore, req.NotAfter, DefaultDeviceLifetime, MaxDeviceLifetime, c.cert)
	if err != nil {
		return nil, err
	}
	pub, err := parseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	attrs, err := marshalAttributes(enumAttribute(derLevelOfAssurance, int64(req.Level)))
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: req.DeviceID},
		NotBefore:       notBefore,
		NotAfter:        notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:            []*url.URL{kanalURI(uriAccount, req.AccountID), kanalURI(uriDevice, req.DeviceID)},
		ExtraExtensions: []pkix.Extension{attrs},
	}
	return sign(tmpl, c.cert, pub, c.key)
}

// parseCSR checks a device's certificate request and returns its key.
func parseCSR(der []byte) (crypto.PublicKey, error) {
	if len(der) == 0 || len(der) > MaxCSRSize {
		return nil, fmt.Errorf("%w: size %d", ErrBadCSR, len(der))
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	// Check the key type before the signature so that an RSA request is
	// reported as what it is.
	if err := checkDeviceKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w signature: %v", ErrBadCSR, err)
	}
	return csr.PublicKey, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse issued certificate: %w", err)
	}
	return cert, nil
}

// DeviceIdentity is what a verified device certificate says.
type DeviceIdentity struct {
	AccountID string
	DeviceID  string
	Level     Level
	PublicKey crypto.PublicKey // *ecdsa.PublicKey (P-256) or ed25519.PublicKey
	NotBefore time.Time
	NotAfter  time.Time
	Serial    *big.Int
}

// VerifyDevice checks a device certificate offline: it must chain to one of
// roots directly (a certificate issued by an organisation is not a device
// certificate), be valid at at, allow client authentication, carry exactly
// the account and device names and a level of assurance, and certify a
// device key type.
func VerifyDevice(certDER []byte, roots *x509.CertPool, at time.Time) (DeviceIdentity, error) {
	cert, err := parseAndVerify(certDER, nil, roots, at)
	if err != nil {
		return DeviceIdentity{}, err
	}
	return deviceIdentity(cert)
}

func deviceIdentity(cert *x509.Certificate) (DeviceIdentity, error) {
	if err := checkLeafShape(cert); err != nil {
		return DeviceIdentity{}, err
	}
	names, err := parseURIs(cert.URIs, uriAccount, uriDevice)
	if err != nil {
		return DeviceIdentity{}, err
	}
	attrs, err := parseAttributes(cert)
	if err != nil {
		return DeviceIdentity{}, err
	}
	n, ok := readEnumAttribute(attrs, derLevelOfAssurance)
	if !ok || n < 0 || n > 255 || !Level(n).valid() {
		return DeviceIdentity{}, fmt.Errorf("%w: missing or bad level of assurance", ErrMalformed)
	}
	return DeviceIdentity{
		AccountID: names[uriAccount],
		DeviceID:  names[uriDevice],
		Level:     Level(n),
		PublicKey: cert.PublicKey,
		NotBefore: cert.NotBefore,
		NotAfter:  cert.NotAfter,
		Serial:    cert.SerialNumber,
	}, nil
}

// checkLeafShape checks what device and membership certificates share: an
// end entity for digital signatures and client authentication, certifying a
// device key, named only by URIs.
func checkLeafShape(cert *x509.Certificate) error {
	if cert.IsCA {
		return fmt.Errorf("%w: a CA certificate", ErrMalformed)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		return fmt.Errorf("%w: key usage", ErrMalformed)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(cert.UnknownExtKeyUsage) != 0 {
		return fmt.Errorf("%w: extended key usage", ErrMalformed)
	}
	if len(cert.DNSNames) != 0 || len(cert.EmailAddresses) != 0 || len(cert.IPAddresses) != 0 {
		return fmt.Errorf("%w: unexpected names", ErrMalformed)
	}
	return checkDeviceKey(cert.PublicKey)
}

// parseForVerify checks what every verification needs before it starts —
// a time, kanal's own roots, a bounded size — and parses the certificate.
func parseForVerify(certDER []byte, roots *x509.CertPool, at time.Time) (*x509.Certificate, error) {
	if at.IsZero() {
		return nil, fmt.Errorf("%w: zero verification time", ErrInvalidTime)
	}
	if roots == nil {
		// x509 would fall back to the system roots; kanal trusts only its CA.
		return nil, fmt.Errorf("%w: no roots", ErrUntrusted)
	}
	if len(certDER) == 0 || len(certDER) > MaxCertificateSize {
		return nil, fmt.Errorf("%w: size %d", ErrMalformed, len(certDER))
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return cert, nil
}

// parseAndVerify parses a certificate and verifies its chain at at. With a
// nil intermediate the certificate must be issued by a root; otherwise it
// must be issued by exactly that intermediate, which in turn is issued by a
// root.
func parseAndVerify(certDER []byte, intermediate *x509.Certificate, roots *x509.CertPool, at time.Time) (*x509.Certificate, error) {
	cert, err := parseForVerify(certDER, roots, at)
	if err != nil {
		return nil, err
	}
	opts := x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if intermediate != nil {
		opts.Intermediates = x509.NewCertPool()
		opts.Intermediates.AddCert(intermediate)
	}
	chains, err := cert.Verify(opts)
	if err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			return nil, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	// Accept the certificate only through the expected path: directly under
	// a root for device certificates, through the given organisation for
	// memberships. The pool lookup is by name and key, so compare bytes.
	for _, chain := range chains {
		switch {
		case intermediate == nil && len(chain) == 2:
			return cert, nil
		case intermediate != nil && len(chain) == 3 && chain[1].Equal(intermediate):
			return cert, nil
		}
	}
	if intermediate == nil {
		return nil, fmt.Errorf("%w: not issued by the deployment CA", ErrUntrusted)
	}
	return nil, fmt.Errorf("%w", ErrWrongIssuer)
}
