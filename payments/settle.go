package payments

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
)

// Settlement is money a provider reports as received for a request.
type Settlement struct {
	Provider    string
	EventID     string // the provider's unique event id: a second delivery changes nothing
	RequestID   string
	PaymentID   string // the provider's payment id
	AmountCents int64
	FeeCents    int64 // the provider's charge, kept back from the payout
	Currency    string
}

// settle records a payment: the event id is stored first, so the same
// event delivered twice, even at the same time, moves the money once; the
// request moves from open to paid only if it is open and the amount is the
// amount asked for; the ledger moves the receivable to the provider's
// clearing account (and the provider's fee to its expense account).
// duplicate reports an event already processed.
func (s *Service) settle(ctx context.Context, st Settlement) (r *Request, duplicate bool, err error) {
	if st.AmountCents <= 0 || st.FeeCents < 0 || st.FeeCents > st.AmountCents || st.Currency != "EUR" {
		return nil, false, fmt.Errorf("payments.settle: %w: amount %d, fee %d, currency %q", ErrWebhook, st.AmountCents, st.FeeCents, st.Currency)
	}
	now := s.now().Unix()
	actor := Actor{AccountID: "provider:" + st.Provider}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		duplicate = false
		_, err := tx.ExecContext(ctx, `INSERT INTO payments_provider_events (provider, event_id, request_id, received_at) VALUES ($1, $2, $3, $4)`,
			st.Provider, st.EventID, st.RequestID, now)
		if db.IsUniqueViolation(err) {
			duplicate = true
			return errDuplicateEvent
		} else if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE payments_requests SET status = $1, paid_cents = amount_cents, provider = $2, provider_payment = $3,
			updated_at = $4 WHERE id = $5 AND status = $6 AND amount_cents = $7 AND currency = $8`,
			StatusPaid, st.Provider, st.PaymentID, now, st.RequestID, StatusOpen, st.AmountCents, st.Currency)
		if err != nil {
			return err
		}
		if r, err = loadRequest(ctx, tx, st.RequestID); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			if r.Status != StatusOpen {
				return fmt.Errorf("%w: request %s is %s", ErrState, r.RequestID, r.Status)
			}
			return fmt.Errorf("%w: paid %d cents, the request asks for %d", ErrWebhook, st.AmountCents, r.AmountCents)
		}
		if err := transition(ctx, tx, r.RequestID, StatusOpen, StatusPaid, st.AmountCents, st.Provider, actor.String(), now); err != nil {
			return err
		}
		lines := transfer(r.OrgID, AccClearing, AccReceivable, st.AmountCents)
		if st.FeeCents > 0 {
			lines = append(lines, transfer(r.OrgID, AccPSPFees, AccClearing, st.FeeCents)...)
		}
		if err := post(ctx, tx, r.RequestID, "payment."+st.Provider, now, lines); err != nil {
			return err
		}
		return audit(ctx, tx, now, actor, "request.paid", r.OrgID, r.RequestID, fmt.Sprintf("event %s, payment %s, fee %d cents", st.EventID, st.PaymentID, st.FeeCents))
	})
	if errors.Is(err, errDuplicateEvent) {
		return nil, true, nil
	}
	if err != nil && db.IsUniqueViolation(err) {
		// The concurrent twin committed between our insert and its check.
		return nil, true, nil
	}
	if err != nil {
		return nil, false, wrap("payments.settle", err)
	}
	s.announce(ctx, r)
	return r, false, nil
}

var errDuplicateEvent = errors.New("duplicate event")

// RefundResult is the answer to a refund.
type RefundResult struct {
	RequestID     string `json:"request_id"`
	AmountCents   int64  `json:"amount_cents"`
	RefundedCents int64  `json:"refunded_cents"` // in total, after this refund
	Status        string `json:"status"`
}

// Refund gives back part or all of a paid request through the provider
// that collected it. The caller must be an owner or admin of the
// organisation with a substantial session; key is the Idempotency-Key.
// The provider is asked first, with the same key, so that a retry after
// a lost answer neither pays out twice nor books twice.
func (s *Service) Refund(ctx context.Context, actor Actor, id, key string, amount int64) (*RefundResult, bool, error) {
	if actor.Level < ca.LevelSubstantial {
		return nil, false, fmt.Errorf("payments.refund: %w", ErrLevel)
	}
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	r, err := s.Request(ctx, actor, id)
	if err != nil {
		return nil, false, err
	}
	if err := s.requireRole(ctx, actor, r.OrgID, adminRoles...); err != nil {
		return nil, false, err
	}
	if amount <= 0 || amount > MaxAmountCents {
		return nil, false, fmt.Errorf("payments.refund: %w", invalid("amount_cents must be positive"))
	}
	scope := "refund:" + id
	params := struct{ Amount int64 }{amount}
	// A replay answers from the stored result without asking the provider.
	if out, ok, err := s.storedResult(ctx, scope, key, params); err != nil || ok {
		return out, ok, err
	}
	if r.Status != StatusPaid && r.Status != StatusRefunded {
		return nil, false, fmt.Errorf("payments.refund: %w: request %s is %s", ErrState, id, r.Status)
	}
	if r.RefundedCents+amount > r.PaidCents {
		return nil, false, fmt.Errorf("payments.refund: %w", invalid("at most %d cents are left to refund", r.PaidCents-r.RefundedCents))
	}
	p := s.provider(r.Provider)
	if p == nil {
		return nil, false, fmt.Errorf("payments.refund: %w: provider %q", ErrNotConfigured, r.Provider)
	}
	if err := p.Refund(ctx, r, amount, scope+":"+key); err != nil {
		return nil, false, fmt.Errorf("payments.refund: %w: %w", ErrProvider, err)
	}
	now := s.now().Unix()
	out, replay, err := idempotent(ctx, s.db, scope, key, params, now, func(tx *sql.Tx) (RefundResult, error) {
		res, err := tx.ExecContext(ctx, `UPDATE payments_requests SET status = $1, refunded_cents = refunded_cents + $2, updated_at = $3
			WHERE id = $4 AND status IN ($5, $1) AND refunded_cents + $2 <= paid_cents`,
			StatusRefunded, amount, now, id, StatusPaid)
		if err != nil {
			return RefundResult{}, err
		}
		cur, err := loadRequest(ctx, tx, id)
		if err != nil {
			return RefundResult{}, err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return RefundResult{}, fmt.Errorf("%w: request %s is %s with %d of %d cents refunded", ErrState, id, cur.Status, cur.RefundedCents, cur.PaidCents)
		}
		if err := transition(ctx, tx, id, r.Status, StatusRefunded, amount, "api", actor.String(), now); err != nil {
			return RefundResult{}, err
		}
		if err := post(ctx, tx, id, "refund", now, transfer(cur.OrgID, AccRefunds, p.Account(), amount)); err != nil {
			return RefundResult{}, err
		}
		if err := audit(ctx, tx, now, actor, "request.refund", cur.OrgID, id, fmt.Sprintf("%d cents, %d in total", amount, cur.RefundedCents)); err != nil {
			return RefundResult{}, err
		}
		r = cur
		return RefundResult{RequestID: id, AmountCents: amount, RefundedCents: cur.RefundedCents, Status: cur.Status}, nil
	})
	if err != nil {
		return nil, false, wrap("payments.refund", err)
	}
	if !replay {
		s.announce(ctx, r)
	}
	return &out, replay, nil
}

// storedResult looks up an idempotency key outside a transaction.
func (s *Service) storedResult(ctx context.Context, scope, key string, params any) (*RefundResult, bool, error) {
	fp, err := fingerprint(params)
	if err != nil {
		return nil, false, err
	}
	var storedFP, result string
	err = s.db.QueryRow(ctx, `SELECT fingerprint, result FROM payments_idempotency WHERE scope = $1 AND idem_key = $2`, scope, key).Scan(&storedFP, &result)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("payments: idempotency: %w", err)
	}
	if storedFP != fp {
		return nil, false, ErrIdempotency
	}
	var out RefundResult
	if err := jsonUnmarshal(result, &out); err != nil {
		return nil, false, err
	}
	return &out, true, nil
}
