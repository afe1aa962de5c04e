package identity

import (
	"context"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/oidc"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
)

// eID: level high.
//
// A device with a substantial session starts a login (POST /v1/eid/start)
// and opens the provider's URL in a browser. The provider sends the
// browser back to GET /v1/eid/callback, where kanald redeems the code,
// checks the ID token (identity/oidc), binds the identity to the account
// and seals the released attributes to a key the device made for this
// login. Only then does the device finish (POST /v1/eid/complete) with a
// signature by its certified key: a session becomes high by a fresh eID
// login and device proof together, never by one of them alone.
//
// The database never holds the subject: a binding is keyed by
// HMAC-SHA-256 under a key derived from the deployment secret of the
// issuer and subject (subjectMAC), so a dump alone cannot tell whose
// identity it is nor test a guessed one. Nor does it hold the state, the
// nonce or the PKCE verifier of a login: the flow row keeps the state's
// SHA-256, and nonce and verifier are HMACs of the state under that key.

// Flow statuses.
const (
	flowPending    = "pending"    // waiting for the browser
	flowExchanging = "exchanging" // a callback is redeeming the code
	flowDone       = "done"       // proven; the device may complete
	flowFailed     = "failed"     // refused; problem says why
)

var errEIDNotConfigured = web.Errorf(http.StatusNotImplemented, TypeNotConfigured, "eID not configured",
	"this deployment has no eID provider; level high is not available")

var errEIDState = web.Errorf(http.StatusBadRequest, TypeEIDState, "eID login not recognised",
	"this answer from the eID provider matches no eID login in progress (wrong, used or expired state); start again with: kanal eid link")

// subjectMAC is the stored form of an eID identity.
func (s *Service) subjectMAC(issuer, subject string) string {
	m := hmac.New(sha256.New, s.eidKey)
	m.Write([]byte("subject\x00"))
	m.Write([]byte(issuer))
	m.Write([]byte{0})
	m.Write([]byte(subject))
	return hex.EncodeToString(m.Sum(nil))
}

// flowSecret derives a flow's nonce or PKCE verifier from its state:
// 43 characters of base64url, as RFC 7636 asks of a verifier.
func (s *Service) flowSecret(purpose, state string) string {
	m := hmac.New(sha256.New, s.eidKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(state))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// attributesKEM is the KEM of the key attributes are sealed to.
func attributesKEM() hpke.KEM { return hpke.MLKEM768X25519() }

func (s *Service) handleEIDStart(w http.ResponseWriter, r *http.Request) error {
	if s.eid == nil {
		return errEIDNotConfigured
	}
	var req EIDStartRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	level := ca.LevelHigh
	switch req.Level {
	case "", "high":
	case "substantial":
		level = ca.LevelSubstantial
	default:
		return validationf(`level must be "high" or "substantial"`)
	}
	pub, err := base64.StdEncoding.DecodeString(req.SealKey)
	if err != nil || len(pub) > 4096 {
		return validationf("seal_key must be base64 (standard)")
	}
	if _, err := attributesKEM().NewPublicKey(pub); err != nil {
		return validationf("seal_key is not an HPKE MLKEM768-X25519 public key")
	}
	ctx := r.Context()
	p, _ := FromContext(ctx)
	id, err := newID(s.rand, "eid_")
	if err != nil {
		return err
	}
	raw, err := readRandom(s.rand, 32)
	if err != nil {
		return err
	}
	state := base64.RawURLEncoding.EncodeToString(raw)
	u, err := s.eid.AuthCodeURL(ctx, level, state, s.flowSecret("nonce", state), s.flowSecret("pkce", state))
	if err != nil {
		return eidProblem(err)
	}
	now := s.now()
	exp := now.Add(EIDFlowLifetime)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		// Old flows of this device go as new ones come.
		if _, err := tx.ExecContext(ctx, `DELETE FROM identity_eid_flows WHERE device_id = $1 AND (expires_at <= $2 OR status = $3)`, p.DeviceID, now.Unix(), flowPending); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_eid_flows (id, state_hash, account_id, device_id, level, seal_key, status, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, hashToken(state), p.AccountID, p.DeviceID, int(level), req.SealKey, flowPending, exp.Unix())
		return err
	})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, EIDStartResponse{FlowID: id, URL: u, ExpiresAt: unixTime(exp.Unix())})
	return nil
}

// eidProblem turns a provider error into a problem: the kind the error
// names, its message for the detail (it holds no secret: a claim name, an
// acr, "expired at").
func eidProblem(err error) error {
	switch {
	case errors.Is(err, oidc.ErrRejected):
		return web.Errorf(http.StatusUnauthorized, TypeEIDRejected, "eID login refused", "%s", err.Error())
	case errors.Is(err, oidc.ErrLevel):
		return web.Errorf(http.StatusForbidden, TypeEIDLevel, "eID level too low", "%s", err.Error())
	}
	return web.Errorf(http.StatusBadGateway, TypeEIDUnreachable, "eID provider unreachable", "%s", err.Error())
}

