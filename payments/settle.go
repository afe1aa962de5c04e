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
			return fmt.Errorf("%w: paid %s, the request asks for %s", ErrWebhook, Euro(st.AmountCents), Euro(r.AmountCents))
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
	RefundID      string `json:"refund_id"`
	AmountCents   int64  `json:"amount_cents"`
	RefundedCents int64  `json:"refunded_cents"` // in total, after this refund
	Status        string `json:"status"`
}

// Refund statuses (payments_refunds.status).
const (
	refundPending   = "pending"   // booked, the provider has not confirmed the payout
	refundConfirmed = "confirmed" // the provider accepted the payout
)

// Refund gives back part or all of a paid request through the provider
// that collected it. The caller must be an owner or admin of the
// organisation with a substantial session; key is the Idempotency-Key.
//
// The refund is booked first — the request's refunded amount, its
// transition, the ledger and a pending refund row in one transaction whose
// conditional update refuses to refund more than was paid, however many
// refunds race — and only a booked refund is sent to the provider, with an
// idempotency key derived from the refund's id. If the provider does not
// answer, the refund stays booked and pending: a retry with the same
// Idempotency-Key, or RetryRefunds, asks the provider again with the same
// key, so a payout happens once.
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
		return nil, false, fmt.Errorf("payments.refund: %w", invalid("a refund's amount must be more than %s", Euro(0)))
	}
	scope := "refund:" + id
	params := struct{ Amount int64 }{amount}
	// A replay answers from the stored result; the provider is asked
	// again only if it never confirmed.
	if out, ok, err := s.storedResult(ctx, scope, key, params); err != nil || ok {
		if err == nil && out.RefundID != "" {
			err = s.payRefund(ctx, out.RefundID)
		}
		if err != nil {
			return nil, false, err
		}
		return out, true, nil
	}
	// These checks give a clear answer early; the conditional update
	// below is what holds under concurrency.
	if r.Status != StatusPaid && r.Status != StatusRefunded {
		return nil, false, fmt.Errorf("payments.refund: %w: request %s is %s", ErrState, id, r.Status)
	}
	if r.RefundedCents+amount > r.PaidCents {
		return nil, false, fmt.Errorf("payments.refund: %w", invalid("at most %s is left to refund", Euro(r.PaidCents-r.RefundedCents)))
	}
	p := s.provider(r.Provider)
	if p == nil {
		return nil, false, fmt.Errorf("payments.refund: %w: provider %q", ErrNotConfigured, r.Provider)
	}
	refundID, err := newID("rf_")
	if err != nil {
		return nil, false, err
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
			if cur.Status != StatusPaid && cur.Status != StatusRefunded {
				return RefundResult{}, fmt.Errorf("%w: request %s is %s", ErrState, id, cur.Status)
			}
			return RefundResult{}, invalid("at most %s is left to refund", Euro(cur.PaidCents-cur.RefundedCents))
		}
		// The row lock of the update orders refunds of one request, so
		// the refunded total before this one tells where it came from.
		from := StatusRefunded
		if cur.RefundedCents == amount {
			from = StatusPaid
		}
		if err := transition(ctx, tx, id, from, StatusRefunded, amount, "api", actor.String(), now); err != nil {
			return RefundResult{}, err
		}
		if err := post(ctx, tx, id, "refund", now, transfer(cur.OrgID, AccRefunds, p.Account(), amount)); err != nil {
			return RefundResult{}, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO payments_refunds (id, request_id, amount_cents, provider, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $6)`, refundID, id, amount, p.Name(), refundPending, now); err != nil {
			return RefundResult{}, err
		}
		if err := audit(ctx, tx, now, actor, "request.refund", cur.OrgID, id, fmt.Sprintf("%d cents, %d in total, refund %s", amount, cur.RefundedCents, refundID)); err != nil {
			return RefundResult{}, err
		}
		r = cur
		return RefundResult{RequestID: id, RefundID: refundID, AmountCents: amount, RefundedCents: cur.RefundedCents, Status: cur.Status}, nil
	})
	if err != nil {
		return nil, false, wrap("payments.refund", err)
	}
	if !replay {
		s.announce(ctx, r)
	}
	if out.RefundID != "" {
		if err := s.payRefund(ctx, out.RefundID); err != nil {
			return nil, false, err
		}
	}
	return &out, replay, nil
}

// refundKey is the provider idempotency key of a booked refund.
func refundKey(refundID string) string { return "kanal-refund:" + refundID }

// payRefund asks the provider to pay out a booked refund unless it has
// already confirmed it, and records the confirmation. An error leaves the
// refund pending, to be asked again with the same key.
func (s *Service) payRefund(ctx context.Context, refundID string) error {
	var requestID, provider, status string
	var amount int64
	err := s.db.QueryRow(ctx, `SELECT request_id, provider, amount_cents, status FROM payments_refunds WHERE id = $1`, refundID).
		Scan(&requestID, &provider, &amount, &status)
	if err != nil {
		return fmt.Errorf("payments.refund: %w", err)
	}
	if status == refundConfirmed {
		return nil
	}
	p := s.provider(provider)
	if p == nil {
		return fmt.Errorf("payments.refund: %w: provider %q", ErrNotConfigured, provider)
	}
	r, err := loadRequest(ctx, readDB{s.db}, requestID)
	if err != nil {
		return fmt.Errorf("payments.refund: %w", err)
	}
	if err := p.Refund(ctx, r, amount, refundKey(refundID)); err != nil {
		return fmt.Errorf("payments.refund: the refund %s is booked; the provider did not confirm it: %w: %w", refundID, ErrProvider, err)
	}
	if _, err := s.db.Exec(ctx, `UPDATE payments_refunds SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4`,
		refundConfirmed, s.now().Unix(), refundID, refundPending); err != nil {
		return fmt.Errorf("payments.refund: %w", err)
	}
	return nil
}

// RetryRefunds asks the provider again for booked refunds that it has not
// confirmed for at least RefundRetryAfter, and returns how many it
// confirmed. kanald's sweep calls it, so a refund whose client gave up is
// still paid out, once.
func (s *Service) RetryRefunds(ctx context.Context) (int, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM payments_refunds WHERE status = $1 AND created_at <= $2 ORDER BY created_at LIMIT 100`,
		refundPending, s.now().Add(-RefundRetryAfter).Unix())
	if err != nil {
		return 0, fmt.Errorf("payments.refund: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("payments.refund: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("payments.refund: %w", err)
	}
	n := 0
	var errs []error
	for _, id := range ids {
		if err := s.payRefund(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
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
