package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// OrgRequest asks the CA to certify a verified organisation.
type OrgRequest struct {
	OrgID string
	// Name is the display name citizens see, e.g. "Bürgeramt Musterstadt".
	Name string
	Kind OrgKind
	// NotBefore must be set; a zero NotAfter means NotBefore +
	// DefaultOrgLifetime. The window may not exceed MaxOrgLifetime.
	NotBefore, NotAfter time.Time
}

// OrgAuthority is an organisation's intermediate CA: its certificate and
// private key. It signs membership certificates for the organisation's
// members. An OrgAuthority is safe for concurrent use.
type OrgAuthority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// IssueOrganisation generates a key for an organisation and certifies it as
// an intermediate CA with path length zero: it can sign memberships but no
// further CAs. The organisation's key is generated here, not requested from
// a device, because it belongs to the organisation rather than to any one
// member's device; the identity service keeps it.
func (c *CA) IssueOrganisation(req OrgRequest) (*OrgAuthority, error) {
	if err := checkID("organisation", req.OrgID); err != nil {
		return nil, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	if !req.Kind.valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidOrgKind, uint8(req.Kind))
	}
	notBefore, notAfter, err := checkValidity(req.NotBefore, req.NotAfter, DefaultOrgLifetime, MaxOrgLifetime, c.cert)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate organisation key: %w", err)
	}
	attrs, err := marshalAttributes(enumAttribute(derOrgKind, int64(req.Kind)))
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.OrgID, Organization: []string{req.Name}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{kanalURI(uriOrg, req.OrgID)},
		ExtraExtensions:       []pkix.Extension{attrs},
	}
	cert, err := sign(tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, err
	}
	return &OrgAuthority{cert: cert, key: key}, nil
}

// ParseOrgAuthority loads an organisation authority saved with CertPEM and
// KeyPEM. It checks that the key matches and that the certificate has the
// shape IssueOrganisation gives it, but not its chain, which VerifyMembership
// checks.
func ParseOrgAuthority(certPEM, keyPEM []byte) (*OrgAuthority, error) {
	certDER, err := onePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCAKey, err)
	}
	if _, err := orgInfo(cert); err != nil {
		return nil, err
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: key does not match certificate", ErrBadCAKey)
	}
	return &OrgAuthority{cert: cert, key: key}, nil
}

// Certificate returns the organisation certificate. Callers must not modify it.
func (o *OrgAuthority) Certificate() *x509.Certificate { return o.cert }

// CertPEM returns the organisation certificate in PEM form.
func (o *OrgAuthority) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.cert.Raw})
}

// KeyPEM returns the organisation's private key as PEM PKCS#8.
func (o *OrgAuthority) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(o.key)
	if err != nil {
		return nil, fmt.Errorf("ca: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MembershipRequest asks an organisation authority to certify that a
// member's device speaks for the organisation in a role.
type MembershipRequest struct {
	// DevicePublicKey is the key of the member's device, taken from its
	// verified device certificate, so no second proof of possession is
	// needed.
	DevicePublicKey crypto.PublicKey
	AccountID       string
	DeviceID        string
	Role            string
	// NotBefore must be set; a zero NotAfter means NotBefore +
	// DefaultMembershipLifetime. The window may not exceed
	// MaxMembershipLifetime nor the organisation certificate's.
	NotBefore, NotAfter time.Time
}

// IssueMembership certifies a member's device for the organisation.
func (o *OrgAuthority) IssueMembership(req MembershipRequest) (*x509.Certificate, error) {
	if err := checkID("account", req.AccountID); err != nil {
		return nil, err
	}
	if err := checkID("device", req.DeviceID); err != nil {
		return nil, err
	}
	if err := checkRole(req.Role); err != nil {
		return nil, err
	}
	if err := checkDeviceKey(req.DevicePublicKey); err != nil {
		return nil, err
	}
	notBefore, notAfter, err := checkValidity(req.NotBefore, req.NotAfter, DefaultMembershipLifetime, MaxMembershipLifetime, o.cert)
	if err != nil {
		return nil, err
	}
	org, err := orgInfo(o.cert)
	if err != nil {
		return nil, err
	}
	attrs, err := marshalAttributes(utf8Attribute(derOrgRole, req.Role))
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   req.DeviceID,
			Organization: []string{org.name},
		},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{
			kanalURI(uriAccount, req.AccountID),
			kanalURI(uriDevice, req.DeviceID),
			kanalURI(uriOrg, org.id),
		},
		ExtraExtensions: []pkix.Extension{attrs},
	}
	return sign(tmpl, o.cert, req.DevicePublicKey, o.key)
}

