package client

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/payments/jws"
)

// Countersign is the buyer's acceptance of an offer that jws.VerifyOffer
// has verified (and the buyer has confirmed): it asks the selling
// organisation for the signed status of the seller's membership and
// refuses a revoked seller; it asks the CA for the signed statuses of the
// seller's and the buyer's device certificates, which go into the
// contract so that it verifies offline; and it countersigns the exact
// offer bytes with b.Key. It neither registers nor sends the contract.
// kanal offer sign and the web app both accept offers through it.
// caCert is the deployment's root; under an offline root, intermediates
// are its issuing intermediates (current first): each device's status is
// asked of, and checked against, the one that issued its certificate.
func Countersign(ctx context.Context, ids *idclient.Client, offerJWS string, vo *jws.VerifiedOffer, b jws.Buyer,
	caCert *x509.Certificate, now time.Time, intermediates ...*x509.Certificate) (string, error) {
	ms, _, err := ids.MembershipStatus(ctx, vo.Offer.OrgID, &x509.Certificate{SerialNumber: vo.Membership.Serial}, vo.OrgCert, now)
	if err != nil {
		return "", fmt.Errorf("the seller's membership status: %w", err)
	}
	if ms.Revoked {
		return "", fmt.Errorf("the seller's membership of %s was revoked at %s: not countersigning", vo.Offer.OrgName,
			ms.RevokedAt.UTC().Format(time.RFC3339))
	}
	own, err := x509.ParseCertificate(b.DeviceCert)
	if err != nil {
		return "", fmt.Errorf("this device's certificate: %w", err)
	}
	sellerIssuer, err := ca.IssuerOf(vo.SellerCert, caCert, intermediates)
	if err != nil {
		return "", fmt.Errorf("the seller's certificate: %w", err)
	}
	ownIssuer, err := ca.IssuerOf(own, caCert, intermediates)
	if err != nil {
		return "", fmt.Errorf("this device's certificate: %w", err)
	}
	if _, b.SellerStatus, err = ids.CertificateStatus(ctx, vo.SellerCert, sellerIssuer, now); err != nil {
		return "", fmt.Errorf("the seller's certificate status: %w", err)
	}
	if _, b.BuyerStatus, err = ids.CertificateStatus(ctx, own, ownIssuer, now); err != nil {
		return "", fmt.Errorf("this device's certificate status: %w", err)
	}
	return jws.Countersign(offerJWS, b, caCert, now, intermediates...)
}
