package jws

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
)

// Media types in the "typ" header keep an offer from being taken for a
// contract and the other way round.
const (
	TypeOffer    = "kanal-offer+jws"
	TypeContract = "kanal-contract+jws"
)

// Header names of kanal's own protected header parameters.
const (
	headerMembership = orgsig.HeaderMembership // [membership DER, organisation DER], standard base64
	headerStatus     = "kanal_status"          // [seller device status, buyer device status]: DER OCSP responses of the CA, standard base64
)

// Seller is the device that signs an offer for its organisation.
type Seller struct {
	Key        crypto.Signer // the device key: *ecdsa.PrivateKey (P-256) or ed25519.PrivateKey
	DeviceCert []byte        // DER device certificate
	Membership []byte        // DER membership certificate for the offer's organisation
	OrgCert    []byte        // DER organisation certificate that issued Membership
}

// Buyer is the device that countersigns.
type Buyer struct {
	Key        crypto.Signer
	DeviceCert []byte
	// SellerStatus and BuyerStatus are the CA's current signed statuses
	// (DER OCSP responses, from POST /v1/ocsp) of the seller's and the
	// buyer's device certificates. They are embedded in the contract so
	// that a verifier without network access knows that neither device
	// was revoked at signing time; unlike a CRL, their size does not grow
	// with the number of revocations.
	SellerStatus, BuyerStatus []byte
}

// SignOffer validates o and signs it as the seller's device. The device
// and membership certificates must be valid at o.IssuedAt and name the
// signing key, and the membership must be for o.OrgID; the caller checks
// nothing, so a mistake shows here rather than at the buyer.
func SignOffer(o Offer, s Seller, roots *x509.CertPool) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	dev, m, err := checkSeller(s.DeviceCert, s.Membership, s.OrgCert, roots, o.IssuedAt)
	if err != nil {
		return "", err
	}
	if m.OrgID != o.OrgID {
		return "", fmt.Errorf("%w: membership is for organisation %s, not %s", ErrCertificate, m.OrgID, o.OrgID)
	}
	if err := sameKey(dev.PublicKey, s.Key.Public()); err != nil {
		return "", err
	}
	payload, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("jws: encode offer: %w", err)
	}
	return orgsig.Sign(s.Key, TypeOffer, s.DeviceCert, headerMembership,
		[]string{base64.StdEncoding.EncodeToString(s.Membership), base64.StdEncoding.EncodeToString(s.OrgCert)}, payload)
}

// acceptance is the payload of a contract: the buyer signs the offer JWS
// exactly as received, byte for byte, together with who signs and when.
type acceptance struct {
	Version      int       `json:"v"` // 1
	Offer        string    `json:"offer"`
	BuyerAccount string    `json:"buyer_account"`
	BuyerDevice  string    `json:"buyer_device"`
	SignedAt     time.Time `json:"signed_at"`
}

// Countersign verifies the offer (signature, certificates at its issue
// time, addressed to the buyer's account, still valid at now) and signs
// it as the buyer's device, returning the contract JWS. The buyer's device
// certificate must carry level substantial or higher. caCert is the
// deployment's root; under an offline root, intermediates are its issuing
// intermediates (current first), as in VerifyOptions.
func Countersign(offerJWS string, b Buyer, caCert *x509.Certificate, now time.Time, intermediates ...*x509.Certificate) (string, error) {
	roots, err := ca.TrustPool(caCert, intermediates)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	vo, err := VerifyOffer(offerJWS, roots)
	if err != nil {
		return "", err
	}
	if !now.Before(vo.Offer.ValidUntil) {
		return "", fmt.Errorf("%w: valid until %s", ErrExpired, vo.Offer.ValidUntil.Format(time.RFC3339))
	}
	now = now.UTC().Truncate(time.Second)
	buyer, err := ca.VerifyDevice(b.DeviceCert, roots, now)
	if err != nil {
		return "", fmt.Errorf("%w: buyer device: %w", ErrCertificate, err)
	}
	if buyer.Level < ca.LevelSubstantial {
		return "", fmt.Errorf("%w: countersigning needs level substantial, the device has %s", ErrCertificate, buyer.Level)
	}
	if buyer.AccountID != vo.Offer.BuyerAccount {
		return "", fmt.Errorf("%w: the offer is addressed to account %s", ErrInvalidOffer, vo.Offer.BuyerAccount)
	}
	if err := sameKey(buyer.PublicKey, b.Key.Public()); err != nil {
		return "", err
	}
	// The embedded statuses must speak for now: checked as a verifier
	// will check them.
	buyerCert, err := x509.ParseCertificate(b.DeviceCert)
	if err != nil {
		return "", fmt.Errorf("%w: buyer device: %v", ErrCertificate, err)
	}
	t := trust{root: caCert, intermediates: intermediates}
	if err := t.checkStatuses([][]byte{b.SellerStatus, b.BuyerStatus}, now, signer{vo.SellerDevice, vo.SellerCert}, signer{buyer, buyerCert}); err != nil {
		return "", err
	}
	payload, err := json.Marshal(acceptance{Version: 1, Offer: offerJWS, BuyerAccount: buyer.AccountID, BuyerDevice: buyer.DeviceID, SignedAt: now})
	if err != nil {
		return "", fmt.Errorf("jws: encode contract: %w", err)
	}
	return orgsig.Sign(b.Key, TypeContract, b.DeviceCert, headerStatus,
		[]string{base64.StdEncoding.EncodeToString(b.SellerStatus), base64.StdEncoding.EncodeToString(b.BuyerStatus)}, payload)
}

// ContractID is a contract's identity: the SHA-256 of its compact JWS,
// in hex. kanald registers contracts under it.
func ContractID(contractJWS string) string {
	h := sha256.Sum256([]byte(contractJWS))
	return hex.EncodeToString(h[:])
}

var sameKey = orgsig.SameKey