// RevocationList signs a CRL of membership certificates, as
// (*CA).RevocationList does for the root.
func (o *OrgAuthority) RevocationList(entries []Revoked, number *big.Int, now, next time.Time) ([]byte, error) {
	return revocationList(o.cert, o.key, entries, number, now, next)
}

type org struct {
	id   string
	name string
	kind OrgKind
}

// orgInfo reads and checks the identity in an organisation certificate.
func orgInfo(cert *x509.Certificate) (org, error) {
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.MaxPathLen != 0 || !cert.MaxPathLenZero ||
		cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return org{}, fmt.Errorf("%w: not an organisation CA", ErrMalformed)
	}
	if len(cert.DNSNames) != 0 || len(cert.EmailAddresses) != 0 || len(cert.IPAddresses) != 0 {
		return org{}, fmt.Errorf("%w: unexpected names", ErrMalformed)
	}
	names, err := parseURIs(cert.URIs, uriOrg)
	if err != nil {
		return org{}, err
	}
	if len(cert.Subject.Organization) != 1 || checkName(cert.Subject.Organization[0]) != nil {
		return org{}, fmt.Errorf("%w: organisation name", ErrMalformed)
	}
	attrs, err := parseAttributes(cert)
	if err != nil {
		return org{}, err
	}
	n, ok := readEnumAttribute(attrs, derOrgKind)
	if !ok || n < 0 || n > 255 || !OrgKind(n).valid() {
		return org{}, fmt.Errorf("%w: missing or bad organisation kind", ErrMalformed)
	}
	return org{id: names[uriOrg], name: cert.Subject.Organization[0], kind: OrgKind(n)}, nil
}

// Membership is what a verified membership certificate says.
type Membership struct {
	OrgID     string
	OrgKind   OrgKind
	OrgName   string
	AccountID string
	DeviceID  string
	Role      string
	PublicKey crypto.PublicKey // the member device's key
	NotBefore time.Time
	NotAfter  time.Time
	Serial    *big.Int
	OrgSerial *big.Int // serial of the organisation certificate, for its CRL
}

// VerifyMembership checks a membership certificate offline: it must be
// issued by the organisation certificate orgDER, which must be issued by one
// of roots, both valid at at; the organisation certificate must name the
// organisation and its kind, the membership the same organisation, an
// account, a device and a role.
func VerifyMembership(membershipDER, orgDER []byte, roots *x509.CertPool, at time.Time) (Membership, error) {
	if len(orgDER) == 0 || len(orgDER) > MaxCertificateSize {
		return Membership{}, fmt.Errorf("%w: organisation certificate size %d", ErrMalformed, len(orgDER))
	}
	orgCert, err := x509.ParseCertificate(orgDER)
	if err != nil {
		return Membership{}, fmt.Errorf("%w: organisation certificate: %v", ErrMalformed, err)
	}
	o, err := orgInfo(orgCert)
	if err != nil {
		return Membership{}, err
	}
	cert, err := parseAndVerify(membershipDER, orgCert, roots, at)
	if err != nil {
		return Membership{}, err
	}
	if err := checkLeafShape(cert); err != nil {
		return Membership{}, err
	}
	names, err := parseURIs(cert.URIs, uriAccount, uriDevice, uriOrg)
	if err != nil {
		return Membership{}, err
	}
	if names[uriOrg] != o.id {
		return Membership{}, fmt.Errorf("%w: names organisation %q", ErrWrongIssuer, names[uriOrg])
	}
	attrs, err := parseAttributes(cert)
	if err != nil {
		return Membership{}, err
	}
	role, ok := readUTF8Attribute(attrs, derOrgRole)
	if !ok || !ValidID(role) {
		return Membership{}, fmt.Errorf("%w: missing or bad role", ErrMalformed)
	}
	return Membership{
		OrgID:     o.id,
		OrgKind:   o.kind,
		OrgName:   o.name,
		AccountID: names[uriAccount],
		DeviceID:  names[uriDevice],
		Role:      role,
		PublicKey: cert.PublicKey,
		NotBefore: cert.NotBefore,
		NotAfter:  cert.NotAfter,
		Serial:    cert.SerialNumber,
		OrgSerial: orgCert.SerialNumber,
	}, nil
}

// CheckSameDevice reports whether a device identity and a membership name the
// same account, device and key. A client needs this before it shows a
// message signed by a device as coming from the organisation: a membership
// alone says nothing about who holds the signing device, and a device
// certificate alone says nothing about the organisation.
func CheckSameDevice(d DeviceIdentity, m Membership) error {
	if d.AccountID != m.AccountID || d.DeviceID != m.DeviceID {
		return fmt.Errorf("%w: ids differ", ErrMismatch)
	}
	pub, ok := d.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(m.PublicKey) {
		return fmt.Errorf("%w: keys differ", ErrMismatch)
	}
	return nil
}
