package db

import (
	"context"
	"database/sql"
)

// Lock takes a lock named key that lasts until tx ends, for a check and
// the write it guards ("at most N rows", "only the first") that a
// conditional UPDATE cannot express in one statement. Under READ
// COMMITTED two transactions would both see the old count and both
// insert; with the lock the second waits, then sees the first's rows.
//
// On PostgreSQL it is a transaction-scoped advisory lock on a 64-bit hash
// of key. On SQLite it does nothing: every write transaction begins
// IMMEDIATE on the one writer connection, so it already holds the
// database's only write lock from its first statement to its end.
func (d *DB) Lock(ctx context.Context, tx *sql.Tx, key string) error {
	if d.dialect != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, key)
	return err
}
