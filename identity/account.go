package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
)

func validationf(format string, args ...any) *web.Problem {
	return web.Errorf(http.StatusBadRequest, web.TypeValidation, "Invalid request", format, args...)
}

var errInvalidEmail = web.Errorf(http.StatusBadRequest, TypeInvalidEmail, "Invalid e-mail address",
	"give a plain address such as name@example.de")

// normalizeEmail accepts a bare address (no display name, no angle
// brackets, no line breaks) and lower-cases it, so that one mailbox is one
// account. It refuses what is not text — invalid UTF-8, control
// characters, U+FFFD (what a decoder makes of bytes that were not UTF-8,
// or of an escaped lone surrogate) — and a domain that is an address
// literal (a@[127.0.0.1]): a sign-up names a mail domain, never a host.
func normalizeEmail(s string) (string, bool) {
	if s == "" || len(s) > MaxEmailBytes || !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\t \"<>()[]\uFFFD") {
		return "", false
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", false
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || !strings.Contains(s[at+1:], ".") || strings.HasSuffix(s, ".") {
		return "", false
	}
	return strings.ToLower(s), true
}

func (s *Service) handleSignup(w http.ResponseWriter, r *http.Request) error {
	var req SignupRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	email, ok := normalizeEmail(req.Email)
	if !ok {
		return errInvalidEmail
	}
	ctx := r.Context()
	now := s.now()
	// A code is drawn whether or not it is needed, so both paths do the
	// same work and take the same time.
	code, err := newCode(s.rand)
	if err != nil {
		return err
	}
	client := signupClient(s.clientAddr(r))
	var exists, limited bool
	var retry time.Duration
	var limitedFor string
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		exists, limited, retry = false, false, 0
		// The deployment's limit, then the client's: a refused sign-up
		// rolls back and counts against nothing.
		for _, l := range []struct {
			key, what string
			max       int
		}{
			{"signup:global", "on this server right now", s.signups.Global},
			{"signup:client:" + client, "from your network", s.signups.PerClient},
		} {
			d, err := countWindow(ctx, tx, l.key, l.max, SignupWindow, now)
			if err != nil {
				return err
			}
			if d > 0 {
				retry, limitedFor = d, l.what
				return errRollback
			}
		}
		var one int
		switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM identity_accounts WHERE email = $1`, email).Scan(&one); {
		case err == nil:
			exists = true
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		sends, window := 0, now.Unix()
		var prevSends int
		var prevWindow int64
		switch err := tx.QueryRowContext(ctx, `SELECT sends, window_start FROM identity_signups WHERE email = $1`, email).Scan(&prevSends, &prevWindow); {
		case err == nil:
			if now.Unix()-prevWindow < int64(SignupWindow.Seconds()) {
				sends, window = prevSends, prevWindow
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if sends >= MaxSignupsPerWindow {
			limited = true
			return errRollback
		}
		codeHash := ""
		if !exists {
			codeHash = codeMAC(s.codeKey, email, code)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_signups (email, code_hash, expires_at, attempts, used, sends, window_start)
			VALUES ($1, $2, $3, 0, 0, $4, $5)
			ON CONFLICT (email) DO UPDATE SET code_hash = $2, expires_at = $3, attempts = 0, used = 0, sends = $4, window_start = $5`,
			email, codeHash, now.Add(CodeLifetime).Unix(), sends+1, window)
		return err
	})
	if err != nil && !errors.Is(err, errRollback) {
		return err
	}
	if retry > 0 {
		secs := int((retry + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return web.Errorf(http.StatusTooManyRequests, web.TypeRateLimited, "Too many sign-ups",
			"too many sign-ups %s; try again in %d seconds", limitedFor, secs).With("retry_after", secs)
	}
	if limited {
		w.Header().Set("Retry-After", strconv.Itoa(int(SignupWindow.Seconds())))
		return web.Errorf(http.StatusTooManyRequests, web.TypeRateLimited, "Too many sign-ups",
			"too many codes were requested for this address; try again later")
	}
	msg := Message{To: email, Subject: "Ihr kanal-Code / your kanal code", Body: fmt.Sprintf(
		"Ihr Bestätigungscode lautet: %s\nEr gilt %d Minuten.\n\nYour confirmation code is: %s\nIt is valid for %d minutes.\n\nWenn Sie sich nicht angemeldet haben, ignorieren Sie diese Nachricht.\nIf you did not sign up, ignore this message.\n",
		code, int(CodeLifetime.Minutes()), code, int(CodeLifetime.Minutes()))}
	if exists {
		msg = Message{To: email, Subject: "Sie haben bereits ein kanal-Konto / you already have a kanal account", Body: "Jemand hat versucht, mit dieser Adresse ein neues kanal-Konto anzulegen. Sie haben bereits eines: melden Sie sich mit einem Ihrer Geräte an.\n\nSomeone tried to sign up for kanal with this address. You already have an account: log in with one of your devices.\n\nWenn Sie das nicht waren, ignorieren Sie diese Nachricht.\nIf this was not you, ignore this message.\n"}
	}
	if err := s.mailer.Send(ctx, msg); err != nil {
		return fmt.Errorf("send sign-up mail: %w", err)
	}
	web.WriteJSON(w, http.StatusAccepted, SignupResponse{Status: SignupStatusCodeSent})
	return nil
}

func invalidCode(detail string) *web.Problem {
	return web.Errorf(http.StatusBadRequest, TypeInvalidCode, "Invalid code", "%s", detail)
}

func (s *Service) handleVerify(w http.ResponseWriter, r *http.Request) error {
	var req VerifyRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	email, ok := normalizeEmail(req.Email)
	if !ok {
		return errInvalidEmail
	}
	ctx := r.Context()
	now := s.now()
	accountID, err := newID(s.rand, "acc_")
	if err != nil {
		return err
	}
	token, tokenHash, err := newToken(s.rand, prefixSetup)
	if err != nil {
		return err
	}
	mac := codeMAC(s.codeKey, email, req.Code)
	var fail *web.Problem
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		fail = nil
		// An attempt is counted before the code is compared, by a
		// conditional update: under READ COMMITTED, concurrent guesses
		// queue on the row and each sees the count the one before left,
		// so at most MaxCodeAttempts guesses are ever compared.
		res, err := tx.ExecContext(ctx, `UPDATE identity_signups SET attempts = attempts + 1 WHERE email = $1 AND attempts < $2 AND used = 0`,
			email, MaxCodeAttempts)
		if err != nil {
			return err
		}
		counted, _ := res.RowsAffected()
		var stored string
		var expires int64
		var attempts, used int
		err = tx.QueryRowContext(ctx, `SELECT code_hash, expires_at, attempts, used FROM identity_signups WHERE email = $1`, email).
			Scan(&stored, &expires, &attempts, &used)
		if errors.Is(err, sql.ErrNoRows) {
			fail = invalidCode("the code is wrong or has expired")
			return nil
		} else if err != nil {
			return err
		}
		switch {
		case used != 0:
			fail = invalidCode("the code was already used; request a new one")
		case counted != 1:
			fail = invalidCode("too many wrong attempts; request a new code")
		case expires <= now.Unix():
			fail = invalidCode("the code has expired; request a new one")
		case stored == "" || !validCode(req.Code) || !equalSecret(stored, mac):
			fail = invalidCode("the code is wrong or has expired")
		}
		if fail != nil {
			// The attempt counts even if the code had already expired, and
			// the counter commits: the error is returned after the commit.
			return nil
		}
		if res, err := tx.ExecContext(ctx, `UPDATE identity_signups SET used = 1 WHERE email = $1 AND used = 0`, email); err != nil {
			return err
		} else if n, _ := res.RowsAffected(); n != 1 {
			fail = invalidCode("the code was already used; request a new one")
			return errRollback
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_accounts (id, email, password, created_at) VALUES ($1, $2, '', $3)`,
			accountID, email, now.Unix()); err != nil {
			if db.IsUniqueViolation(err) {
				fail = invalidCode("the code is wrong or has expired")
				return errRollback
			}
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO identity_setup_tokens (token_hash, account_id, expires_at) VALUES ($1, $2, $3)`,
			tokenHash, accountID, now.Add(SetupTokenLifetime).Unix())
		return err
	})
	if err != nil && !errors.Is(err, errRollback) {
		return err
	}
	if fail != nil {
		return fail
	}
	web.WriteJSON(w, http.StatusOK, VerifyResponse{AccountID: accountID, SetupToken: token, ExpiresAt: unixTime(now.Add(SetupTokenLifetime).Unix())})
	return nil
}

