package payments

import (
	"context"
	"database/sql"
	"fmt"
)

// An account's own data (GDPR Art. 15 and 17; docs/privacy.md): what
// payments holds about an account, and its pseudonymisation. The payment
// records are kept, naming a pseudonym instead of the account, because
// commercial and tax law requires the books and their vouchers to be
// kept: ten years (§ 147 (1) no. 1 and 4, (3) AO; § 257 (1) no. 1 and 4,
// (4) HGB). docs/privacy.md lists the rows.

// AccountRecords is what payments holds about one account: each table's
// rows that name it, column by column, as stored (times are Unix
// seconds, amounts euro cents).
type AccountRecords struct {
	Requests       []map[string]any `json:"payment_requests"`
	Transitions    []map[string]any `json:"request_transitions"`
	Ledger         []map[string]any `json:"ledger_entries"`
	Refunds        []map[string]any `json:"refunds"`
	Contracts      []map[string]any `json:"contracts"`
	Offers         []map[string]any `json:"offers"`
	Audit          []map[string]any `json:"audit"`
	Idempotency    []map[string]any `json:"idempotency_records"`
	BankResolved   []map[string]any `json:"bank_entries_resolved"`
	ProviderEvents []map[string]any `json:"provider_events"`
}

// mention is the SQL condition (arguments $n, $n+1) that finds a column naming
// the account: as a whole value or inside an actor string
// ("account:<id>/device:<id>").
func mention(col string, n int) string {
	return fmt.Sprintf("(%s = $%d OR %s LIKE $%d)", col, n, col, n+1)
}

// ExportAccount returns every payments row that names account.
func (s *Service) ExportAccount(ctx context.Context, account string) (*AccountRecords, error) {
	like := "%account:" + account + "/%"
	within := "%" + account + "%"
	reqs := `SELECT id FROM payments_requests WHERE payer_account = $1`
	out := &AccountRecords{}
	for _, q := range []struct {
		dst  *[]map[string]any
		sql  string
		args []any
	}{
		{&out.Requests, `SELECT * FROM payments_requests WHERE payer_account = $1 OR ` + mention("created_by", 2) + ` ORDER BY created_at, id`, []any{account, account, like}},
		{&out.Transitions, `SELECT * FROM payments_transitions WHERE request_id IN (` + reqs + `) OR ` + mention("actor", 2) + ` ORDER BY id`, []any{account, account, like}},
		{&out.Ledger, `SELECT t.request_id, t.kind, t.at, e.tx_id, e.line, e.org_id, e.account, e.amount_cents FROM payments_ledger_entries e
			JOIN payments_ledger_tx t ON t.id = e.tx_id WHERE t.request_id IN (` + reqs + `) ORDER BY t.at, e.tx_id, e.line`, []any{account}},
		{&out.Refunds, `SELECT * FROM payments_refunds WHERE request_id IN (` + reqs + `) ORDER BY created_at, id`, []any{account}},
		{&out.Contracts, `SELECT * FROM payments_contracts WHERE buyer_account = $1 OR ` + mention("registered_by", 2) + ` ORDER BY registered_at, id`, []any{account, account, like}},
		{&out.Offers, `SELECT * FROM payments_offers WHERE buyer_account = $1 OR seller_account = $1 ORDER BY registered_at, id`, []any{account}},
		{&out.Audit, `SELECT * FROM payments_audit WHERE actor LIKE $1 OR object LIKE $1 OR detail LIKE $1 ORDER BY id`, []any{within}},
		{&out.Idempotency, `SELECT scope, idem_key, created_at FROM payments_idempotency WHERE scope LIKE $1 OR result LIKE $1 ORDER BY created_at, scope, idem_key`, []any{within}},
		{&out.BankResolved, `SELECT id, statement_id, amount_cents, reference, booking_date, status, org_id, request_id, resolved_at, resolved_by
			FROM payments_bank_entries WHERE request_id IN (` + reqs + `) OR resolved_by LIKE $2 ORDER BY imported_at, id`, []any{account, within}},
		{&out.ProviderEvents, `SELECT * FROM payments_provider_events WHERE request_id IN (` + reqs + `) ORDER BY received_at, event_id`, []any{account}},
	} {
		rows, err := s.db.Records(ctx, q.sql, q.args...)
		if err != nil {
			return nil, fmt.Errorf("payments.export: %w", err)
		}
		*q.dst = rows
	}
	return out, nil
}

// PseudonymiseAccountTx replaces account by pseudonym, inside tx, in
// every payments row that names it — as payer, buyer, seller, creator,
// registrar or actor — and in the stored answers of idempotent creates.
// Nothing is deleted: amounts, dates, references, the ledger and the
// audit log stay as they were, for the retention the law requires.
func (s *Service) PseudonymiseAccountTx(ctx context.Context, tx *sql.Tx, account, pseudonym string) error {
	within := "%" + account + "%"
	for _, q := range []string{
		`UPDATE payments_requests SET payer_account = REPLACE(payer_account, $1, $2), created_by = REPLACE(created_by, $1, $2)
			WHERE payer_account LIKE $3 OR created_by LIKE $3`,
		`UPDATE payments_transitions SET actor = REPLACE(actor, $1, $2) WHERE actor LIKE $3`,
		`UPDATE payments_contracts SET buyer_account = REPLACE(buyer_account, $1, $2), registered_by = REPLACE(registered_by, $1, $2)
			WHERE buyer_account LIKE $3 OR registered_by LIKE $3`,
		`UPDATE payments_offers SET buyer_account = REPLACE(buyer_account, $1, $2), seller_account = REPLACE(seller_account, $1, $2)
			WHERE buyer_account LIKE $3 OR seller_account LIKE $3`,
		`UPDATE payments_audit SET actor = REPLACE(actor, $1, $2), object = REPLACE(object, $1, $2), detail = REPLACE(detail, $1, $2)
			WHERE actor LIKE $3 OR object LIKE $3 OR detail LIKE $3`,
		`UPDATE payments_idempotency SET scope = REPLACE(scope, $1, $2), result = REPLACE(result, $1, $2)
			WHERE scope LIKE $3 OR result LIKE $3`,
		`UPDATE payments_bank_entries SET resolved_by = REPLACE(resolved_by, $1, $2) WHERE resolved_by LIKE $3`,
	} {
		if _, err := tx.ExecContext(ctx, q, account, pseudonym, within); err != nil {
			return fmt.Errorf("payments.erase: %w", err)
		}
	}
	return nil
}
