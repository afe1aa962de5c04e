package payments

import (
	"context"
	"database/sql"
	"fmt"
)

// Ledger accounts. Debits are positive amounts, credits negative.
const (
	AccReceivable = "receivable"        // what payers owe
	AccSales      = "sales"             // income from contracts
	AccFees       = "fees"              // income from office fees
	AccClearing   = "provider_clearing" // collected by the PSP, not yet paid out
	AccBank       = "bank"              // the organisation's bank account
	AccRefunds    = "refunds"           // money given back
	AccPSPFees    = "provider_fees"     // the PSP's charges
	AccUnmatched  = "unallocated"       // bank credits no request could be matched to
)

// line is one ledger entry.
type line struct {
	org     string
	account string
	cents   int64 // debit > 0, credit < 0
}

// transfer returns the two lines of a simple movement: debit to, credit from.
func transfer(org, debit, credit string, cents int64) []line {
	return []line{{org, debit, cents}, {org, credit, -cents}}
}

// post writes a balanced ledger transaction in tx and checks, with the
// database's own sum of what was written, that it balances: a bug that
// writes an unbalanced transaction rolls back the state change with it.
func post(ctx context.Context, tx *sql.Tx, requestID, kind string, at int64, lines []line) error {
	var sum int64
	for _, l := range lines {
		if l.cents == 0 {
			return fmt.Errorf("payments.ledger: %s: zero line", kind)
		}
		sum += l.cents
	}
	if sum != 0 || len(lines) < 2 {
		return fmt.Errorf("payments.ledger: %s: %w (sum %d)", kind, ErrUnbalanced, sum)
	}
	id, err := newID("lt_")
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payments_ledger_tx (id, request_id, kind, at) VALUES ($1, $2, $3, $4)`,
		id, requestID, kind, at); err != nil {
		return fmt.Errorf("payments.ledger: %w", err)
	}
	for i, l := range lines {
		if _, err := tx.ExecContext(ctx, `INSERT INTO payments_ledger_entries (tx_id, line, org_id, account, amount_cents)
			VALUES ($1, $2, $3, $4, $5)`, id, i, l.org, l.account, l.cents); err != nil {
			return fmt.Errorf("payments.ledger: %w", err)
		}
	}
	var stored int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_cents), 0) FROM payments_ledger_entries WHERE tx_id = $1`, id).Scan(&stored); err != nil {
		return fmt.Errorf("payments.ledger: %w", err)
	}
	if stored != 0 {
		return fmt.Errorf("payments.ledger: %s: %w (stored sum %d)", kind, ErrUnbalanced, stored)
	}
	return nil
}

// AccountBalance is one ledger account's balance.
type AccountBalance struct {
	OrgID   string `json:"org_id"`
	Account string `json:"account"`
	Cents   int64  `json:"balance_cents"` // debit positive
}

// Books is the result of the balance check.
type Books struct {
	Balanced     bool             `json:"balanced"`
	TotalCents   int64            `json:"total_cents"`  // sum of every entry: zero when balanced
	Transactions int64            `json:"transactions"` // number of ledger transactions
	Unbalanced   []string         `json:"unbalanced_transactions"`
	Accounts     []AccountBalance `json:"accounts"`
}

// CheckBooks proves the books sum to zero: the total of all entries, and
// every transaction on its own.
func (s *Service) CheckBooks(ctx context.Context) (*Books, error) {
	b := &Books{Unbalanced: []string{}, Accounts: []AccountBalance{}}
	if err := s.db.QueryRow(ctx, `SELECT COALESCE(SUM(amount_cents), 0) FROM payments_ledger_entries`).Scan(&b.TotalCents); err != nil {
		return nil, fmt.Errorf("payments.books: %w", err)
	}
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM payments_ledger_tx`).Scan(&b.Transactions); err != nil {
		return nil, fmt.Errorf("payments.books: %w", err)
	}
	rows, err := s.db.Query(ctx, `SELECT tx_id FROM payments_ledger_entries GROUP BY tx_id HAVING SUM(amount_cents) <> 0 OR COUNT(*) < 2 ORDER BY tx_id LIMIT 100`)
	if err != nil {
		return nil, fmt.Errorf("payments.books: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("payments.books: %w", err)
		}
		b.Unbalanced = append(b.Unbalanced, id)
	}
	rows.Close()
	rows, err = s.db.Query(ctx, `SELECT org_id, account, SUM(amount_cents) FROM payments_ledger_entries GROUP BY org_id, account ORDER BY org_id, account`)
	if err != nil {
		return nil, fmt.Errorf("payments.books: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a AccountBalance
		if err := rows.Scan(&a.OrgID, &a.Account, &a.Cents); err != nil {
			return nil, fmt.Errorf("payments.books: %w", err)
		}
		if a.Cents != 0 {
			b.Accounts = append(b.Accounts, a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("payments.books: %w", err)
	}
	b.Balanced = b.TotalCents == 0 && len(b.Unbalanced) == 0
	return b, nil
}

// Balance returns one account's balance in an organisation.
func (s *Service) Balance(ctx context.Context, org, account string) (int64, error) {
	var c int64
	err := s.db.QueryRow(ctx, `SELECT COALESCE(SUM(amount_cents), 0) FROM payments_ledger_entries WHERE org_id = $1 AND account = $2`, org, account).Scan(&c)
	if err != nil {
		return 0, fmt.Errorf("payments.balance: %w", err)
	}
	return c, nil
}
