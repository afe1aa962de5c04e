package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// A session is checked when a request comes; a request that stays open — a
// device's stream — must also learn when its session ends. Every place that
// ends sessions tells the SessionEnd notices after its transaction commits,
// and whoever holds long-lived connections (cmd/kanald wires the mailbox
// hub of every node) closes the ones that match.

// Why sessions ended, as SessionEnd.Reason says it (and a device's stream
// shows it in its close frame).
const (
	EndLogout          = "logged out"
	EndRefreshReused   = "refresh token reused"
	EndPasswordChanged = "password changed"
	EndDeviceRevoked   = "device revoked"
	EndKeyChanged      = "device key changed"
)

// SessionEnd names sessions that have just ended, by the widest set that
// holds them all: the sessions of one login (Family), of one device
// (Device), or of one account except the login that made the change
// (Account, KeepFamily). Exactly one of Family, Device and Account is set.
type SessionEnd struct {
	Reason     string
	Family     string
	Device     string
	Account    string
	KeepFamily string
}

// ErrSessionEnded is what CheckSession returns for a session that is
// revoked or past its expiry.
var ErrSessionEnded = errors.New("identity: session ended")

// Session is the session a request was authenticated with, for a caller
// that outlives the request and must check it again later.
type Session struct {
	Principal
	Family    string    // the login the session belongs to (refreshes keep it)
	ExpiresAt time.Time // when the session's token stops working
	// Ref finds the session again (CheckSession): the stored hash of its
	// token, never the token itself.
	Ref string
}

// SessionFromContext returns the session of a request that passed
// RequireSession.
func SessionFromContext(ctx context.Context) (Session, bool) {
	c, ok := ctx.Value(ctxKey{}).(*caller)
	if !ok || c.operator || c.setup {
		return Session{}, false
	}
	return Session{Principal: c.p, Family: c.family, ExpiresAt: unixTime(c.expires), Ref: c.sessionHash}, true
}

// CheckSession returns nil while the session ref names is live, an error
// wrapping ErrSessionEnded once it is revoked or expired, one wrapping
// ErrUnknownDevice once its device is revoked, and any other error when it
// could not tell.
func (s *Service) CheckSession(ctx context.Context, ref string) error {
	var expires int64
	var revoked int
	var devRevoked sql.NullInt64
	err := s.db.QueryRow(ctx, checkSessionSQL(s.db.Dialect())+`= $1`, ref).
		Scan(&expires, &revoked, &devRevoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrSessionEnded
	case err != nil:
		return fmt.Errorf("identity.check session: %w", err)
	case devRevoked.Valid:
		return ErrUnknownDevice
	case revoked != 0, expires <= s.now().Unix():
		return ErrSessionEnded
	}
	return nil
}

// checkSessionSQL reads a session's expiry and revocation and its
// device's, up to the condition on s.token_hash.
func checkSessionSQL(d db.Dialect) string {
	return `SELECT s.expires_at, s.revoked, d.revoked_at FROM ` + sessionsJoin(d) + ` WHERE s.token_hash `
}

// checkSessionsSQL is checkSessionSQL with each row's token hash first.
func checkSessionsSQL(d db.Dialect) string {
	return `SELECT s.token_hash, s.expires_at, s.revoked, d.revoked_at FROM ` + sessionsJoin(d) + ` WHERE s.token_hash `
}

// MaxCheckSessions caps the sessions one CheckSessions call looks up.
const MaxCheckSessions = 1000

// CheckSessions is CheckSession for many sessions in one query: the
// periodic rechecks of a node's streams, gathered (package mailbox). It
// returns one result per ref, in order, as CheckSession would give it; an
// error of its own means it could not tell for any of them.
func (s *Service) CheckSessions(ctx context.Context, refs []string) ([]error, error) {
	if len(refs) > MaxCheckSessions {
		return nil, fmt.Errorf("identity.check sessions: %d, at most %d", len(refs), MaxCheckSessions)
	}
	if len(refs) == 0 {
		return nil, nil
	}
	cols := checkSessionsSQL(s.db.Dialect())
	var rows *sql.Rows
	var err error
	if s.db.Dialect() == db.Postgres {
		rows, err = s.db.Query(ctx, cols+`= ANY($1)`, refs)
	} else {
		in, args := db.In(refs)
		rows, err = s.db.Query(ctx, cols+`IN (`+in+`)`, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("identity.check sessions: %w", err)
	}
	defer rows.Close()
	now := s.now().Unix()
	found := make(map[string]error, len(refs))
	for rows.Next() {
		var ref string
		var expires int64
		var revoked int
		var devRevoked sql.NullInt64
		if err := rows.Scan(&ref, &expires, &revoked, &devRevoked); err != nil {
			return nil, fmt.Errorf("identity.check sessions: %w", err)
		}
		switch {
		case devRevoked.Valid:
			found[ref] = ErrUnknownDevice
		case revoked != 0, expires <= now:
			found[ref] = ErrSessionEnded
		default:
			found[ref] = nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("identity.check sessions: %w", err)
	}
	out := make([]error, len(refs))
	for i, ref := range refs {
		if err, ok := found[ref]; ok {
			out[i] = err
		} else {
			out[i] = ErrSessionEnded // no such session
		}
	}
	return out, nil
}

// AddSessionEndNotice registers f to be called after sessions have ended
// and the change has committed. Call it while wiring, before serving.
func (s *Service) AddSessionEndNotice(f func(SessionEnd)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = append(s.ended, f)
}

// sessionsEnded tells every SessionEnd notice. Call it after the
// transaction that revoked the sessions has committed, never inside it:
// a connection closed for a change that then rolls back would just
// reconnect, but one told before the commit could reconnect in between
// and be missed.
func (s *Service) sessionsEnded(e SessionEnd) {
	s.mu.Lock()
	fs := slices.Clone(s.ended)
	s.mu.Unlock()
	for _, f := range fs {
		f(e)
	}
}

// endAccountSessionsTx revokes every session and refresh token of account
// except those of the login keep ("" keeps none).
func endAccountSessionsTx(ctx context.Context, tx *sql.Tx, account, keep string) error {
	for _, q := range []string{
		`UPDATE identity_sessions SET revoked = 1 WHERE account_id = $1 AND family <> $2`,
		`UPDATE identity_refresh_tokens SET revoked = 1 WHERE account_id = $1 AND family <> $2`,
	} {
		if _, err := tx.ExecContext(ctx, q, account, keep); err != nil {
			return err
		}
	}
	return nil
}