func (s *Service) handleEIDCallback(w http.ResponseWriter, r *http.Request) error {
	if s.eid == nil {
		return errEIDNotConfigured
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 128 {
		return errEIDState
	}
	ctx := r.Context()
	now := s.now()
	// One callback per flow: the compare-and-set from pending lets one
	// answer through; a replayed or forged one matches nothing.
	h := hashToken(state)
	var flow struct {
		id, account, device, sealKey string
		level                        int
		expires                      int64
	}
	var claimed bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		claimed = false
		err := tx.QueryRowContext(ctx, `SELECT id, account_id, device_id, level, seal_key, expires_at FROM identity_eid_flows WHERE state_hash = $1 AND status = $2`, h, flowPending).
			Scan(&flow.id, &flow.account, &flow.device, &flow.level, &flow.sealKey, &flow.expires)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		if flow.expires <= now.Unix() {
			return nil
		}
		res, err := tx.ExecContext(ctx, `UPDATE identity_eid_flows SET status = $1 WHERE id = $2 AND status = $3`, flowExchanging, flow.id, flowPending)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		claimed = n == 1
		return nil
	})
	if err != nil {
		return err
	}
	if !claimed {
		return errEIDState
	}
	fail := func(p *web.Problem) error {
		b, _ := json.Marshal(p)
		if _, err := s.db.Exec(ctx, `UPDATE identity_eid_flows SET status = $1, problem = $2 WHERE id = $3`, flowFailed, string(b), flow.id); err != nil {
			return err
		}
		return p
	}
	if e := q.Get("error"); e != "" {
		return fail(web.Errorf(http.StatusForbidden, TypeEIDRejected, "eID login cancelled",
			"the eID provider answered %q: the login was cancelled or refused there; start again with: kanal eid link", clip(e, 64)))
	}
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		return fail(validationf("the eID provider's answer carries no code"))
	}
	level := ca.Level(flow.level)
	claims, err := s.eid.Exchange(ctx, level, code, s.flowSecret("pkce", state), s.flowSecret("nonce", state))
	if err != nil {
		s.log.WarnContext(ctx, "identity: eID login refused", "flow", flow.id, "err", err)
		var p *web.Problem
		errors.As(eidProblem(err), &p)
		return fail(p)
	}
	result := EIDSealed{EIDAttributes: claims.Attributes}
	if claims.Level >= ca.LevelHigh {
		result.VerifiedName = s.attestName(flow.account, claims.Attributes)
	}
	sealed, err := sealAttributes(flow.sealKey, flow.id, result)
	if err != nil {
		return fail(validationf("the device's seal key does not work: %v", err))
	}
	mac := s.subjectMAC(claims.Issuer, claims.Subject)
	var bound *web.Problem
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		bound = nil
		var other string
		err := tx.QueryRowContext(ctx, `SELECT account_id FROM identity_eid_bindings WHERE subject_mac = $1`, mac).Scan(&other)
		switch {
		case err == nil && !equalSecret(other, flow.account):
			bound = web.Errorf(http.StatusConflict, TypeEIDBound, "eID already linked",
				"this eID is already linked to another kanal account; log in to that account and use it, or unlink the eID there (kanal eid unlink) before linking it here")
			return nil
		case err == nil:
			_, err = tx.ExecContext(ctx, `UPDATE identity_eid_bindings SET level = $1, verified_at = $2 WHERE subject_mac = $3`, int(claims.Level), now.Unix(), mac)
			if err != nil {
				return err
			}
		case errors.Is(err, sql.ErrNoRows):
			var have string
			err := tx.QueryRowContext(ctx, `SELECT subject_mac FROM identity_eid_bindings WHERE account_id = $1`, flow.account).Scan(&have)
			if err == nil {
				bound = web.Errorf(http.StatusConflict, TypeEIDBound, "Account linked to another eID",
					"this kanal account is linked to another person's eID; unlink it first (kanal eid unlink)")
				return nil
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO identity_eid_bindings (subject_mac, account_id, level, bound_at, verified_at) VALUES ($1, $2, $3, $4, $4)`,
				mac, flow.account, int(claims.Level), now.Unix()); err != nil {
				if db.IsUniqueViolation(err) {
					bound = web.Errorf(http.StatusConflict, TypeEIDBound, "eID already linked",
						"this eID is already linked to another kanal account; log in to that account and use it, or unlink the eID there (kanal eid unlink) before linking it here")
					return nil
				}
				return err
			}
		default:
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE identity_eid_flows SET status = $1, proven = $2, acr = $3, sealed = $4, completed_at = $5 WHERE id = $6`,
			flowDone, int(claims.Level), clip(claims.ACR, 256), sealed, now.Unix(), flow.id)
		return err
	})
	if err != nil {
		return err
	}
	if bound != nil {
		return fail(bound)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "Your eID login worked. Return to kanal: the device that started it finishes the link.\n")
	return nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sealAttributes seals the JSON attributes and the verified name to the
