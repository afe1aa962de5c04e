package cases

import (
	"context"
	"database/sql"
	"fmt"
)

// AccountCases is what the case inbox holds about one account (GDPR Art.
// 15): the cases it opened as a citizen, the cases assigned to it as an
// agent, and every change of them, as stored (times in Unix
// milliseconds). The answers and notes were never on the server.
type AccountCases struct {
	Cases  []map[string]any `json:"cases"`
	Events []map[string]any `json:"events"`
}

// ExportAccount returns the cases and case events that name account.
func (s *Service) ExportAccount(ctx context.Context, account string) (*AccountCases, error) {
	out := &AccountCases{}
	var err error
	if out.Cases, err = s.db.Records(ctx, `SELECT * FROM cases WHERE citizen = $1 OR assignee = $1 ORDER BY created_at, id`, account); err != nil {
		return nil, fmt.Errorf("cases.export: %w", err)
	}
	if out.Events, err = s.db.Records(ctx, `SELECT * FROM cases_events WHERE case_id IN (SELECT id FROM cases WHERE citizen = $1 OR assignee = $1)
		OR actor = $2 OR assignee = $1 ORDER BY case_id, seq`, account, "account:"+account); err != nil {
		return nil, fmt.Errorf("cases.export: %w", err)
	}
	return out, nil
}

// PseudonymiseAccountTx names pseudonym instead of account, inside tx, in
// the cases it opened or was assigned and their changes: a case is the
// office's file, which it keeps under the rules for its records; only the
// link to the account goes.
func (s *Service) PseudonymiseAccountTx(ctx context.Context, tx *sql.Tx, account, pseudonym string) error {
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE cases SET citizen = $2 WHERE citizen = $1`, []any{account, pseudonym}},
		{`UPDATE cases SET assignee = $2 WHERE assignee = $1`, []any{account, pseudonym}},
		{`UPDATE cases_events SET assignee = $2 WHERE assignee = $1`, []any{account, pseudonym}},
		{`UPDATE cases_events SET actor = $2 WHERE actor = $1`, []any{"account:" + account, "account:" + pseudonym}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("cases.erase: %w", err)
		}
	}
	return nil
}
