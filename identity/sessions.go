package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
)

var (
	errInvalidChallenge = web.Errorf(http.StatusUnauthorized, TypeInvalidChallenge, "Invalid challenge",
		"the challenge is unknown, expired, already used or for another device; request a new one")
	errInvalidCredentials = web.Errorf(http.StatusUnauthorized, TypeInvalidCredentials, "Invalid credentials",
		"the device signature or the password is wrong")
)

func (s *Service) handleChallenge(w http.ResponseWriter, r *http.Request) error {
	var req ChallengeRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if !ca.ValidID(req.DeviceID) {
		return validationf("device_id is not a device id")
	}
	purpose := req.Purpose
	switch purpose {
	case "":
		purpose = ChallengeLogin
	case ChallengeLogin, ChallengeRenew, ChallengeApprove, ChallengeExport, ChallengeErase, ChallengeEID:
	default:
		return validationf("purpose must be %q, %q, %q, %q, %q or %q", ChallengeLogin, ChallengeRenew, ChallengeApprove, ChallengeExport, ChallengeErase, ChallengeEID)
	}
	ctx := r.Context()
	var revoked sql.NullInt64
	var certExpires int64
	err := s.db.QueryRow(ctx, `SELECT revoked_at, expires_at FROM identity_devices WHERE id = $1`, req.DeviceID).Scan(&revoked, &certExpires)
	if errors.Is(err, sql.ErrNoRows) {
		return errInvalidCredentials
	} else if err != nil {
		return err
	}
	if revoked.Valid {
		return errDeviceRevoked
	}
	if certExpires <= s.now().Unix() {
		return errDeviceExpired
	}
	id, err := newID(s.rand, "chl_")
	if err != nil {
		return err
	}
	nonce, err := readRandom(s.rand, NonceBytes)
	if err != nil {
		return err
	}
	now := s.now()
	exp := now.Add(ChallengeLifetime)
	n64 := base64.StdEncoding.EncodeToString(nonce)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		// Expired challenges of this device are swept as new ones come.
		if _, err := tx.ExecContext(ctx, `DELETE FROM identity_challenges WHERE device_id = $1 AND expires_at <= $2`, req.DeviceID, now.Unix()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_challenges (id, device_id, purpose, nonce, expires_at, used) VALUES ($1, $2, $3, $4, $5, 0)`,
			id, req.DeviceID, purpose, n64, exp.Unix())
		return err
	})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, ChallengeResponse{ChallengeID: id, Nonce: n64, ExpiresAt: unixTime(exp.Unix())})
	return nil
}

// verifySignature checks a device signature as LoginRequest documents.
func verifySignature(pub any, msg, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, d[:], sig)
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig)
	}
	return false
}

// clientAddr is the address login failures and sign-ups are counted against.
func (s *Service) clientAddr(r *http.Request) string {
	if s.proxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip := net.ParseIP(strings.TrimSpace(parts[len(parts)-1])); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var req LoginRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if !ca.ValidID(req.DeviceID) || !ca.ValidID(req.ChallengeID) {
		return validationf("challenge_id and device_id must be ids")
	}
	sig, err := base64.StdEncoding.DecodeString(req.Signature)
	if err != nil || len(sig) == 0 || len(sig) > 256 {
		return validationf("signature must be base64 (standard)")
	}
	if len(req.Password) > MaxPasswordBytes {
		return errInvalidCredentials
	}
	ctx := r.Context()
	now := s.now()
	addrKey := "addr:" + s.clientAddr(r)
	if wait, err := s.lockedFor(ctx, now, addrKey); err != nil {
		return err
	} else if wait > 0 {
		return throttled(w, wait)
	}

	nonce, err := s.consumeChallenge(ctx, now, req.ChallengeID, req.DeviceID, ChallengeLogin)
	if err != nil {
		return err
	}

	var account, certPEM, phc string
	var revoked sql.NullInt64
	err = s.db.QueryRow(ctx, `SELECT d.account_id, d.cert_pem, d.revoked_at, a.password FROM identity_devices d
		JOIN identity_accounts a ON a.id = d.account_id WHERE d.id = $1`, req.DeviceID).Scan(&account, &certPEM, &revoked, &phc)
	if errors.Is(err, sql.ErrNoRows) {
		return errInvalidCredentials
	} else if err != nil {
		return err
	}
	if revoked.Valid {
		return errDeviceRevoked
	}
	id, err := s.currentCert(certPEM, now)
	if err != nil {
		return err
	}
	if !verifySignature(id.PublicKey, LoginMessage(req.ChallengeID, req.DeviceID, nonce), sig) {
		if err := s.recordFailure(ctx, now, addrKey); err != nil {
			return err
		}
		return errInvalidCredentials
	}

	level := ca.LevelLow
	if req.Password != "" {
		if err := s.checkPassword(ctx, w, now, account, phc, req.Password, addrKey); err != nil {
			return err
		}
		level = min(ca.LevelSubstantial, id.Level)
	}
	family, err := newID(s.rand, "fam_")
	if err != nil {
		return err
	}
	resp, err := s.newSession(ctx, nil, account, req.DeviceID, family, level)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, resp)
	return nil
}

// consumeChallenge spends challenge id, which must be unused, unexpired,
// for device and for purpose, and returns its nonce. The challenge is
// consumed whatever happens next: one challenge, one try.
func (s *Service) consumeChallenge(ctx context.Context, now time.Time, id, device, purpose string) (nonce string, err error) {
	var chDevice, chPurpose string
	var chExpires int64
	var consumed bool
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		consumed = false
		err := tx.QueryRowContext(ctx, `SELECT device_id, purpose, nonce, expires_at FROM identity_challenges WHERE id = $1 AND used = 0`, id).
			Scan(&chDevice, &chPurpose, &nonce, &chExpires)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE identity_challenges SET used = 1 WHERE id = $1 AND used = 0`, id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		consumed = n == 1
		return nil
	})
	if err != nil {
		return "", err
	}
	if !consumed || chPurpose != purpose || chExpires <= now.Unix() || !equalSecret(chDevice, device) {
		return "", errInvalidChallenge
	}
	return nonce, nil
}

