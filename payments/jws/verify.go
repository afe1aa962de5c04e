package jws

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
)

// clockSkew is how far a signer's clock may be behind the CA's: the
// buyer fetches the statuses from kanald and signs a moment later, on its
// own clock.
const clockSkew = 5 * time.Minute

// VerifiedOffer is an offer whose signature and certificates checked out.
type VerifiedOffer struct {
	Offer        Offer
	SellerDevice ca.DeviceIdentity
	Membership   ca.Membership
	OrgCert      *x509.Certificate // the organisation certificate that issued Membership
	SellerCert   *x509.Certificate // the seller's device certificate (x5c)
}

// Contract is a verified contract.
type Contract struct {
	ID       string // ContractID
	Offer    VerifiedOffer
	Buyer    ca.DeviceIdentity
	SignedAt time.Time
	OfferJWS string
}

// stringList reads a header member holding n standard-base64 strings.
var stringList = orgsig.StringList

// VerifyOffer checks an offer JWS offline: the signature with the x5c
// device certificate's key, that certificate and the membership
// certificate chaining to roots at the offer's issue time, both naming
// the same device and key, the membership being for the offer's
// organisation, and the offer's content. It does not check expiry or
// revocation, which depend on when the offer is used.
func VerifyOffer(offerJWS string, roots *x509.CertPool) (*VerifiedOffer, error) {
	c, err := orgsig.Parse(offerJWS, MaxJWS, TypeOffer, headerMembership)
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	var o Offer
	if err := decodeStrict(c.Payload, &o); err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	devDER, err := c.VerifyChain(roots, o.IssuedAt)
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	mem, err := stringList(c.Extra, headerMembership, 2)
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	dev, m, err := checkSeller(devDER, mem[0], mem[1], roots, o.IssuedAt)
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	if m.OrgID != o.OrgID {
		return nil, fmt.Errorf("offer: %w: signed for organisation %s, names %s", ErrCertificate, m.OrgID, o.OrgID)
	}
	if m.OrgName != o.OrgName {
		return nil, fmt.Errorf("offer: %w: organisation certificate names %q, the offer %q", ErrCertificate, m.OrgName, o.OrgName)
	}
	orgCert, err := x509.ParseCertificate(mem[1])
	if err != nil {
		return nil, fmt.Errorf("offer: %w: organisation certificate: %v", ErrCertificate, err)
	}
	devCert, err := x509.ParseCertificate(devDER)
	if err != nil {
		return nil, fmt.Errorf("offer: %w: device certificate: %v", ErrCertificate, err)
	}
	return &VerifiedOffer{Offer: o, SellerDevice: dev, Membership: m, OrgCert: orgCert, SellerCert: devCert}, nil
}

// CheckOrgCRL checks the offer's membership certificate against orgCRL,
// the organisation's revocation list of membership certificates (DER,
// from GET /v1/directory/orgs/{id}/crl), which the organisation
// certificate in the offer must have signed, issued at or after the
// offer's issued_at. An offer whose membership is on the list is refused
// whatever the revocation time: its issued_at is chosen by its signer, so
// it cannot show that it was made before the member left.
func (vo *VerifiedOffer) CheckOrgCRL(orgCRL []byte) error {
	at, revoked, err := vo.orgCRL(orgCRL, vo.Offer.IssuedAt)
	if err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	if revoked {
		return fmt.Errorf("offer: %w: the seller's membership of %s was revoked at %s; an offer's issued_at is chosen by its signer",
			ErrRevoked, vo.Offer.OrgID, at.UTC().Format(time.RFC3339))
	}
	return nil
}

func (vo *VerifiedOffer) orgCRL(orgCRL []byte, notBefore time.Time) (time.Time, bool, error) {
	if len(orgCRL) == 0 || len(orgCRL) > ca.MaxCRLSize {
		return time.Time{}, false, fmt.Errorf("%w: organisation list size %d", ErrNoCRL, len(orgCRL))
	}
	list, err := x509.ParseRevocationList(orgCRL)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%w: organisation list: %v", ErrNoCRL, err)
	}
	if list.ThisUpdate.Before(notBefore) {
		return time.Time{}, false, fmt.Errorf("%w: the organisation list was issued %s, before the document was signed",
			ErrNoCRL, list.ThisUpdate.Format(time.RFC3339))
	}
	at, revoked, err := ca.CheckRevoked(orgCRL, vo.OrgCert, vo.Membership.Serial)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%w: organisation list: %v", ErrNoCRL, err)
	}
	return at, revoked, nil
}

