package client

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/payments"
	"github.com/kanal-server/kanal/payments/camt"
	"github.com/kanal-server/kanal/payments/jws"
)

// The seller's side of offers and payment requests, shared by kanal offer
// send, kanal pay request and the web app: what is read from a person,
// checked, built and signed is written once, here.

// ParseEuro reads an amount in euro as cents: "37", "37.5", "37.50", and
// (as people type it in German) "37,50"; no sign, no thousands separator.
func ParseEuro(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if strings.Count(s, ",") == 1 && !strings.Contains(s, ".") {
		s = strings.Replace(s, ",", ".", 1)
	}
	n, err := camt.ParseAmount(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an amount in euro such as 37.50", s)
	}
	return n, nil
}

// ParseItem reads one offer item as a person gives it: the quantity a
// positive whole number, the unit price gross in euro, the VAT rate in
// percent with at most two decimals ("19", "7", "0", "5,5").
func ParseItem(description, quantity, unitPrice, vatPercent string) (jws.Item, error) {
	description = strings.TrimSpace(description)
	if description == "" {
		return jws.Item{}, errors.New("the description is empty")
	}
	q, err := strconv.ParseInt(strings.TrimSpace(quantity), 10, 64)
	if err != nil || q < 1 || q > jws.MaxQuantity {
		return jws.Item{}, fmt.Errorf("quantity %q is not a whole number from 1 to %d", quantity, jws.MaxQuantity)
	}
	price, err := ParseEuro(unitPrice)
	if err != nil {
		return jws.Item{}, err
	}
	if price < 1 {
		return jws.Item{}, errors.New("the unit price must be at least 0.01 euro")
	}
	var vat int64
	if v := strings.TrimSpace(vatPercent); v != "0" {
		// A percentage with at most two decimals is basis points.
		if vat, err = ParseEuro(v); err != nil || vat > jws.MaxVATBasisPoints {
			return jws.Item{}, fmt.Errorf("VAT %q is not a percentage such as 19 or 7", vatPercent)
		}
	}
	return jws.Item{Description: description, Quantity: q, UnitCents: price, VATBasisPoints: vat}, nil
}

// OfferParams is what a seller fills in.
type OfferParams struct {
	OrgID          string
	OrgName        string // the organisation's name; SignOffer takes the directory's
	BuyerAccount   string
	Items          []jws.Item
	Valid          time.Duration // how long it can be accepted, from now
	Terms          string
	HighAboveCents int64 // 0: not set
}

// BuildOffer makes the offer p describes, issued at now (to the second),
// with a fresh offer id and the totals computed, and checks it
// (jws.Offer.Validate): nothing is signed or sent.
func BuildOffer(p OfferParams, now time.Time) (jws.Offer, error) {
	var id [10]byte
	if _, err := rand.Read(id[:]); err != nil {
		return jws.Offer{}, err
	}
	now = now.UTC().Truncate(time.Second)
	o := jws.Offer{Version: 1, OfferID: "of_" + hex.EncodeToString(id[:]), OrgID: p.OrgID, OrgName: p.OrgName,
		BuyerAccount: p.BuyerAccount, Items: p.Items, Currency: "EUR", Terms: p.Terms, IssuedAt: now, ValidUntil: now.Add(p.Valid),
		HighAboveCents: p.HighAboveCents}
	o.TotalCents, o.VATCents = jws.Totals(o.Items)
	if err := o.Validate(); err != nil {
		return jws.Offer{}, err
	}
	return o, nil
}

// SellerDevice is the device that signs an offer: its id, its key and
// its certificate (DER).
type SellerDevice struct {
	DeviceID   string
	Key        crypto.Signer
	DeviceCert []byte
}

// SignOffer signs o as the seller's device, with the membership
// certificate of o.OrgID that the organisation's directory lists for the
// device (only its members sign its offers) and the organisation's
// certificate; o.OrgName becomes the directory's name. It returns the
// offer JWS and the offer as signed; it neither registers nor sends it.
func SignOffer(ctx context.Context, ids *idclient.Client, o jws.Offer, s SellerDevice, roots *x509.CertPool) (string, jws.Offer, error) {
	org, err := ids.DirectoryOrg(ctx, o.OrgID)
	if err != nil {
		return "", o, err
	}
	var memPEM string
	for _, m := range org.Members {
		for _, d := range m.Devices {
			if d.DeviceID == s.DeviceID {
				memPEM = d.MembershipCertificate
			}
		}
	}
	if memPEM == "" {
		return "", o, fmt.Errorf("this device has no membership certificate of %s: only its members sign its offers", o.OrgID)
	}
	memDER, err := pemCert(memPEM)
	if err != nil {
		return "", o, fmt.Errorf("membership certificate: %w", err)
	}
	orgDER, err := pemCert(org.Certificate)
	if err != nil {
		return "", o, fmt.Errorf("organisation certificate: %w", err)
	}
	o.OrgID, o.OrgName = org.OrgID, org.Name
	signed, err := jws.SignOffer(o, jws.Seller{Key: s.Key, DeviceCert: s.DeviceCert, Membership: memDER, OrgCert: orgDER}, roots)
	return signed, o, err
}

func pemCert(p string) ([]byte, error) {
	blk, _ := pem.Decode([]byte(p))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return blk.Bytes, nil
}

// RequestKey is the Idempotency-Key a payment request is created with
// when the person gives none: a hash of the account, the organisation and
// the parameters as given, so that a retry of the same request (after a
// network error, or when sending the chat message failed) is recognised
// by kanald, which answers with the request it made first.
func RequestKey(account, org string, p payments.CreateParams) string {
	b, _ := json.Marshal(struct {
		Account, Org string
		P            payments.CreateParams
	}{account, org, p})
	h := sha256.Sum256(append([]byte("kanal pay request v1\x00"), b...))
	return "cli-" + hex.EncodeToString(h[:20])
}
