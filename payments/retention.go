package payments

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// RetentionYears is how long payment records are kept: books, and the
// vouchers behind them, ten years from the end of the calendar year they
// were made in (§ 147 (1) no. 1, 4, (3), (4) AO; § 257 (1) no. 1, 4,
// (4), (5) HGB). docs/privacy.md.
const RetentionYears = 10

// retentionCutoff is the first moment whose records must still be kept at
// now: a record made in year Y may go from 1 January of Y+11.
func retentionCutoff(now time.Time) int64 {
	return time.Date(now.UTC().Year()-RetentionYears, time.January, 1, 0, 0, 0, 0, time.UTC).Unix()
}

// ExpireRecords deletes the payment records whose retention has ended: a
// request that is settled (paid, refunded, cancelled or expired, with no
// refund pending) and was last changed before the cutoff goes with its
// state transitions, ledger transactions, refunds, provider events and
// matched bank entries; offers, contracts no remaining request refers
// to, and idempotency records from before the cutoff go too. It returns
// how many requests it deleted. kanald's payments sweep calls it on every
// node; the deletes are idempotent. The append-only payments audit log is
// not swept (docs/privacy.md).
func (s *Service) ExpireRecords(ctx context.Context) (int64, error) {
	cutoff := retentionCutoff(s.now())
	var n int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		old := `SELECT id FROM payments_requests WHERE updated_at < $1 AND status IN ('paid', 'refunded', 'cancelled', 'expired')
			AND NOT EXISTS (SELECT 1 FROM payments_refunds f WHERE f.request_id = payments_requests.id AND f.status = 'pending')`
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (`+old+`) o`, cutoff).Scan(&n); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM payments_ledger_entries WHERE tx_id IN (SELECT id FROM payments_ledger_tx WHERE request_id IN (` + old + `))`,
			`DELETE FROM payments_ledger_tx WHERE request_id IN (` + old + `)`,
			`DELETE FROM payments_transitions WHERE request_id IN (` + old + `)`,
			`DELETE FROM payments_refunds WHERE request_id IN (` + old + `)`,
			`DELETE FROM payments_provider_events WHERE request_id IN (` + old + `)`,
			`DELETE FROM payments_bank_entries WHERE request_id IN (` + old + `)`,
			`DELETE FROM payments_requests WHERE id IN (` + old + `)`,
			`DELETE FROM payments_contracts WHERE registered_at < $1 AND NOT EXISTS (SELECT 1 FROM payments_requests r WHERE r.contract_id = payments_contracts.id)`,
			`DELETE FROM payments_offers WHERE registered_at < $1`,
			`DELETE FROM payments_idempotency WHERE created_at < $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, cutoff); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("payments.retention: %w", err)
	}
	return n, nil
}