func checkSeller(devDER, memDER, orgDER []byte, roots *x509.CertPool, at time.Time) (ca.DeviceIdentity, ca.Membership, error) {
	dev, m, err := orgsig.CheckMember(devDER, memDER, orgDER, roots, at)
	if err != nil {
		return ca.DeviceIdentity{}, ca.Membership{}, fmt.Errorf("seller %w", err)
	}
	if m.OrgKind != ca.OrgMerchant && m.OrgKind != ca.OrgOffice {
		return ca.DeviceIdentity{}, ca.Membership{}, fmt.Errorf("%w: a %s cannot make offers", ErrCertificate, m.OrgKind)
	}
	return dev, m, nil
}

// VerifyOptions configures VerifyContract.
type VerifyOptions struct {
	// CA is the deployment's root certificate: the CA certificate, or the
	// offline root above the issuing intermediates.
	CA *x509.Certificate
	// Intermediates are the deployment's issuing intermediates under an
	// offline root (current first, then retired), each checked against CA
	// (ca.TrustPool); nil when the root issues.
	Intermediates []*x509.Certificate
	// CRL, if set, is the deployment's device revocation list (DER),
	// signed by the root or one of the intermediates, issued at or after
	// the contract was signed, such as the current one from
	// "kanal directory ca --crl". Without it, the certificate statuses
	// embedded in the contract, which the buyer fetched when signing, are
	// used.
	CRL []byte
	// OrgCRL, if set, is the selling organisation's revocation list of
	// membership certificates (DER), issued at or after the contract was
	// signed, such as "kanal directory ca --org-crl ORG". A contract whose
	// seller's membership was revoked at or before signing is refused.
	OrgCRL []byte
}

// VerifyContract checks a contract offline: the buyer's signature and
// certificate (level substantial or higher, valid at signing time), the
// offer inside it as VerifyOffer does, that the buyer is the offer's
// addressee and signed while the offer was valid, and that neither device
// had been revoked when the buyer signed.
func VerifyContract(contractJWS string, opts VerifyOptions) (*Contract, error) {
	if opts.CA == nil {
		return nil, fmt.Errorf("%w: no CA certificate", ErrCertificate)
	}
	roots, err := ca.TrustPool(opts.CA, opts.Intermediates)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	c, err := orgsig.Parse(contractJWS, MaxJWS, TypeContract, headerStatus)
	if err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	var a acceptance
	if err := decodeStrict(c.Payload, &a); err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	if a.Version != 1 || a.SignedAt.IsZero() {
		return nil, fmt.Errorf("contract: %w: version or signed_at", ErrMalformed)
	}
	buyerDER, err := c.VerifyChain(roots, a.SignedAt)
	if err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	vo, err := VerifyOffer(a.Offer, roots)
	if err != nil {
		return nil, err
	}
	buyer, err := ca.VerifyDevice(buyerDER, roots, a.SignedAt)
	if err != nil {
		return nil, fmt.Errorf("contract: %w: buyer device: %w", ErrCertificate, err)
	}
	buyerCert, err := x509.ParseCertificate(buyerDER)
	if err != nil {
		return nil, fmt.Errorf("contract: %w: buyer device: %v", ErrCertificate, err)
	}
	switch {
	case buyer.Level < ca.LevelSubstantial:
		return nil, fmt.Errorf("contract: %w: buyer device has level %s, substantial is required", ErrCertificate, buyer.Level)
	case buyer.AccountID != a.BuyerAccount || buyer.DeviceID != a.BuyerDevice:
		return nil, fmt.Errorf("contract: %w: buyer names differ from the certificate", ErrCertificate)
	case buyer.AccountID != vo.Offer.BuyerAccount:
		return nil, fmt.Errorf("contract: %w: offer is addressed to another account", ErrInvalidOffer)
	case a.SignedAt.Before(vo.Offer.IssuedAt):
		return nil, fmt.Errorf("contract: %w: signed before the offer was issued", ErrInvalidOffer)
	case !a.SignedAt.Before(vo.Offer.ValidUntil):
		return nil, fmt.Errorf("contract: %w: signed after the offer's validity", ErrExpired)
	}
	t := trust{root: opts.CA, intermediates: opts.Intermediates}
	signers := []signer{{vo.SellerDevice, vo.SellerCert}, {buyer, buyerCert}}
	if opts.CRL != nil {
		err = t.checkNotRevoked(opts.CRL, a.SignedAt, signers...)
	} else {
		var statuses [][]byte
		if statuses, err = stringList(c.Extra, headerStatus, 2); err != nil {
			return nil, fmt.Errorf("contract: %w: no embedded certificate statuses: %w", ErrNoCRL, err)
		}
		err = t.checkStatuses(statuses, a.SignedAt, signers...)
	}
	if err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	if opts.OrgCRL != nil {
		at, revoked, err := vo.orgCRL(opts.OrgCRL, a.SignedAt)
		if err != nil {
			return nil, fmt.Errorf("contract: %w", err)
		}
		if revoked && !at.After(a.SignedAt) {
			return nil, fmt.Errorf("contract: %w: the seller's membership was revoked at %s, the contract signed at %s", ErrRevoked,
				at.UTC().Format(time.RFC3339), a.SignedAt.UTC().Format(time.RFC3339))
		}
	}
	return &Contract{ID: ContractID(contractJWS), Offer: *vo, Buyer: buyer, SignedAt: a.SignedAt, OfferJWS: a.Offer}, nil
}

