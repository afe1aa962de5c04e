package identity

import (
	"context"
	"crypto"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

// certSkew backdates certificates a little so that a client whose clock is
// slightly behind accepts a fresh one.
const certSkew = 5 * time.Minute

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func parsePEMCert(s string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("identity: stored certificate is not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}

func checkDeviceName(name string) error {
	if name == "" || len(name) > MaxDeviceNameBytes || strings.TrimSpace(name) != name {
		return validationf("name must be 1 to %d bytes without leading or trailing space", MaxDeviceNameBytes)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return validationf("name must not contain control characters")
		}
	}
	return nil
}

var errInvalidCSR = web.Errorf(http.StatusBadRequest, TypeInvalidCSR, "Invalid CSR", "the request cannot be parsed or its signature does not match its key")

func decodeCSR(s string) ([]byte, error) {
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(der) == 0 || len(der) > ca.MaxCSRSize {
		return nil, web.Errorf(http.StatusBadRequest, TypeInvalidCSR, "Invalid CSR", "csr must be base64 (standard) of a DER PKCS#10 request")
	}
	return der, nil
}

// issueDevice asks the CA for a certificate and maps its errors to problems.
func (s *Service) issueDevice(csr []byte, accountID, deviceID string, level ca.Level) (*x509.Certificate, error) {
	cert, err := s.ca.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: accountID, DeviceID: deviceID, Level: level,
		NotBefore: s.now().Add(-certSkew)})
	switch {
	case errors.Is(err, ca.ErrUnsupportedKey):
		return nil, web.Errorf(http.StatusBadRequest, TypeUnsupportedKey, "Unsupported key", "device keys must be ECDSA P-256 or Ed25519")
	case errors.Is(err, ca.ErrBadCSR):
		return nil, errInvalidCSR
	case err != nil:
		return nil, err
	}
	return cert, nil
}

// certLevel is the level a new device certificate carries: substantial
// once the account has a password, since a login then proves both.
func certLevel(password string) ca.Level {
	if password != "" {
		return ca.LevelSubstantial
	}
	return ca.LevelLow
}

func (s *Service) handleEnroll(w http.ResponseWriter, r *http.Request) error {
	var req EnrollRequest
	if err := web.DecodeJSON(w, r, &req, maxCSRBody); err != nil {
		return err
	}
	if err := checkDeviceName(req.Name); err != nil {
		return err
	}
	csr, err := decodeCSR(req.CSR)
	if err != nil {
		return err
	}
	ctx := r.Context()
	c := callerFrom(ctx)
	if !c.setup && c.p.Level < ca.LevelSubstantial {
		return web.Errorf(http.StatusForbidden, web.TypeInsufficientLevel, "Insufficient level of assurance",
			"enrolling a further device needs a substantial session")
	}
	if !c.setup {
		// A further device is approved by the session's device with its
		// key, not by the bearer token alone: a copied token must not be
		// enough to add the thief's device, which would get the account's
		// memberships.
		if err := s.checkApproval(ctx, c.p.DeviceID, csr, req.ChallengeID, req.Signature); err != nil {
			return err
		}
	}
	accountID := c.p.AccountID
	password, err := s.accountPassword(ctx, accountID)
	if err != nil {
		return err
	}
	level := certLevel(password)
	deviceID, err := newID(s.rand, "dev_")
	if err != nil {
		return err
	}
	cert, err := s.issueDevice(csr, accountID, deviceID, level)
	if err != nil {
		return err
	}
	now := s.now()
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		// The count and the insert below must not interleave with another
		// enrolment of the account: one setup token, one device; at most
		// MaxDevices however many enrolments race.
		if err := s.db.Lock(ctx, tx, "identity.devices:"+accountID); err != nil {
			return err
		}
		var all, active int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END), 0)
			FROM identity_devices WHERE account_id = $1`, accountID).Scan(&all, &active); err != nil {
			return err
		}
		if c.setup && all > 0 {
			return web.Errorf(http.StatusForbidden, web.TypeForbidden, "Setup token spent",
				"a setup token enrolls only the first device; log in with it to enroll more")
		}
		if active >= MaxDevices {
			return web.Errorf(http.StatusConflict, TypeTooManyDevices, "Too many devices",
				"an account may have at most %d active devices; remove one first", MaxDevices)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_devices (id, account_id, name, level, cert_pem, cert_serial, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			deviceID, accountID, req.Name, int(level), pemCert(cert.Raw), cert.SerialNumber.String(), cert.NotAfter.Unix(), now.Unix()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_device_certs (serial, device_id, not_after) VALUES ($1, $2, $3)`,
			cert.SerialNumber.String(), deviceID, cert.NotAfter.Unix()); err != nil {
			return err
		}
		if err := s.appendLog(ctx, tx, deviceEntry(transparency.KindDevice, accountID, deviceID, cert.Raw, now.Unix())); err != nil {
			return err
		}
		return s.issueMembershipsForDevice(ctx, tx, accountID, deviceID, cert.PublicKey)
	})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, EnrollResponse{DeviceID: deviceID, Certificate: pemCert(cert.Raw), CA: string(s.ca.RootPEM()), Intermediates: s.intermediatesPEM(), Level: level.String()})
	return nil
}

