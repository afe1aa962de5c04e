// Package jws signs and verifies kanal's offers and contracts: a merchant's
// offer is a compact JWS signed by the seller's device key, carrying the
// device certificate (x5c) and the membership certificate that ties the
// device to the merchant organisation; a contract is the buyer's JWS over
// the exact bytes of that offer JWS, carrying the buyer's device
// certificate and the CA's signed statuses (OCSP) of both devices that the
// buyer fetched when signing. Anyone
// holding the deployment's CA certificate can verify both offline.
//
// The compact JWS, and the check of a member's certificates, are
// identity/orgsig's, which form templates share.
package jws

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
)

// Limits of an offer.
const (
	MaxItems          = 100
	MaxDescription    = 200   // characters per item
	MaxTerms          = 4000  // characters
	MaxQuantity       = 10000 // per item
	MaxAmountCents    = 99999999999
	MaxVATBasisPoints = 10000    // 100 %
	MaxJWS            = 32 << 10 // as messaging/kind.MaxJWS: an offer or contract must fit its message
	MaxValidity       = 366 * 24 * time.Hour
)

// Errors, each wrapped with details.
var (
	ErrInvalidOffer = errors.New("invalid offer")
	ErrExpired      = errors.New("offer has expired")
	ErrSignature    = orgsig.ErrSignature
	ErrCertificate  = orgsig.ErrCertificate
	ErrRevoked      = errors.New("signing device revoked")
	ErrNoCRL        = errors.New("no usable revocation list")
	ErrMalformed    = orgsig.ErrMalformed
)

// Item is one line of an offer. Amounts are integer euro cents; the unit
// price is gross (VAT included), as prices shown to consumers are.
type Item struct {
	Description    string `json:"description"`
	Quantity       int64  `json:"quantity"`
	UnitCents      int64  `json:"unit_cents"`
	VATBasisPoints int64  `json:"vat_basis_points"` // 1900 = 19 %
}

// Offer is what a seller signs.
type Offer struct {
	Version      int       `json:"v"` // 1
	OfferID      string    `json:"offer_id"`
	OrgID        string    `json:"org_id"`
	OrgName      string    `json:"org_name"`
	BuyerAccount string    `json:"buyer_account"`
	Items        []Item    `json:"items"`
	Currency     string    `json:"currency"` // EUR
	TotalCents   int64     `json:"total_cents"`
	VATCents     int64     `json:"vat_cents"` // VAT contained in the total
	Terms        string    `json:"terms"`
	IssuedAt     time.Time `json:"issued_at"`
	ValidUntil   time.Time `json:"valid_until"`
	// HighAboveCents, set by the seller (0: not set), is the total above
	// which kanald registers the buyer's contract only from a session at
	// level high (docs/payments.md).
	HighAboveCents int64 `json:"high_above_cents,omitempty"`
}

// Totals computes the gross total and the VAT it contains. Each line's VAT
// is rounded half up to the cent: gross × rate / (1 + rate).
func Totals(items []Item) (total, vat int64) {
	for _, it := range items {
		line := it.Quantity * it.UnitCents
		total += line
		d := 10000 + it.VATBasisPoints
		vat += (2*line*it.VATBasisPoints + d) / (2 * d)
	}
	return total, vat
}

// Validate checks an offer's fields and that its totals add up.
func (o *Offer) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOffer}, args...)...)
	}
	switch {
	case o.Version != 1:
		return bad("version %d", o.Version)
	case !ca.ValidID(o.OfferID):
		return bad("offer_id")
	case !ca.ValidID(o.OrgID):
		return bad("org_id")
	case !ca.ValidID(o.BuyerAccount):
		return bad("buyer_account")
	case o.Currency != "EUR":
		return bad("currency must be EUR")
	case len(o.Items) == 0 || len(o.Items) > MaxItems:
		return bad("1 to %d items", MaxItems)
	case o.HighAboveCents < 0 || o.HighAboveCents > MaxAmountCents:
		return bad("high_above_cents must be 0..%d", int64(MaxAmountCents))
	case o.IssuedAt.IsZero() || !o.ValidUntil.After(o.IssuedAt) || o.ValidUntil.Sub(o.IssuedAt) > MaxValidity:
		return bad("valid_until must follow issued_at by at most %v", MaxValidity)
	}
	if err := checkText("org_name", o.OrgName, 200, true); err != nil {
		return bad("%v", err)
	}
	if err := checkText("terms", o.Terms, MaxTerms, false); err != nil {
		return bad("%v", err)
	}
	for i, it := range o.Items {
		switch {
		case it.Quantity < 1 || it.Quantity > MaxQuantity:
			return bad("item %d: quantity must be 1..%d", i+1, MaxQuantity)
		case it.UnitCents < 1 || it.UnitCents > MaxAmountCents:
			return bad("item %d: unit_cents must be 1..%d", i+1, MaxAmountCents)
		case it.VATBasisPoints < 0 || it.VATBasisPoints > MaxVATBasisPoints:
			return bad("item %d: vat_basis_points must be 0..%d", i+1, MaxVATBasisPoints)
		}
		if err := checkText("description", it.Description, MaxDescription, true); err != nil {
			return bad("item %d: %v", i+1, err)
		}
	}
	// Quantities and prices are bounded, so the products cannot overflow;
	// the sum of 100 lines cannot either.
	total, vat := Totals(o.Items)
	switch {
	case total > MaxAmountCents:
		return bad("total exceeds %d cents", int64(MaxAmountCents))
	case o.TotalCents != total:
		return bad("total_cents is %d, the items add up to %d", o.TotalCents, total)
	case o.VATCents != vat:
		return bad("vat_cents is %d, the items give %d", o.VATCents, vat)
	}
	return nil
}

func checkText(field, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fmt.Errorf("%s is required", field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", field)
	case utf8.RuneCountInString(s) > max:
		return fmt.Errorf("%s is longer than %d characters", field, max)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' || r == 0x7f {
			return fmt.Errorf("%s contains a control character", field)
		}
	}
	return nil
}

// decodeStrict decodes exactly one JSON value with unknown fields refused:
// a signed document means exactly what its known fields say.
var decodeStrict = orgsig.DecodeStrict
