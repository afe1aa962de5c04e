package identity

import (
	"context"
	"database/sql"
	"fmt"
)

// ExpireSessions deletes what identity keeps only while it can still be
// used (docs/privacy.md, "Retention"): sessions and refresh tokens past
// their expiry, setup tokens and login challenges past theirs, and login
// throttle counters (which name a client address or an account) that lock
// nothing and are older than FailureMemory. It returns how many rows it
// deleted. Sessions stay RefreshLifetime past their expiry, so that an
// expired token is still answered "session expired". kanald's sweep calls it on every node; the deletes are
// idempotent.
func (s *Service) ExpireSessions(ctx context.Context) (int64, error) {
	now := s.now()
	var n int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		n = 0
		for _, q := range []struct {
			sql  string
			args []any
		}{
			// An expired session is answered "session expired" for as long
			// as its login could still be refreshed; then it goes.
			{`DELETE FROM identity_sessions WHERE expires_at <= $1`, []any{now.Add(-RefreshLifetime).Unix()}},
			{`DELETE FROM identity_refresh_tokens WHERE expires_at <= $1`, []any{now.Unix()}},
			{`DELETE FROM identity_setup_tokens WHERE expires_at <= $1`, []any{now.Unix()}},
			{`DELETE FROM identity_challenges WHERE expires_at <= $1`, []any{now.Unix()}},
			{`DELETE FROM identity_throttle WHERE key NOT LIKE 'signup:%' AND locked_until <= $1 AND updated_at <= $2`,
				[]any{now.Unix(), now.Add(-FailureMemory).Unix()}},
		} {
			res, err := tx.ExecContext(ctx, q.sql, q.args...)
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("identity: expire sessions: %w", err)
	}
	return n, nil
}