// errRollback makes db.Tx roll back a transaction whose outcome is a
// client error already recorded elsewhere.
var errRollback = errors.New("identity: rollback")

func checkPasswordShape(pw string) error {
	if len(pw) > MaxPasswordBytes {
		return web.Errorf(http.StatusBadRequest, TypeWeakPassword, "Unacceptable password", "a password may have at most %d bytes", MaxPasswordBytes)
	}
	if !utf8.ValidString(pw) || utf8.RuneCountInString(pw) < MinPasswordLength {
		return web.Errorf(http.StatusBadRequest, TypeWeakPassword, "Unacceptable password", "a password needs at least %d characters", MinPasswordLength)
	}
	return nil
}

func (s *Service) handlePassword(w http.ResponseWriter, r *http.Request) error {
	var req PasswordRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if err := checkPasswordShape(req.Password); err != nil {
		return err
	}
	if len(req.CurrentPassword) > MaxPasswordBytes {
		return validationf("current_password is too long")
	}
	ctx := r.Context()
	c := callerFrom(ctx)
	current, err := s.accountPassword(ctx, c.p.AccountID)
	if err != nil {
		return err
	}
	if current != "" {
		// Changing a password needs the old one, whatever the token: a
		// stolen session must not be able to lock the owner out.
		if req.CurrentPassword == "" {
			return web.Errorf(http.StatusForbidden, TypePasswordRequired, "Current password required",
				"the account has a password; send it as current_password")
		}
		ok, _, err := verifyPassword(current, req.CurrentPassword, s.argon)
		if err != nil {
			return err
		}
		if !ok {
			return web.Errorf(http.StatusForbidden, TypePasswordRequired, "Current password required",
				"current_password is not the account's password")
		}
	}
	phc, err := hashPassword(s.rand, s.argon, req.Password)
	if err != nil {
		return err
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		// Compare-and-set: a concurrent change wins, this one fails.
		res, err := tx.ExecContext(ctx, `UPDATE identity_accounts SET password = $1 WHERE id = $2 AND password = $3`, phc, c.p.AccountID, current)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return web.Errorf(http.StatusConflict, web.TypeConflict, "Conflict", "the password was changed concurrently")
		}
		if current == "" {
			return nil
		}
		// A changed password ends every other login of the account: one
		// who changes it because it leaked must not leave the thief's
		// sessions (or their streams) running.
		return endAccountSessionsTx(ctx, tx, c.p.AccountID, c.family)
	})
	if err != nil {
		return err
	}
	if current != "" {
		s.sessionsEnded(SessionEnd{Reason: EndPasswordChanged, Account: c.p.AccountID, KeepFamily: c.family})
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) accountPassword(ctx context.Context, accountID string) (string, error) {
	var pw string
	err := s.db.QueryRow(ctx, `SELECT password FROM identity_accounts WHERE id = $1`, accountID).Scan(&pw)
	return pw, err
}