// device's key: the server keeps only this ciphertext, until the device
// fetches it.
func sealAttributes(sealKey, flowID string, a EIDSealed) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(sealKey)
	if err != nil {
		return "", err
	}
	pub, err := attributesKEM().NewPublicKey(raw)
	if err != nil {
		return "", err
	}
	pt, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	ct, err := hpke.Seal(pub, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), EIDAttributesInfo(flowID), pt)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// OpenEIDAttributes opens what EIDCompleteResponse.Attributes carries with
// the private key whose public half the start named.
func OpenEIDAttributes(priv hpke.PrivateKey, flowID, sealed string) (EIDAttributes, error) {
	r, err := OpenEIDResult(priv, flowID, sealed)
	return r.EIDAttributes, err
}

// OpenEIDResult opens what EIDCompleteResponse.Attributes carries: the
// attributes and, after a login at level high, the verified name.
func OpenEIDResult(priv hpke.PrivateKey, flowID, sealed string) (EIDSealed, error) {
	ct, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return EIDSealed{}, fmt.Errorf("identity: eid attributes: %w", err)
	}
	pt, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), EIDAttributesInfo(flowID), ct)
	if err != nil {
		return EIDSealed{}, fmt.Errorf("identity: eid attributes do not open: %w", err)
	}
	var a EIDSealed
	if err := json.Unmarshal(pt, &a); err != nil {
		return EIDSealed{}, fmt.Errorf("identity: eid attributes: %w", err)
	}
	return a, nil
}

// NewEIDSealKey makes the key pair a device names in EIDStartRequest.
func NewEIDSealKey() (priv hpke.PrivateKey, sealKey string, err error) {
	priv, err = attributesKEM().GenerateKey()
	if err != nil {
		return nil, "", err
	}
	return priv, base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes()), nil
}

