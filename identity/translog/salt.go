package translog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/kanal-server/kanal/keys/transparency"
)

// Account commitments (docs/transparency.md). The log names an account
// by SHA-256("kanal-account/v1" || salt || account id), with a salt of 32
// random bytes per account that only this table holds. Attachments carry
// the salt, so a client recomputes the commitment from the account it
// expects; erasing the account deletes the salt (Shred), and the
// account's entries, which cannot change, then name no one.

// saltOf returns account's salt, drawing and storing one if it has none
// yet (create), inside q. Without create, an account without a salt is
// ErrNotFound.
func (l *Log) saltOf(ctx context.Context, q execQuerier, account string, create bool) (transparency.Salt, error) {
	var b []byte
	err := q.QueryRowContext(ctx, `SELECT salt FROM translog_account_salts WHERE account = $1`, account).Scan(&b)
	switch {
	case err == nil:
		s, ok := transparency.SaltOf(b)
		if !ok {
			return s, fmt.Errorf("translog: stored salt of an account has %d bytes", len(b))
		}
		return s, nil
	case !errors.Is(err, sql.ErrNoRows):
		return transparency.Salt{}, err
	case !create:
		return transparency.Salt{}, ErrNotFound
	}
	var s transparency.Salt
	if _, err := io.ReadFull(l.rand, s[:]); err != nil {
		return s, fmt.Errorf("translog: drawing a salt: %w", err)
	}
	c := transparency.AccountCommitment(s, account)
	// Two nodes may draw at once: the first row stays, and both read it.
	if _, err := q.ExecContext(ctx, `INSERT INTO translog_account_salts (account, salt, commitment, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account) DO NOTHING`, account, s[:], c.String(), l.now().Unix()); err != nil {
		return s, err
	}
	return l.saltOf(ctx, q, account, false)
}

type execQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// dbQuerier adapts the pool to execQuerier.
type dbQuerier struct{ l *Log }

func (q dbQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return q.l.db.QueryRow(ctx, query, args...)
}

func (q dbQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.l.db.Exec(ctx, query, args...)
}

// AccountSalt returns account's salt, drawing one if it has none yet. The
// caller makes sure the account exists (the directory answers it with the
// account's devices, for its own devices' monitor).
func (l *Log) AccountSalt(ctx context.Context, account string) (transparency.Salt, error) {
	return l.saltOf(ctx, dbQuerier{l}, account, true)
}

// Commitment returns the commitment that entries about account name, and
// ErrNotFound if the account has no salt (nothing about it was logged in
// version 2, or it was erased).
func (l *Log) Commitment(ctx context.Context, account string) (transparency.Commitment, error) {
	s, err := l.saltOf(ctx, dbQuerier{l}, account, false)
	if err != nil {
		return transparency.Commitment{}, err
	}
	return transparency.AccountCommitment(s, account), nil
}

// Shred deletes account's salt inside tx, the transaction that erases the
// account: its entries' commitments then name no one, and attachments of
// them carry no salt (clients refuse them).
func (l *Log) Shred(ctx context.Context, tx *sql.Tx, account string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM translog_account_salts WHERE account = $1`, account)
	return err
}

// saltByCommitment returns the salt that commitment c was made with, or
// ErrNotFound (shredded).
func (l *Log) saltByCommitment(ctx context.Context, c transparency.Commitment) ([]byte, error) {
	var b []byte
	err := l.db.QueryRow(ctx, `SELECT salt FROM translog_account_salts WHERE commitment = $1`, c.String()).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return b, err
}

// commit turns e into the version 2 entry the log appends: the account,
// if it names one, replaced by its commitment under the account's salt
// (drawn now if the account has none), inside tx.
func (l *Log) commit(ctx context.Context, tx *sql.Tx, e transparency.Entry) (transparency.Entry, error) {
	if e.Version == transparency.V2 {
		return e, nil
	}
	e.Version = transparency.V2
	if e.Account == "" {
		return e, nil
	}
	s, err := l.saltOf(ctx, tx, e.Account, true)
	if err != nil {
		return e, err
	}
	e.Commitment, e.Account = transparency.AccountCommitment(s, e.Account), ""
	return e, nil
}
