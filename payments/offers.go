package payments

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/payments/jws"
)

// OfferInfo is what kanald keeps of a registered offer.
type OfferInfo struct {
	ID            string    `json:"id"` // jws.ContractID of the offer JWS: its SHA-256 in hex
	OfferID       string    `json:"offer_id"`
	OrgID         string    `json:"org_id"`
	SellerAccount string    `json:"seller_account"`
	SellerDevice  string    `json:"seller_device"`
	BuyerAccount  string    `json:"buyer_account"`
	TotalCents    int64     `json:"total_cents"`
	IssuedAt      time.Time `json:"issued_at"`
	ValidUntil    time.Time `json:"valid_until"`
	RegisteredAt  time.Time `json:"registered_at"`
}

// RegisterOfferRequest is the body of POST /v1/offers.
type RegisterOfferRequest struct {
	Offer string `json:"offer"` // compact JWS
}

// RegisterOffer registers an offer as its seller sends it. The caller must
// be the signing device, with a substantial session; the offer must
// verify, its issued_at must be within MaxClockSkew of the server's clock,
// and the seller must be a current member with the membership's role, with
// current (unexpired, unrevoked) device and membership certificates.
// Registering the same offer again returns it.
func (s *Service) RegisterOffer(ctx context.Context, actor Actor, offer string) (*OfferInfo, bool, error) {
	if actor.Level < ca.LevelSubstantial {
		return nil, false, fmt.Errorf("payments.offer: %w", ErrLevel)
	}
	if len(offer) == 0 || len(offer) > jws.MaxJWS {
		return nil, false, invalid("offer must be a compact JWS of at most %d bytes", jws.MaxJWS)
	}
	vo, err := jws.VerifyOffer(offer, s.roots)
	if err != nil {
		return nil, false, invalid("%v", err)
	}
	if actor.AccountID != vo.SellerDevice.AccountID || actor.DeviceID != vo.SellerDevice.DeviceID {
		return nil, false, fmt.Errorf("payments.offer: %w: only the signing device registers its offer", ErrForbidden)
	}
	now := s.now()
	if d := vo.Offer.IssuedAt.Sub(now); d > MaxClockSkew || d < -MaxClockSkew {
		return nil, false, invalid("issued_at %s is more than %v from the server's clock (%s)",
			vo.Offer.IssuedAt.UTC().Format(time.RFC3339), MaxClockSkew, now.UTC().Format(time.RFC3339))
	}
	if err := s.checkSeller(ctx, vo); err != nil {
		return nil, false, fmt.Errorf("payments.offer: %w: %w", ErrForbidden, err)
	}
	o := vo.Offer
	info := OfferInfo{ID: jws.ContractID(offer), OfferID: o.OfferID, OrgID: o.OrgID, SellerAccount: vo.SellerDevice.AccountID,
		SellerDevice: vo.SellerDevice.DeviceID, BuyerAccount: o.BuyerAccount, TotalCents: o.TotalCents,
		IssuedAt: o.IssuedAt.UTC(), ValidUntil: o.ValidUntil.UTC(), RegisteredAt: time.Unix(now.Unix(), 0).UTC()}
	replay := false
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if existing, err := loadOffer(ctx, tx, info.ID); err == nil {
			info, replay = *existing, true
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO payments_offers (id, offer_id, org_id, seller_account, seller_device, buyer_account,
			total_cents, issued_at, valid_until, registered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			info.ID, info.OfferID, info.OrgID, info.SellerAccount, info.SellerDevice, info.BuyerAccount, info.TotalCents,
			info.IssuedAt.Unix(), info.ValidUntil.Unix(), info.RegisteredAt.Unix())
		if db.IsUniqueViolation(err) {
			return fmt.Errorf("%w: offer %s of %s is already registered with other content", ErrDuplicate, info.OfferID, info.OrgID)
		} else if err != nil {
			return err
		}
		return audit(ctx, tx, now.Unix(), actor, "offer.register", info.OrgID, info.ID,
			fmt.Sprintf("offer %s to %s, total %d cents", info.OfferID, info.BuyerAccount, info.TotalCents))
	})
	if err != nil {
		return nil, false, wrap("payments.offer", err)
	}
	return &info, replay, nil
}

// checkSeller asks identity whether the offer's signer is a current
// member with current certificates.
func (s *Service) checkSeller(ctx context.Context, vo *jws.VerifiedOffer) error {
	if err := s.certs.CheckDeviceCertificate(ctx, vo.SellerDevice.Serial); err != nil {
		return fmt.Errorf("seller device: %w", err)
	}
	m := vo.Membership
	if err := s.certs.CheckMembership(ctx, m.OrgID, m.AccountID, m.DeviceID, m.Role, m.Serial); err != nil {
		return fmt.Errorf("seller membership: %w", err)
	}
	return nil
}

// offerRegistered refuses a contract whose offer kanald never registered.
func (s *Service) offerRegistered(ctx context.Context, offerJWS string) error {
	if _, err := loadOffer(ctx, readDB{s.db}, jws.ContractID(offerJWS)); errors.Is(err, ErrNotFound) {
		return fmt.Errorf("payments.contract: %w: its offer was never registered by the seller", ErrContract)
	} else if err != nil {
		return err
	}
	return nil
}

func loadOffer(ctx context.Context, q querier, id string) (*OfferInfo, error) {
	var o OfferInfo
	var issued, until, registered int64
	err := q.QueryRowContext(ctx, `SELECT id, offer_id, org_id, seller_account, seller_device, buyer_account, total_cents,
		issued_at, valid_until, registered_at FROM payments_offers WHERE id = $1`, id).
		Scan(&o.ID, &o.OfferID, &o.OrgID, &o.SellerAccount, &o.SellerDevice, &o.BuyerAccount, &o.TotalCents, &issued, &until, &registered)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("offer %s: %w", id, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	o.IssuedAt, o.ValidUntil, o.RegisteredAt = time.Unix(issued, 0).UTC(), time.Unix(until, 0).UTC(), time.Unix(registered, 0).UTC()
	return &o, nil
}
