package identity

import (
	"context"
	"database/sql"
)

// EnsureOperator creates the operator credential on the very first start
// of a deployment and returns it, with created true, exactly once: only
// its hash is stored, so the caller must show it to the operator now.
// Later calls, on any node, return created false.
func (s *Service) EnsureOperator(ctx context.Context) (token string, created bool, err error) {
	token, hash, err := newToken(s.rand, prefixOperator)
	if err != nil {
		return "", false, err
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO identity_operator (singleton, token_hash, created_at) VALUES (1, $1, $2)
			ON CONFLICT (singleton) DO NOTHING`, hash, s.now().Unix())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		created = n == 1
		return err
	})
	if err != nil || !created {
		return "", false, err
	}
	return token, true, nil
}

// ResetOperator replaces the operator credential and returns the new one;
// the old token stops working at once. kanald exposes it as
// -reset-operator-token.
func (s *Service) ResetOperator(ctx context.Context) (string, error) {
	token, hash, err := newToken(s.rand, prefixOperator)
	if err != nil {
		return "", err
	}
	_, err = s.db.Exec(ctx, `INSERT INTO identity_operator (singleton, token_hash, created_at) VALUES (1, $1, $2)
		ON CONFLICT (singleton) DO UPDATE SET token_hash = $1, created_at = $2`, hash, s.now().Unix())
	if err != nil {
		return "", err
	}
	return token, nil
}