func (s *Service) handleEIDComplete(w http.ResponseWriter, r *http.Request) error {
	if s.eid == nil {
		return errEIDNotConfigured
	}
	var req EIDCompleteRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if !ca.ValidID(req.FlowID) || !ca.ValidID(req.ChallengeID) {
		return validationf("flow_id and challenge_id must be ids")
	}
	sig, err := base64.StdEncoding.DecodeString(req.Signature)
	if err != nil || len(sig) == 0 || len(sig) > 256 {
		return validationf("signature must be base64 (standard)")
	}
	ctx := r.Context()
	c := callerFrom(ctx)
	p := c.p
	now := s.now()
	var account, device, status, problem, acr, sealed string
	var proven int
	var completed sql.NullInt64
	var expires int64
	err = s.db.QueryRow(ctx, `SELECT account_id, device_id, status, problem, proven, acr, sealed, completed_at, expires_at FROM identity_eid_flows WHERE id = $1`, req.FlowID).
		Scan(&account, &device, &status, &problem, &proven, &acr, &sealed, &completed, &expires)
	if errors.Is(err, sql.ErrNoRows) || err == nil && (!equalSecret(account, p.AccountID) || !equalSecret(device, p.DeviceID)) {
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such eID login",
			"no eID login %s of this device is in progress; start one with: kanal eid link", req.FlowID)
	} else if err != nil {
		return err
	}
	switch {
	case status == flowPending || status == flowExchanging:
		if expires <= now.Unix() {
			break
		}
		return web.Errorf(http.StatusConflict, TypeEIDPending, "eID login not finished",
			"the browser has not come back from the eID provider yet; finish the login there")
	case status == flowFailed:
		if _, err := s.db.Exec(ctx, `DELETE FROM identity_eid_flows WHERE id = $1`, req.FlowID); err != nil {
			return err
		}
		var prob web.Problem
		if json.Unmarshal([]byte(problem), &prob) == nil && prob.Type != "" {
			return &prob
		}
		return web.Errorf(http.StatusForbidden, TypeEIDRejected, "eID login refused", "the eID login was refused")
	}
	if status != flowDone || !completed.Valid || now.Sub(unixTime(completed.Int64)) > EIDFreshness {
		return web.Errorf(http.StatusGone, TypeEIDState, "eID login expired",
			"this eID login is too old to raise a session; start again with: kanal eid link")
	}
	// The device's proof: the challenge is spent whatever comes next.
	nonce, err := s.consumeChallenge(ctx, now, req.ChallengeID, p.DeviceID, ChallengeEID)
	if err != nil {
		return err
	}
	var certPEM string
	if err := s.db.QueryRow(ctx, `SELECT cert_pem FROM identity_devices WHERE id = $1`, p.DeviceID).Scan(&certPEM); err != nil {
		return err
	}
	cert, err := s.currentCert(certPEM, now)
	if err != nil {
		return err
	}
	if !verifySignature(cert.PublicKey, EIDMessage(req.ChallengeID, p.DeviceID, nonce, req.FlowID), sig) {
		return errBadKeyProof
	}
	level := max(p.Level, ca.Level(proven))
	var gone bool
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		gone = false
		res, err := tx.ExecContext(ctx, `DELETE FROM identity_eid_flows WHERE id = $1 AND status = $2`, req.FlowID, flowDone)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			gone = true
			return nil
		}
		// The binding must still stand (an unlink in between ends it).
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM identity_eid_bindings WHERE account_id = $1`, p.AccountID).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			gone = true
			return nil
		}
		// Only this session rises: a refresh keeps the level the login
		// proved, so high lasts as long as this session, no longer.
		_, err = tx.ExecContext(ctx, `UPDATE identity_sessions SET level = $1 WHERE token_hash = $2`, int(level), c.sessionHash)
		return err
	})
	if err != nil {
		return err
	}
	if gone {
		return errEIDState
	}
	web.WriteJSON(w, http.StatusOK, EIDCompleteResponse{Level: level.String(), ACR: acr, Attributes: sealed})
	return nil
}

// handleEIDUnlink removes the account's eID binding; its high sessions
// drop to substantial. An agent of an organisation that requires level
// high of its agents may not: the unlink is refused, naming the
// organisations, until an admin there has removed the account or given it
// another role (docs/levels.md says why).
func (s *Service) handleEIDUnlink(w http.ResponseWriter, r *http.Request) error {
	if s.eid == nil {
		return errEIDNotConfigured
	}
	ctx := r.Context()
	p, _ := FromContext(ctx)
	var n int64
	var held *web.Problem
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		held = nil
		// The binding goes first: its row lock orders this against an
		// agent being added (checkHighAgent writes the same row).
		res, err := tx.ExecContext(ctx, `DELETE FROM identity_eid_bindings WHERE account_id = $1`, p.AccountID)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		if held, err = agentsRequiringHigh(ctx, tx, p.AccountID); err != nil {
			return err
		} else if held != nil {
			return held // rolls the delete back
		}
		_, err = tx.ExecContext(ctx, `UPDATE identity_sessions SET level = $1 WHERE account_id = $2 AND level > $1`, int(ca.LevelSubstantial), p.AccountID)
		return err
	})
	if held != nil {
		return held
	}
	if err != nil {
		return err
	}
	if n == 0 {
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "No eID linked", "this account has no eID linked")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// agentsRequiringHigh returns the problem for an unlink by an agent of
// organisations that require level high of their agents, naming them and
// the step to take; nil when there are none.
func agentsRequiringHigh(ctx context.Context, tx *sql.Tx, account string) (*web.Problem, error) {
	rows, err := tx.QueryContext(ctx, `SELECT o.id, o.name FROM identity_members m JOIN identity_orgs o ON o.id = m.org_id
		WHERE m.account_id = $1 AND m.role = $2 AND o.require_high_for_agents <> 0 ORDER BY o.name, o.id`, account, RoleAgent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		names = append(names, fmt.Sprintf("%s (%s)", name, id))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, nil
	}
	return web.Errorf(http.StatusConflict, TypeEIDRequired, "eID required as an agent",
		"this account is an agent of %s, which requires an eID of its agents; the eID stays linked. Ask an admin there to remove you (kanal org member remove; they may add you back in a role other than agent), then unlink",
		strings.Join(names, ", ")), nil
}

// EIDPerson returns the proven identity behind an account as an opaque
// string, "" if none: the keyed hash of its eID subject. Domains that
// must count people rather than accounts (a survey of level high: one
// ballot per person) key on it, hashed again with their own context.
func (s *Service) EIDPerson(ctx context.Context, accountID string) (string, error) {
	var mac string
	err := s.db.QueryRow(ctx, `SELECT subject_mac FROM identity_eid_bindings WHERE account_id = $1`, accountID).Scan(&mac)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return mac, err
}

// eidLinked reports whether the account has a proven identity.
func (s *Service) eidLinked(ctx context.Context, accountID string) (bool, error) {
	p, err := s.EIDPerson(ctx, accountID)
	return p != "", err
}

// Proofing says what stands behind a level (docs/levels.md).
func Proofing(l ca.Level) string {
	switch {
	case l >= ca.LevelHigh:
		return "eID (identity-proofed)"
	case l == ca.LevelSubstantial:
		return "device-bound, not identity-proofed"
	}
	return "e-mail"
}
