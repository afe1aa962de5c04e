package miniapps

import (
	"context"
	"database/sql"
	"fmt"
)

// An account's own data (GDPR Art. 15 and 17; docs/privacy.md): what the
// mini-app registry and the OpenID Provider hold about an account, and
// its erasure.

// AccountRecords is what miniapps holds about one account, each table's
// rows as stored (times in Unix seconds). Token and code hashes are
// credentials and are left out.
type AccountRecords struct {
	Consents  []map[string]any `json:"consents"`
	Subjects  []map[string]any `json:"pairwise_subjects"`
	Handles   []map[string]any `json:"bridge_handles"`
	Tokens    []map[string]any `json:"tokens"`
	Manifests []map[string]any `json:"manifests_signed"`
	Audit     []map[string]any `json:"audit"`
}

// ExportAccount returns every miniapps row that names account.
func (s *Service) ExportAccount(ctx context.Context, account string) (*AccountRecords, error) {
	out := &AccountRecords{}
	for _, q := range []struct {
		dst  *[]map[string]any
		sql  string
		args []any
	}{
		{&out.Consents, `SELECT * FROM miniapps_consents WHERE account_id = $1 ORDER BY app_id, seq, scope`, []any{account}},
		{&out.Subjects, `SELECT * FROM miniapps_subjects WHERE account_id = $1 ORDER BY sector`, []any{account}},
		{&out.Handles, `SELECT * FROM miniapps_handles WHERE account_id = $1 ORDER BY created_at, handle`, []any{account}},
		{&out.Tokens, `SELECT id, kind, client_id, subject, scopes, level, auth_time, expires_at, revoked FROM miniapps_tokens
			WHERE account_id = $1 ORDER BY auth_time, id`, []any{account}},
		{&out.Manifests, `SELECT app_id, version, signer_device, registered_at FROM miniapps_manifests WHERE signer_account = $1 ORDER BY app_id, version`, []any{account}},
		{&out.Audit, `SELECT * FROM miniapps_audit WHERE account_id = $1 OR actor LIKE $2 ORDER BY at, id`, []any{account, "%" + account + "%"}},
	} {
		rows, err := s.db.Records(ctx, q.sql, q.args...)
		if err != nil {
			return nil, fmt.Errorf("miniapps.export: %w", err)
		}
		*q.dst = rows
	}
	return out, nil
}

// EraseAccountTx erases account inside tx: its pairwise subjects (an
// app's subject then names no one), bridge handles, pending
// authorisations and tokens are deleted; its consent decisions (the
// record that it consented, GDPR Art. 7 (1)), the manifests it signed for
// its organisation and the audit log name pseudonym instead.
func (s *Service) EraseAccountTx(ctx context.Context, tx *sql.Tx, account, pseudonym string) error {
	within := "%" + account + "%"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM miniapps_subjects WHERE account_id = $1`, []any{account}},
		{`DELETE FROM miniapps_handles WHERE account_id = $1`, []any{account}},
		{`DELETE FROM miniapps_auth_requests WHERE account_id = $1`, []any{account}},
		{`DELETE FROM miniapps_tokens WHERE account_id = $1`, []any{account}},
		{`UPDATE miniapps_consents SET account_id = $2 WHERE account_id = $1`, []any{account, pseudonym}},
		{`UPDATE miniapps_manifests SET signer_account = $2 WHERE signer_account = $1`, []any{account, pseudonym}},
		{`UPDATE miniapps_audit SET account_id = REPLACE(account_id, $1, $2), actor = REPLACE(actor, $1, $2), detail = REPLACE(detail, $1, $2)
			WHERE account_id LIKE $3 OR actor LIKE $3 OR detail LIKE $3`, []any{account, pseudonym, within}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("miniapps.erase: %w", err)
		}
	}
	return nil
}