// currentCert parses a device's stored certificate and verifies it at
// now, the time of use: an expired certificate vouches for nothing.
func (s *Service) currentCert(certPEM string, now time.Time) (ca.DeviceIdentity, error) {
	cert, err := parsePEMCert(certPEM)
	if err != nil {
		return ca.DeviceIdentity{}, err
	}
	id, err := ca.VerifyDevice(cert.Raw, s.ca.Pool(), now)
	if errors.Is(err, ca.ErrExpired) {
		return ca.DeviceIdentity{}, errDeviceExpired
	}
	return id, err
}

// newSession stores a session and a refresh token of family, in tx or in
// a transaction of its own.
func (s *Service) newSession(ctx context.Context, tx *sql.Tx, account, device, family string, level ca.Level) (SessionResponse, error) {
	now := s.now()
	tok, tokHash, err := newToken(s.rand, prefixSession)
	if err != nil {
		return SessionResponse{}, err
	}
	ref, refHash, err := newToken(s.rand, prefixRefresh)
	if err != nil {
		return SessionResponse{}, err
	}
	exp := now.Add(SessionLifetime)
	insert := func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_sessions (token_hash, family, account_id, device_id, level, expires_at, revoked)
			VALUES ($1, $2, $3, $4, $5, $6, 0)`, tokHash, family, account, device, int(level), exp.Unix()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_refresh_tokens (token_hash, family, account_id, device_id, level, expires_at, used, revoked)
			VALUES ($1, $2, $3, $4, $5, $6, 0, 0)`, refHash, family, account, device, int(level), now.Add(RefreshLifetime).Unix())
		return err
	}
	if tx != nil {
		err = insert(tx)
	} else {
		err = s.db.Tx(ctx, insert)
	}
	if err != nil {
		return SessionResponse{}, err
	}
	return SessionResponse{Token: tok, RefreshToken: ref, ExpiresAt: unixTime(exp.Unix()), Level: level.String()}, nil
}