// signupClient is the key a client address's sign-ups count against: the
// address itself for IPv4, its /64 for IPv6, since anyone with an IPv6
// connection holds a whole /64.
func signupClient(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil {
		return addr
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// countWindow counts one event against key in fixed windows of length
// window, in one statement (so concurrent counts queue on the row), and
// returns how long until the window ends if the count is now past limit,
// else 0. The counters share identity_throttle with login throttling,
// under keys of their own: failures holds the count, updated_at the start
// of the window.
func countWindow(ctx context.Context, tx *sql.Tx, key string, limit int, window time.Duration, now time.Time) (time.Duration, error) {
	var n int
	var start int64
	err := tx.QueryRowContext(ctx, `INSERT INTO identity_throttle (key, failures, locked_until, updated_at) VALUES ($1, 1, 0, $2)
		ON CONFLICT (key) DO UPDATE SET
			failures = CASE WHEN identity_throttle.updated_at <= $3 THEN 1 ELSE identity_throttle.failures + 1 END,
			updated_at = CASE WHEN identity_throttle.updated_at <= $3 THEN $2 ELSE identity_throttle.updated_at END
		RETURNING failures, updated_at`, key, now.Unix(), now.Add(-window).Unix()).Scan(&n, &start)
	if err != nil {
		return 0, err
	}
	if n <= limit {
		return 0, nil
	}
	return max(time.Unix(start, 0).Add(window).Sub(now), time.Second), nil
}

// ExpireSignups deletes sign-ups whose code has expired and whose
// per-address window has ended, and sign-up counters of ended windows,
// and returns how many sign-ups it deleted. kanald's sweep calls it; with
// the global limit it bounds the unverified sign-ups ever stored.
func (s *Service) ExpireSignups(ctx context.Context) (int64, error) {
	now := s.now()
	ended := now.Add(-SignupWindow).Unix()
	var n int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM identity_signups WHERE window_start <= $1 AND expires_at <= $2`, ended, now.Unix())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `DELETE FROM identity_throttle WHERE key LIKE 'signup:%' AND updated_at <= $1`, ended)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("identity: expire sign-ups: %w", err)
	}
	return n, nil
}