func (s *Service) handleListDevices(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	rows, err := s.db.Query(r.Context(), `SELECT id, name, level, created_at, expires_at, revoked_at
		FROM identity_devices WHERE account_id = $1 ORDER BY created_at, id`, p.AccountID)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := DeviceList{Devices: []Device{}}
	now := s.now().Unix()
	for rows.Next() {
		var d Device
		var level int
		var created, expires int64
		var revoked sql.NullInt64
		if err := rows.Scan(&d.DeviceID, &d.Name, &level, &created, &expires, &revoked); err != nil {
			return err
		}
		d.Level, d.CreatedAt, d.ExpiresAt, d.RevokedAt = ca.Level(level).String(), unixTime(created), unixTime(expires), nullTime(revoked)
		switch {
		case revoked.Valid:
			d.Status = StatusRevoked
		case expires <= now:
			d.Status = StatusExpired
		default:
			d.Status = StatusActive
		}
		out.Devices = append(out.Devices, d)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

var errNoDevice = web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such device", "the account has no device with this id")

// ownDevice checks that deviceID belongs to the caller's account, and
// that acting on a device other than the caller's own needs a
// substantial session: a low session must not touch the other devices.
func ownDevice(p Principal, deviceAccount, deviceID string) error {
	if deviceAccount != p.AccountID {
		return errNoDevice
	}
	if deviceID != p.DeviceID && p.Level < ca.LevelSubstantial {
		return web.Errorf(http.StatusForbidden, web.TypeInsufficientLevel, "Insufficient level of assurance",
			"acting on another of your devices needs a substantial session")
	}
	return nil
}

// checkApproval checks that device approver's current key signed
// ApproveMessage over a fresh approve challenge and this certificate
// request.
func (s *Service) checkApproval(ctx context.Context, approver string, csr []byte, challengeID, signature string) error {
	if parsed, err := x509.ParseCertificateRequest(csr); err != nil || parsed.CheckSignature() != nil {
		return errInvalidCSR
	}
	if challengeID == "" && signature == "" {
		return errNoApproval
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if !ca.ValidID(challengeID) || err != nil || len(sig) == 0 || len(sig) > 256 {
		return validationf("challenge_id must be an id and signature base64 (standard)")
	}
	now := s.now()
	nonce, err := s.consumeChallenge(ctx, now, challengeID, approver, ChallengeApprove)
	if err != nil {
		return err
	}
	var certPEM string
	if err := s.db.QueryRow(ctx, `SELECT cert_pem FROM identity_devices WHERE id = $1`, approver).Scan(&certPEM); err != nil {
		return err
	}
	id, err := s.currentCert(certPEM, now)
	if err != nil {
		return err
	}
	if !verifySignature(id.PublicKey, ApproveMessage(challengeID, approver, nonce, csr), sig) {
		return errBadKeyProof
	}
	return nil
}

var (
	errNoApproval = web.Errorf(http.StatusForbidden, TypeInvalidKeyProof, "Approval by the device key required",
		"enrolling a further device needs the approval of the session's device, signed with its key over a fresh approve challenge (see ApproveMessage)")
	errNoKeyProof = web.Errorf(http.StatusForbidden, TypeInvalidKeyProof, "Proof of the device key required",
		"a renewal must be signed by the device's current key over a fresh renew challenge (see RenewMessage); a session alone cannot change a device's key")
	errBadKeyProof = web.Errorf(http.StatusForbidden, TypeInvalidKeyProof, "Invalid proof of the device key",
		"the signature is not the device's current key's over this challenge and this certificate request")
)

// handleRenew issues a device a new certificate, for its current key or a
// new one. A session is not enough: whoever holds a copy of a bearer token
// could otherwise move the device — and its memberships — to a key of
// their own. The device's current key must sign the request (RenewMessage),
// and the new certificate says no more than this request proved: the
// session's level, or substantial with the password. A new key ends every
// login of the device, is limited per device and account, and is announced
// to the account's devices.
func (s *Service) handleRenew(w http.ResponseWriter, r *http.Request) error {
	var req RenewRequest
	if err := web.DecodeJSON(w, r, &req, maxCSRBody); err != nil {
		return err
	}
	csr, err := decodeCSR(req.CSR)
	if err != nil {
		return err
	}
	ctx := r.Context()
	p, _ := FromContext(ctx)
	now := s.now()
	deviceID := r.PathValue("id")
	var account, oldPEM string
	var revoked sql.NullInt64
	err = s.db.QueryRow(ctx, `SELECT account_id, cert_pem, revoked_at FROM identity_devices WHERE id = $1`, deviceID).Scan(&account, &oldPEM, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoDevice
	} else if err != nil {
		return err
	}
	if err := ownDevice(p, account, deviceID); err != nil {
		return err
	}
	if revoked.Valid {
		return web.Errorf(http.StatusConflict, TypeDeviceRevoked, "Device revoked", "a revoked device cannot be renewed; enroll a new one")
	}
	// A request that cannot be certified is refused before a challenge
	// is consumed.
	if parsed, err := x509.ParseCertificateRequest(csr); err != nil || parsed.CheckSignature() != nil {
		return errInvalidCSR
	}
	if req.ChallengeID == "" && req.Signature == "" {
		return errNoKeyProof
	}
	sig, err := base64.StdEncoding.DecodeString(req.Signature)
	if !ca.ValidID(req.ChallengeID) || err != nil || len(sig) == 0 || len(sig) > 256 {
		return validationf("challenge_id must be an id and signature base64 (standard)")
	}
	if len(req.Password) > MaxPasswordBytes {
		return errInvalidCredentials
	}
	nonce, err := s.consumeChallenge(ctx, now, req.ChallengeID, deviceID, ChallengeRenew)
	if err != nil {
		return err
	}
	old, err := s.currentCert(oldPEM, now)
	if err != nil {
		return err
	}
	if !verifySignature(old.PublicKey, RenewMessage(req.ChallengeID, deviceID, nonce, csr), sig) {
		return errBadKeyProof
	}

	password, err := s.accountPassword(ctx, account)
	if err != nil {
		return err
	}
	// The level is what this request proved, never what the account could
	// prove: the session's level (high only after a fresh eID login with
	// this device's proof), or substantial with the password checked here.
	level := p.Level
	if req.Password != "" {
		if err := s.checkPassword(ctx, w, now, account, password, req.Password, "addr:"+s.clientAddr(r)); err != nil {
			return err
		}
		level = max(level, ca.LevelSubstantial)
	}
	if level < ca.LevelHigh {
		level = min(level, certLevel(password))
	}
	cert, err := s.issueDevice(csr, account, deviceID, level)
	if err != nil {
		return err
	}
	keyChanged := !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(old.PublicKey)
	renewHooks := s.renewalHooks()
	var wait time.Duration
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		wait = 0
		if keyChanged {
			for _, l := range []struct {
				key string
				max int
			}{{"keychange:device:" + deviceID, MaxKeyChangesPerDevice}, {"keychange:account:" + account, MaxKeyChangesPerAccount}} {
				d, err := countKeyChange(ctx, tx, now, l.key, l.max)
				if err != nil {
					return err
				}
				wait = max(wait, d)
			}
			if wait > 0 {
				return errRollback
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE identity_devices SET level = $1, cert_pem = $2, cert_serial = $3, expires_at = $4
			WHERE id = $5 AND revoked_at IS NULL AND cert_pem = $6`,
			int(level), pemCert(cert.Raw), cert.SerialNumber.String(), cert.NotAfter.Unix(), deviceID, oldPEM)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return web.Errorf(http.StatusConflict, web.TypeConflict, "Conflict", "the device changed concurrently; try again")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_device_certs (serial, device_id, not_after) VALUES ($1, $2, $3)`,
			cert.SerialNumber.String(), deviceID, cert.NotAfter.Unix()); err != nil {
			return err
		}
		if keyChanged {
			// A new key usually means the old one is suspect: the old
			// certificate goes on the CRL rather than waiting to expire,
			// and every login made with it ends.
			if _, err := tx.ExecContext(ctx, `UPDATE identity_device_certs SET revoked_at = $1 WHERE serial = $2 AND revoked_at IS NULL`,
				now.Unix(), old.Serial.String()); err != nil {
				return err
			}
			if err := endDeviceSessions(ctx, tx, deviceID); err != nil {
				return err
			}
			if err := audit(ctx, tx, now.Unix(), "account:"+p.AccountID, "device.key_change", "", account, deviceID); err != nil {
				return err
			}
		}
		// The new certificate, and the memberships that name the old one
		// ending, go into the transparency log with the change.
		entries, err := endedMemberships(ctx, tx, now.Unix(), `SELECT org_id, account_id, device_id, cert_pem FROM identity_memberships
			WHERE device_id = $1 AND revoked_at IS NULL ORDER BY serial`, deviceID)
		if err != nil {
			return err
		}
		if err := s.appendLog(ctx, tx, append([]transparency.Entry{deviceEntry(transparency.KindDevice, account, deviceID, cert.Raw, now.Unix())}, entries...)...); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE identity_memberships SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL`, now.Unix(), deviceID); err != nil {
			return err
		}
		if err := s.issueMembershipsForDevice(ctx, tx, account, deviceID, cert.PublicKey); err != nil {
			return err
		}
		for _, h := range renewHooks {
			if err := h(ctx, tx, account, deviceID, cert.Raw); err != nil {
				return fmt.Errorf("identity: renewal hook: %w", err)
			}
		}
		return nil
	})
	if errors.Is(err, errRollback) {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return web.Errorf(http.StatusTooManyRequests, web.TypeRateLimited, "Too many key changes",
			"a device may change its key %d times and an account %d times in %s; try again in %d seconds",
			MaxKeyChangesPerDevice, MaxKeyChangesPerAccount, KeyChangeWindow, secs).With("retry_after", secs)
	}
	if err != nil {
		return err
	}
	if keyChanged {
		s.sessionsEnded(SessionEnd{Reason: EndKeyChanged, Device: deviceID})
		for _, n := range s.keyChangeNotices() {
			n(account, deviceID)
		}
	}
	web.WriteJSON(w, http.StatusOK, EnrollResponse{DeviceID: deviceID, Certificate: pemCert(cert.Raw), CA: string(s.ca.RootPEM()), Intermediates: s.intermediatesPEM(), Level: level.String()})
	return nil
}

// countKeyChange counts one key change against key in a fixed window of
// KeyChangeWindow and returns how long to wait if that makes more than
// limit. It keeps its counter in identity_throttle, with failures as the
// count and locked_until as the end of the window, in one statement, so
// that concurrent renewals on any node each see the others' counts. The
// count is rolled back with a refused renewal.
func countKeyChange(ctx context.Context, tx *sql.Tx, now time.Time, key string, limit int) (time.Duration, error) {
	var n int
	var end int64
	err := tx.QueryRowContext(ctx, `INSERT INTO identity_throttle (key, failures, locked_until, updated_at) VALUES ($1, 1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET
			failures = CASE WHEN identity_throttle.locked_until <= $3 THEN 1 ELSE identity_throttle.failures + 1 END,
			locked_until = CASE WHEN identity_throttle.locked_until <= $3 THEN $2 ELSE identity_throttle.locked_until END,
			updated_at = $3
		RETURNING failures, locked_until`, key, now.Add(KeyChangeWindow).Unix(), now.Unix()).Scan(&n, &end)
	if err != nil {
		return 0, err
	}
	if n <= limit {
		return 0, nil
	}
	return max(time.Unix(end, 0).Sub(now), time.Second), nil
}

// endDeviceSessions ends every session and refresh token of a device and
// drops its open challenges, inside tx. A revocation and a key change call
// it: it is the one place where all logins of a device end.
func endDeviceSessions(ctx context.Context, tx *sql.Tx, deviceID string) error {
	for _, q := range []string{
		`UPDATE identity_sessions SET revoked = 1 WHERE device_id = $1`,
		`UPDATE identity_refresh_tokens SET revoked = 1 WHERE device_id = $1`,
		`DELETE FROM identity_challenges WHERE device_id = $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, deviceID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, _ := FromContext(ctx)
	deviceID := r.PathValue("id")
	var account string
	err := s.db.QueryRow(ctx, `SELECT account_id FROM identity_devices WHERE id = $1`, deviceID).Scan(&account)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoDevice
	} else if err != nil {
		return err
	}
	if err := ownDevice(p, account, deviceID); err != nil {
		return err
	}
	if err := s.RevokeDevice(ctx, deviceID, "account:"+p.AccountID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// RevokeDevice revokes a device at once, in one transaction: its sessions
// and refresh tokens die, its certificates go on the CRL, its membership
// certificates are revoked, and every RevocationHook runs. Revoking a
// revoked device does nothing.
func (s *Service) RevokeDevice(ctx context.Context, deviceID, actor string) error {
	now := s.now().Unix()
	hooks := s.revocationHooks()
	revoked := false
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		revoked, err = s.revokeDeviceTx(ctx, tx, hooks, deviceID, actor, now)
		return err
	})
	if err == nil && revoked {
		// Effects outside the database — closing the device's streams on
		// every node — come after the commit, through the session-end
		// notices.
		s.sessionsEnded(SessionEnd{Reason: EndDeviceRevoked, Device: deviceID})
	}
	return err
}

// revokeDeviceTx is RevokeDevice inside tx; it reports whether the device
// was active.
func (s *Service) revokeDeviceTx(ctx context.Context, tx *sql.Tx, hooks []RevocationHook, deviceID, actor string, now int64) (bool, error) {
	var account string
	res, err := tx.ExecContext(ctx, `UPDATE identity_devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, now, deviceID)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	var certPEM string
	if err := tx.QueryRowContext(ctx, `SELECT account_id, cert_pem FROM identity_devices WHERE id = $1`, deviceID).Scan(&account, &certPEM); err != nil {
		return false, err
	}
	cert, err := parsePEMCert(certPEM)
	if err != nil {
		return false, err
	}
	entries, err := endedMemberships(ctx, tx, now, `SELECT org_id, account_id, device_id, cert_pem FROM identity_memberships
		WHERE device_id = $1 AND revoked_at IS NULL ORDER BY serial`, deviceID)
	if err != nil {
		return false, err
	}
	if err := s.appendLog(ctx, tx, append([]transparency.Entry{deviceEntry(transparency.KindDeviceRevoked, account, deviceID, cert.Raw, now)}, entries...)...); err != nil {
		return false, err
	}
	for _, q := range []string{
		`UPDATE identity_device_certs SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL`,
		`UPDATE identity_memberships SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL`,
	} {
		if _, err := tx.ExecContext(ctx, q, now, deviceID); err != nil {
			return false, err
		}
	}
	if err := endDeviceSessions(ctx, tx, deviceID); err != nil {
		return false, err
	}
	for _, h := range hooks {
		if err := h(ctx, tx, deviceID); err != nil {
			return false, fmt.Errorf("identity: revocation hook: %w", err)
		}
	}
	return true, audit(ctx, tx, now, actor, "device.revoke", "", account, deviceID)
}