// trust is the deployment's root and its issuing intermediates.
type trust struct {
	root          *x509.Certificate
	intermediates []*x509.Certificate
}

// signer is a device that signed a contract, with its certificate.
type signer struct {
	id   ca.DeviceIdentity
	cert *x509.Certificate
}

// checkNotRevoked refuses the signature when either device certificate
// is on the deployment's device revocation list with a revocation time at
// or before signedAt. kanald's list names every revoked device of the
// deployment, whichever intermediate issued it, and is signed by the
// current issuing CA: it must be signed by the root or one of the
// intermediates. The list, given by the verifier, must have been issued at
// or after signedAt, or it could not know about a revocation just before.
func (t trust) checkNotRevoked(crlDER []byte, signedAt time.Time, signers ...signer) error {
	if len(crlDER) == 0 || len(crlDER) > ca.MaxCRLSize {
		return fmt.Errorf("%w: size %d", ErrNoCRL, len(crlDER))
	}
	list, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoCRL, err)
	}
	var issuer *x509.Certificate
	for _, c := range append([]*x509.Certificate{t.root}, t.intermediates...) {
		if list.CheckSignatureFrom(c) == nil {
			issuer = c
			break
		}
	}
	if issuer == nil {
		return fmt.Errorf("%w: not signed by the deployment's CA", ErrNoCRL)
	}
	if list.ThisUpdate.Before(signedAt) {
		return fmt.Errorf("%w: the list was issued %s, before the contract was signed", ErrNoCRL, list.ThisUpdate.Format(time.RFC3339))
	}
	for _, s := range signers {
		at, revoked, err := ca.CheckRevoked(crlDER, issuer, s.id.Serial)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNoCRL, err)
		}
		if revoked && !at.After(signedAt) {
			return fmt.Errorf("%w: device %s was revoked at %s, the contract signed at %s", ErrRevoked, s.id.DeviceID,
				at.Format(time.RFC3339), signedAt.Format(time.RFC3339))
		}
	}
	return nil
}

// checkStatuses checks one embedded certificate status per device: signed
// by the CA certificate that issued that device's certificate (the root or
// an intermediate, ca.IssuerOf), about that certificate, current at
// signedAt (issued no later than signedAt plus clock skew, next update
// after it), and not revoked at or before signedAt.
func (t trust) checkStatuses(statuses [][]byte, signedAt time.Time, signers ...signer) error {
	if len(statuses) != len(signers) {
		return fmt.Errorf("%w: %d statuses for %d devices", ErrNoCRL, len(statuses), len(signers))
	}
	for i, s := range signers {
		issuer, err := ca.IssuerOf(s.cert, t.root, t.intermediates)
		if err != nil {
			return fmt.Errorf("%w: device %s: %w", ErrCertificate, s.id.DeviceID, err)
		}
		st, err := ca.CheckStatus(statuses[i], issuer, s.id.Serial, signedAt, clockSkew)
		if err != nil {
			return fmt.Errorf("%w: status of device %s: %v", ErrNoCRL, s.id.DeviceID, err)
		}
		if st.Revoked && !st.RevokedAt.After(signedAt) {
			return fmt.Errorf("%w: device %s was revoked at %s, the contract signed at %s", ErrRevoked, s.id.DeviceID,
				st.RevokedAt.Format(time.RFC3339), signedAt.Format(time.RFC3339))
		}
	}
	return nil
}
