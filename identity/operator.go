package identity

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// The operator credential is a bearer token (kanal_op_…) that kanald
// hands over in a file only its owner can read, never on the log stream.
// Each token has a public id (op1, op2, …) that the audit log names
// beside every operator action, an expiry, and is stored only as a
// SHA-256 hash. `kanald operator reset` issues the next one and revokes
// all earlier ones; since every node checks the database on each
// request, the old tokens stop working on all nodes at once.

// OperatorToken describes an issued operator token, without the secret.
type OperatorToken struct {
	ID        string // op1, op2, …
	CreatedAt time.Time
	ExpiresAt time.Time
}

// OperatorOptions configures issuing an operator token.
type OperatorOptions struct {
	// TTL is how long the token works; zero means DefaultOperatorTokenTTL.
	TTL time.Duration
	// Actor names who issues it, for the audit log ("kanald" at the first
	// start, "kanald operator reset" on the host).
	Actor string
	// Deliver hands the new token over (kanald writes it to a file). It
	// runs inside the transaction that stores the token: if it fails,
	// nothing is issued and earlier tokens keep working. Because a
	// transaction may be retried, Deliver may be called more than once
	// with the same token.
	Deliver func(token string, t OperatorToken) error

	Now  func() time.Time // nil: time.Now
	Rand io.Reader        // nil: crypto/rand.Reader
}

func (o *OperatorOptions) fill() error {
	if o.TTL == 0 {
		o.TTL = DefaultOperatorTokenTTL
	}
	if o.TTL < MinOperatorTokenTTL || o.TTL > MaxOperatorTokenTTL {
		return fmt.Errorf("identity: operator token lifetime %v is not from %v to %v", o.TTL, MinOperatorTokenTTL, MaxOperatorTokenTTL)
	}
	if o.Deliver == nil {
		return errors.New("identity: an operator token needs somewhere to go")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Actor == "" {
		o.Actor = "kanald"
	}
	return nil
}

func operatorID(generation int64) string { return "op" + strconv.FormatInt(generation, 10) }

// EnsureOperator issues the first operator token of a deployment, on its
// very first start, and hands it to o.Deliver; created reports whether
// this call did. Later calls, on any node, issue nothing.
func (s *Service) EnsureOperator(ctx context.Context, o OperatorOptions) (t OperatorToken, created bool, err error) {
	if o.Now == nil {
		o.Now = s.now
	}
	if o.Rand == nil {
		o.Rand = s.rand
	}
	return EnsureOperator(ctx, s.db, o)
}

// EnsureOperator is Service.EnsureOperator on a database alone.
func EnsureOperator(ctx context.Context, d *db.DB, o OperatorOptions) (t OperatorToken, created bool, err error) {
	if err := o.fill(); err != nil {
		return OperatorToken{}, false, err
	}
	token, hash, err := newToken(o.Rand, prefixOperator)
	if err != nil {
		return OperatorToken{}, false, err
	}
	now := o.Now().Truncate(time.Second)
	t = OperatorToken{ID: operatorID(1), CreatedAt: now.UTC(), ExpiresAt: now.Add(o.TTL).UTC()}
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO identity_operator_tokens (generation, token_hash, created_at, expires_at)
			VALUES (1, $1, $2, $3) ON CONFLICT (generation) DO NOTHING`, hash, now.Unix(), t.ExpiresAt.Unix())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		created = n == 1
		if !created {
			return nil
		}
		if err := audit(ctx, tx, now.Unix(), o.Actor, "operator.issue", "", "", t.ID+" expires "+t.ExpiresAt.Format(time.RFC3339)); err != nil {
			return err
		}
		return o.Deliver(token, t)
	})
	if err != nil || !created {
		return OperatorToken{}, false, err
	}
	return t, true, nil
}

// ResetOperator issues a new operator token, hands it to o.Deliver and
// revokes every earlier one, in one transaction; it returns the new token
// and the ids of the tokens it revoked. It needs only the database, so it
// runs on the host while kanald nodes keep serving.
func ResetOperator(ctx context.Context, d *db.DB, o OperatorOptions) (t OperatorToken, revoked []string, err error) {
	if err := o.fill(); err != nil {
		return OperatorToken{}, nil, err
	}
	token, hash, err := newToken(o.Rand, prefixOperator)
	if err != nil {
		return OperatorToken{}, nil, err
	}
	now := o.Now().Truncate(time.Second)
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		revoked = nil
		var last int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(generation), 0) FROM identity_operator_tokens`).Scan(&last); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT generation FROM identity_operator_tokens WHERE revoked_at IS NULL ORDER BY generation`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var g int64
			if err := rows.Scan(&g); err != nil {
				rows.Close()
				return err
			}
			revoked = append(revoked, operatorID(g))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE identity_operator_tokens SET revoked_at = $1 WHERE revoked_at IS NULL`, now.Unix()); err != nil {
			return err
		}
		// Two resets at once on PostgreSQL both read the same last
		// generation; the primary key lets only one of them insert.
		t = OperatorToken{ID: operatorID(last + 1), CreatedAt: now.UTC(), ExpiresAt: now.Add(o.TTL).UTC()}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_operator_tokens (generation, token_hash, created_at, expires_at)
			VALUES ($1, $2, $3, $4)`, last+1, hash, now.Unix(), t.ExpiresAt.Unix()); err != nil {
			return err
		}
		detail := t.ID + " expires " + t.ExpiresAt.Format(time.RFC3339)
		if len(revoked) > 0 {
			detail += "; revoked " + strings.Join(revoked, ", ")
		}
		if err := audit(ctx, tx, now.Unix(), o.Actor, "operator.reset", "", "", detail); err != nil {
			return err
		}
		return o.Deliver(token, t)
	})
	if err != nil {
		return OperatorToken{}, nil, err
	}
	return t, revoked, nil
}

// CurrentOperator returns the newest operator token that still works at
// now; ok is false when none does.
func CurrentOperator(ctx context.Context, d *db.DB, now time.Time) (t OperatorToken, ok bool, err error) {
	var gen, created, expires int64
	err = d.QueryRow(ctx, `SELECT generation, created_at, expires_at FROM identity_operator_tokens
		WHERE revoked_at IS NULL AND expires_at > $1 ORDER BY generation DESC LIMIT 1`, now.Unix()).Scan(&gen, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return OperatorToken{}, false, nil
	}
	if err != nil {
		return OperatorToken{}, false, err
	}
	return OperatorToken{ID: operatorID(gen), CreatedAt: unixTime(created), ExpiresAt: unixTime(expires)}, true, nil
}
