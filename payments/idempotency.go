package payments

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kanal-server/kanal/internal/db"
)

// checkKey validates an Idempotency-Key: 1 to MaxIdemKey printable ASCII
// characters without spaces.
func checkKey(key string) error {
	if len(key) == 0 || len(key) > MaxIdemKey {
		return invalid("an Idempotency-Key of 1 to %d characters is required", MaxIdemKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] > '~' {
			return invalid("the Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}

func fingerprint(params any) (string, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return "", fmt.Errorf("payments: fingerprint: %w", err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// idempotent runs create once per (scope, key). create runs in a write
// transaction and returns the answer, which is stored with a fingerprint
// of params. A retry with the same key and parameters gets the stored
// answer (replay true) without running create; with other parameters,
// ErrIdempotency. after runs only when create ran and committed.
func idempotent[T any](ctx context.Context, d *db.DB, scope, key string, params any, now int64,
	create func(tx *sql.Tx) (T, error)) (out T, replay bool, err error) {
	if err := checkKey(key); err != nil {
		return out, false, err
	}
	fp, err := fingerprint(params)
	if err != nil {
		return out, false, err
	}
	// Two concurrent first attempts with one key: both miss the lookup,
	// one insert wins, the other fails on the primary key and looks again.
	for attempt := 0; ; attempt++ {
		err = d.Tx(ctx, func(tx *sql.Tx) error {
			replay = false
			var storedFP, result string
			err := tx.QueryRowContext(ctx, `SELECT fingerprint, result FROM payments_idempotency WHERE scope = $1 AND idem_key = $2`,
				scope, key).Scan(&storedFP, &result)
			switch {
			case err == nil:
				if storedFP != fp {
					return ErrIdempotency
				}
				replay = true
				return json.Unmarshal([]byte(result), &out)
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			v, err := create(tx)
			if err != nil {
				return err
			}
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO payments_idempotency (scope, idem_key, fingerprint, result, created_at)
				VALUES ($1, $2, $3, $4, $5)`, scope, key, fp, string(b), now); err != nil {
				return err
			}
			out = v
			return nil
		})
		if err != nil && db.IsUniqueViolation(err) && attempt == 0 {
			continue
		}
		return out, replay, err
	}
}