func throttled(w http.ResponseWriter, wait time.Duration) error {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return web.Errorf(http.StatusTooManyRequests, web.TypeRateLimited, "Too many failed logins",
		"try again in %d seconds", secs).With("retry_after", secs)
}

// lockedFor reports how long key is still locked out.
func (s *Service) lockedFor(ctx context.Context, now time.Time, key string) (time.Duration, error) {
	var until int64
	err := s.db.QueryRow(ctx, `SELECT locked_until FROM identity_throttle WHERE key = $1`, key).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if d := time.Unix(until, 0).Sub(now); d > 0 {
		return d, nil
	}
	return 0, nil
}

// lockout is how long a key is locked after its n-th failure.
func lockout(n int, free int) time.Duration {
	if n < free {
		return 0
	}
	d := LockoutBase
	for i := free; i < n && d < MaxLockout; i++ {
		d *= 2
	}
	return min(d, MaxLockout)
}

// recordFailure counts a failed login against keys. The counters live in
// the database so that every node sees them.
func (s *Service) recordFailure(ctx context.Context, now time.Time, keys ...string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, key := range keys {
			var failures int
			var updated int64
			err := tx.QueryRowContext(ctx, `SELECT failures, updated_at FROM identity_throttle WHERE key = $1`, key).Scan(&failures, &updated)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if now.Sub(time.Unix(updated, 0)) > FailureMemory {
				failures = 0
			}
			failures++
			free := FreeFailures
			if strings.HasPrefix(key, "addr:") {
				free = FreeAddrFailures
			}
			until := int64(0)
			if d := lockout(failures, free); d > 0 {
				until = now.Add(d).Unix()
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO identity_throttle (key, failures, locked_until, updated_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (key) DO UPDATE SET failures = $2, locked_until = $3, updated_at = $4`, key, failures, until, now.Unix()); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Service) clearFailures(ctx context.Context, key string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM identity_throttle WHERE key = $1`, key)
	return err
}

func (s *Service) handleRefresh(w http.ResponseWriter, r *http.Request) error {
	var req RefreshRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if !strings.HasPrefix(req.RefreshToken, prefixRefresh) || len(req.RefreshToken) > 128 {
		return errBadToken
	}
	ctx := r.Context()
	now := s.now().Unix()
	h := hashToken(req.RefreshToken)
	var resp SessionResponse
	var fail error
	var reused string // the family ended for reuse
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		fail, reused = nil, ""
		var stored, family, account, device string
		var level int
		var expires, devExpires int64
		var used, revoked int
		var devRevoked sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT t.token_hash, t.family, t.account_id, t.device_id, t.level, t.expires_at, t.used, t.revoked, d.revoked_at, d.expires_at
			FROM identity_refresh_tokens t JOIN identity_devices d ON d.id = t.device_id WHERE t.token_hash = $1`, h).
			Scan(&stored, &family, &account, &device, &level, &expires, &used, &revoked, &devRevoked, &devExpires)
		if errors.Is(err, sql.ErrNoRows) {
			fail = errBadToken
			return nil
		} else if err != nil {
			return err
		}
		switch {
		case !equalSecret(stored, h):
			fail = errBadToken
		case devRevoked.Valid:
			fail = errDeviceRevoked
		case revoked == 0 && used == 0 && devExpires <= now:
			fail = errDeviceExpired
		case revoked != 0 || expires <= now:
			fail = errBadToken
		case used != 0:
			// A used refresh token is presented again: either the client
			// or a thief holds a copy. Kill the whole family; the error is
			// returned after this commits.
			fail, reused = errRefreshReused, family
			return revokeFamily(ctx, tx, family)
		}
		if fail != nil {
			return nil
		}
		// Compare-and-set: of concurrent rotations with one token, one
		// marks it used; under READ COMMITTED the others wait for that
		// commit, match no row, and are the reuse the case above handles.
		res, err := tx.ExecContext(ctx, `UPDATE identity_refresh_tokens SET used = 1 WHERE token_hash = $1 AND used = 0 AND revoked = 0`, h)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			fail, reused = errRefreshReused, family
			return revokeFamily(ctx, tx, family)
		}
		resp, err = s.newSession(ctx, tx, account, device, family, ca.Level(level))
		return err
	})
	if err != nil {
		return err
	}
	if reused != "" {
		s.sessionsEnded(SessionEnd{Reason: EndRefreshReused, Family: reused})
	}
	if fail != nil {
		return fail
	}
	web.WriteJSON(w, http.StatusCreated, resp)
	return nil
}

var errRefreshReused = web.Errorf(http.StatusUnauthorized, TypeRefreshReused, "Refresh token reused",
	"this refresh token was already used; all sessions of this login are revoked")

// revokeFamily ends every session and refresh token of one login.
func revokeFamily(ctx context.Context, tx *sql.Tx, family string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE identity_sessions SET revoked = 1 WHERE family = $1`, family); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE identity_refresh_tokens SET revoked = 1 WHERE family = $1`, family)
	return err
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := callerFrom(ctx)
	err := s.db.Tx(ctx, func(tx *sql.Tx) error { return revokeFamily(ctx, tx, c.family) })
	if err != nil {
		return err
	}
	s.sessionsEnded(SessionEnd{Reason: EndLogout, Family: c.family})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, _ := FromContext(ctx)
	out := MeResponse{AccountID: p.AccountID, DeviceID: p.DeviceID, Level: p.Level.String(), Proofing: Proofing(p.Level), Organisations: []MyMembership{}}
	if err := s.db.QueryRow(ctx, `SELECT email FROM identity_accounts WHERE id = $1`, p.AccountID).Scan(&out.Email); err != nil {
		return err
	}
	var err error
	if out.EIDLinked, err = s.eidLinked(ctx, p.AccountID); err != nil {
		return err
	}
	rows, err := s.db.Query(ctx, `SELECT o.id, o.name, m.role FROM identity_members m JOIN identity_orgs o ON o.id = m.org_id
		WHERE m.account_id = $1 ORDER BY o.name, o.id`, p.AccountID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var m MyMembership
		if err := rows.Scan(&m.OrgID, &m.Name, &m.Role); err != nil {
			return err
		}
		out.Organisations = append(out.Organisations, m)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// checkPassword checks an account's password for a login, or for a request
// that proves it again (a renewal asking for a substantial certificate):
// throttled per account and client address, against a dummy hash when the
// account has none, so the answer and its timing are the same as for a
// wrong one, and failures counted. A hash made with weaker parameters
// than today's is replaced.
func (s *Service) checkPassword(ctx context.Context, w http.ResponseWriter, now time.Time, account, phc, password, addrKey string) error {
	accountKey := "account:" + account
	for _, key := range []string{addrKey, accountKey} {
		if wait, err := s.lockedFor(ctx, now, key); err != nil {
			return err
		} else if wait > 0 {
			return throttled(w, wait)
		}
	}
	stored := phc
	if stored == "" {
		stored = s.dummyPHC
	}
	ok, rehash, err := verifyPassword(stored, password, s.argon)
	if err != nil {
		return err
	}
	if !ok || phc == "" {
		if err := s.recordFailure(ctx, now, accountKey, addrKey); err != nil {
			return err
		}
		return errInvalidCredentials
	}
	if err := s.clearFailures(ctx, accountKey); err != nil {
		return err
	}
	if rehash {
		if fresh, err := hashPassword(s.rand, s.argon, password); err == nil {
			_, err = s.db.Exec(ctx, `UPDATE identity_accounts SET password = $1 WHERE id = $2 AND password = $3`, fresh, account, phc)
			if err != nil {
				s.log.WarnContext(ctx, "identity: password rehash", "err", err)
			}
		}
	}
	return nil
}
