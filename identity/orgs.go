package identity

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

// audit appends one entry to the audit log. The log is append-only: this
// is the only statement that touches the table besides SELECT, and the
// database refuses UPDATE and DELETE on it.
func audit(ctx context.Context, tx *sql.Tx, at int64, actor, action, orgID, accountID, detail string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO identity_audit (at, actor, action, org_id, account_id, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		at, actor, action, orgID, accountID, detail)
	return err
}

func actorOf(c *caller) string {
	if c.operator {
		return "operator:" + c.operatorID
	}
	return "account:" + c.p.AccountID
}

// seal encrypts an organisation key with AES-256-GCM under a key derived
// from the deployment secret; the organisation id is the associated data,
// so a sealed key cannot be moved to another organisation's row.
func (s *Service) seal(plain []byte, orgID string) (string, error) {
	return sealWith(s.rand, s.sealKey, plain, orgID)
}

func sealWith(r io.Reader, key, plain []byte, orgID string) (string, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	nonce, err := readRandom(r, aead.NonceSize())
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(orgID))), nil
}

func (s *Service) unseal(sealed, orgID string) ([]byte, error) {
	plain, err := openSealed(s.sealKey, sealed, orgID)
	if err != nil && s.legacy != nil {
		plain, err = openSealed(s.legacy, sealed, orgID)
	}
	return plain, err
}

// ResealLegacy seals every organisation key that opens only under the
// legacy key (Options.LegacySecret) again under the secret's key, and
// returns how many. kanald calls it at start; afterwards the legacy key is
// no longer needed.
func (s *Service) ResealLegacy(ctx context.Context) (int, error) {
	if s.legacy == nil {
		return 0, nil
	}
	n := 0
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.QueryContext(ctx, `SELECT id, key_sealed FROM identity_orgs WHERE key_sealed <> ''`)
		if err != nil {
			return err
		}
		var ids, sealed []string
		for rows.Next() {
			var id, k string
			if err := rows.Scan(&id, &k); err != nil {
				rows.Close()
				return err
			}
			ids, sealed = append(ids, id), append(sealed, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i, id := range ids {
			if _, err := openSealed(s.sealKey, sealed[i], id); err == nil {
				continue
			}
			plain, err := openSealed(s.legacy, sealed[i], id)
			if err != nil {
				continue // neither key: using the organisation reports it
			}
			again, err := s.seal(plain, id)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE identity_orgs SET key_sealed = $1 WHERE id = $2`, again, id); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("identity: seal organisation keys again: %w", err)
	}
	return n, nil
}

func openSealed(key []byte, sealed, orgID string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(b) < aead.NonceSize() {
		return nil, errors.New("identity: sealed key too short")
	}
	return aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte(orgID))
}

func checkOrgName(name string) error {
	if name == "" || len(name) > ca.MaxNameLength || !utf8.ValidString(name) || strings.TrimSpace(name) != name {
		return validationf("name must be 1 to %d bytes without leading or trailing space", ca.MaxNameLength)
	}
	for _, r := range name {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return validationf("name must not contain control characters")
		}
	}
	return nil
}

func (s *Service) handleCreateOrg(w http.ResponseWriter, r *http.Request) error {
	var req CreateOrgRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if err := checkOrgName(req.Name); err != nil {
		return err
	}
	if _, err := ca.ParseOrgKind(req.Kind); err != nil {
		return validationf("kind must be office, council or merchant")
	}
	ctx, c := r.Context(), callerFrom(r.Context())
	id, err := newID(s.rand, "org_")
	if err != nil {
		return err
	}
	now := s.now().Unix()
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_orgs (id, name, kind, created_at) VALUES ($1, $2, $3, $4)`, id, req.Name, req.Kind, now); err != nil {
			return err
		}
		return audit(ctx, tx, now, actorOf(c), "org.create", id, "", req.Kind+": "+req.Name)
	})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, Organisation{OrgID: id, Name: req.Name, Kind: req.Kind, CreatedAt: unixTime(now)})
	return nil
}

var errNoOrg = web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such organisation", "there is no organisation with this id")

type orgRow struct {
	id, name, kind, certPEM, sealed string
	created                         int64
	verified                        sql.NullInt64
	highAgents                      int64
}

func (s *Service) loadOrg(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (orgRow, error) {
	var o orgRow
	err := q.QueryRowContext(ctx, `SELECT id, name, kind, cert_pem, key_sealed, created_at, verified_at, require_high_for_agents FROM identity_orgs WHERE id = $1`, id).
		Scan(&o.id, &o.name, &o.kind, &o.certPEM, &o.sealed, &o.created, &o.verified, &o.highAgents)
	if errors.Is(err, sql.ErrNoRows) {
		return o, errNoOrg
	}
	return o, err
}

func (o orgRow) api() Organisation {
	return Organisation{OrgID: o.id, Name: o.name, Kind: o.kind, Verified: o.verified.Valid, CreatedAt: unixTime(o.created),
		VerifiedAt: nullTime(o.verified), Certificate: o.certPEM, RequireHighForAgents: o.highAgents != 0}
}

// handleOrgSettings changes an organisation's settings. The operator, an
// owner or an admin may; the change is audited.
func (s *Service) handleOrgSettings(w http.ResponseWriter, r *http.Request) error {
	var req OrgSettingsRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if req.RequireHighForAgents == nil {
		return validationf("give require_high_for_agents")
	}
	ctx, c := r.Context(), callerFrom(r.Context())
	id := r.PathValue("id")
	var out Organisation
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		o, err := s.loadOrg(ctx, tx, id)
		if err != nil {
			return err
		}
		role, err := s.actorRole(ctx, tx, c, id)
		if err != nil {
			return err
		}
		if !c.operator && role != RoleOwner && role != RoleAdmin {
			return errNotAllowed
		}
		v := int64(0)
		if *req.RequireHighForAgents {
			v = 1
		}
		if _, err := tx.ExecContext(ctx, `UPDATE identity_orgs SET require_high_for_agents = $1 WHERE id = $2`, v, id); err != nil {
			return err
		}
		o.highAgents = v
		out = o.api()
		return audit(ctx, tx, s.now().Unix(), actorOf(c), "org.settings", id, "", fmt.Sprintf("require_high_for_agents %t", v != 0))
	})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// checkHighAgent refuses an agent for an organisation that requires level
// high of its agents unless the account has an eID linked at level high:
// the proof the person behind the account was identity-proofed.
func checkHighAgent(ctx context.Context, tx *sql.Tx, o orgRow, account, role string) error {
	if o.highAgents == 0 || role != RoleAgent {
		return nil
	}
	// A write, not a read: it locks the binding until this transaction
	// ends, so an unlink of the same account (which deletes the row, then
	// looks for such memberships) either waits and sees this agent, or
	// went first and leaves nothing to update here.
	res, err := tx.ExecContext(ctx, `UPDATE identity_eid_bindings SET level = level WHERE account_id = $1 AND level >= $2`, account, int(ca.LevelHigh))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return web.Errorf(http.StatusForbidden, web.TypeInsufficientLevel, "Insufficient level of assurance",
			"this organisation requires level high of its agents: the member must first link an eID (kanal eid link)")
	}
	return nil
}

// handleVerifyOrg issues the organisation certificate. Verifying an
// organisation that is already verified returns its certificate unchanged:
// re-keying would orphan every membership certificate.
func (s *Service) handleVerifyOrg(w http.ResponseWriter, r *http.Request) error {
	ctx, c := r.Context(), callerFrom(r.Context())
	id := r.PathValue("id")
	var out Organisation
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		o, err := s.loadOrg(ctx, tx, id)
		if err != nil {
			return err
		}
		if o.verified.Valid {
			out = o.api()
			return nil
		}
		kind, err := ca.ParseOrgKind(o.kind)
		if err != nil {
			return err
		}
		now := s.now()
		auth, err := s.ca.IssueOrganisation(ca.OrgRequest{OrgID: o.id, Name: o.name, Kind: kind, NotBefore: now.Add(-certSkew)})
		if err != nil {
			return err
		}
		keyPEM, err := auth.KeyPEM()
		if err != nil {
			return err
		}
		sealed, err := s.seal(keyPEM, o.id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE identity_orgs SET verified_at = $1, cert_pem = $2, key_sealed = $3 WHERE id = $4`,
			now.Unix(), string(auth.CertPEM()), sealed, o.id); err != nil {
			return err
		}
		o.verified, o.certPEM = sql.NullInt64{Int64: now.Unix(), Valid: true}, string(auth.CertPEM())
		out = o.api()
		return audit(ctx, tx, now.Unix(), actorOf(c), "org.verify", o.id, "", "serial "+auth.Certificate().SerialNumber.String())
	})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleAudit(w http.ResponseWriter, r *http.Request) error {
	after, limit := int64(0), MaxAuditPage
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return validationf("after must be a non-negative entry id")
		}
		after = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditPage {
			return validationf("limit must be 1 to %d", MaxAuditPage)
		}
		limit = n
	}
	rows, err := s.db.Query(r.Context(), `SELECT id, at, actor, action, org_id, account_id, detail FROM identity_audit
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := AuditList{Entries: []AuditEntry{}}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.OrgID, &e.AccountID, &e.Detail); err != nil {
			return err
		}
		e.At = unixTime(at)
		out.Entries = append(out.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// validRole reports whether role exists for an organisation kind.
func validRole(kind, role string) bool {
	switch role {
	case RoleOwner, RoleAdmin, RoleAgent:
		return true
	case RoleOrganiser:
		return kind == KindCouncil
	case RoleSeller:
		return kind == KindMerchant
	}
	return false
}

// mayManage reports whether an actor with actorRole ("" for the operator)
// may add or remove a member with targetRole. Owners and the operator may
// do anything; admins may manage everyone below admin and add admins, but
// only owners remove admins; nobody else manages members.
func mayManage(actorOperator bool, actorRole, targetRole string, removing bool) bool {
	if actorOperator || actorRole == RoleOwner {
		return true
	}
	if actorRole != RoleAdmin {
		return false
	}
	switch targetRole {
	case RoleOwner:
		return false
	case RoleAdmin:
		return !removing
	}
	return true
}

var errNotAllowed = web.Errorf(http.StatusForbidden, web.TypeForbidden, "Not allowed",
	"your role in this organisation does not allow this")

// actorRole finds the caller's role for member management. The operator
// may always; a session needs a role in the organisation.
func (s *Service) actorRole(ctx context.Context, tx *sql.Tx, c *caller, orgID string) (string, error) {
	if c.operator {
		return "", nil
	}
	var role string
	err := tx.QueryRowContext(ctx, `SELECT role FROM identity_members WHERE org_id = $1 AND account_id = $2`, orgID, c.p.AccountID).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errNotAllowed
	}
	return role, err
}

func (s *Service) handleAddMember(w http.ResponseWriter, r *http.Request) error {
	var req AddMemberRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if (req.Email == "") == (req.AccountID == "") {
		return validationf("give exactly one of email and account_id")
	}
	email := ""
	if req.Email != "" {
		var ok bool
		if email, ok = normalizeEmail(req.Email); !ok {
			return errInvalidEmail
		}
	} else if !ca.ValidID(req.AccountID) {
		return validationf("account_id is not an account id")
	}
	ctx := r.Context()
	c := callerFrom(ctx)
	orgID := r.PathValue("id")
	now := s.now()
	var out Member
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		o, err := s.loadOrg(ctx, tx, orgID)
		if err != nil {
			return err
		}
		role, err := s.actorRole(ctx, tx, c, orgID)
		if err != nil {
			return err
		}
		if !validRole(o.kind, req.Role) {
			return web.Errorf(http.StatusBadRequest, TypeInvalidRole, "Invalid role", "a %s has the roles owner, admin, agent%s", o.kind,
				map[string]string{KindCouncil: " and organiser", KindMerchant: " and seller"}[o.kind])
		}
		if !mayManage(c.operator, role, req.Role, false) {
			return errNotAllowed
		}
		if !o.verified.Valid {
			return web.Errorf(http.StatusConflict, TypeNotVerified, "Organisation not verified",
				"the operator must verify the organisation before it has members")
		}
		account := req.AccountID
		if email != "" {
			err = tx.QueryRowContext(ctx, `SELECT id FROM identity_accounts WHERE email = $1`, email).Scan(&account)
		} else {
			err = tx.QueryRowContext(ctx, `SELECT id FROM identity_accounts WHERE id = $1`, account).Scan(&account)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such account", "the member must sign up first")
		} else if err != nil {
			return err
		}
		if err := checkHighAgent(ctx, tx, o, account, req.Role); err != nil {
			return err
		}
		// The count and the insert must not interleave with another
		// addition to the organisation: at most MaxOrgMembers however
		// many additions race.
		if err := s.db.Lock(ctx, tx, "identity.members:"+orgID); err != nil {
			return err
		}
		var members int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM identity_members WHERE org_id = $1`, orgID).Scan(&members); err != nil {
			return err
		}
		if members >= MaxOrgMembers {
			return web.Errorf(http.StatusConflict, TypeTooManyMembers, "Too many members",
				"an organisation has at most %d members; remove one first", MaxOrgMembers)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_members (org_id, account_id, role, created_at) VALUES ($1, $2, $3, $4)`,
			orgID, account, req.Role, now.Unix()); err != nil {
			if db.IsUniqueViolation(err) {
				return web.Errorf(http.StatusConflict, web.TypeConflict, "Already a member", "remove the member first to change the role")
			}
			return err
		}
		issued, err := s.issueMemberships(ctx, tx, o, account, req.Role, "")
		if err != nil {
			return err
		}
		out = Member{OrgID: orgID, AccountID: account, Role: req.Role, CreatedAt: unixTime(now.Unix()), Memberships: issued}
		return audit(ctx, tx, now.Unix(), actorOf(c), "member.add", orgID, account, "role "+req.Role)
	})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Service) handleRemoveMember(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := callerFrom(ctx)
	orgID, account := r.PathValue("id"), r.PathValue("account_id")
	now := s.now().Unix()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.loadOrg(ctx, tx, orgID); err != nil {
			return err
		}
		role, err := s.actorRole(ctx, tx, c, orgID)
		if err != nil {
			return err
		}
		if role != "" && role != RoleOwner && role != RoleAdmin {
			return errNotAllowed
		}
		var target string
		err = tx.QueryRowContext(ctx, `SELECT role FROM identity_members WHERE org_id = $1 AND account_id = $2`, orgID, account).Scan(&target)
		if errors.Is(err, sql.ErrNoRows) {
			return web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such member", "the account is not a member of this organisation")
		} else if err != nil {
			return err
		}
		if !mayManage(c.operator, role, target, true) {
			return errNotAllowed
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM identity_members WHERE org_id = $1 AND account_id = $2`, orgID, account); err != nil {
			return err
		}
		entries, err := endedMemberships(ctx, tx, now, `SELECT org_id, account_id, device_id, cert_pem FROM identity_memberships
			WHERE org_id = $1 AND account_id = $2 AND revoked_at IS NULL ORDER BY serial`, orgID, account)
		if err != nil {
			return err
		}
		if err := s.appendLog(ctx, tx, entries...); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE identity_memberships SET revoked_at = $1 WHERE org_id = $2 AND account_id = $3 AND revoked_at IS NULL`,
			now, orgID, account); err != nil {
			return err
		}
		return audit(ctx, tx, now, actorOf(c), "member.remove", orgID, account, "role "+target)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// issueMemberships issues a membership certificate for each active device
// of account (or only onlyDevice, if set) in organisation o.
func (s *Service) issueMemberships(ctx context.Context, tx *sql.Tx, o orgRow, account, role, onlyDevice string) ([]MemberDevice, error) {
	keyPEM, err := s.unseal(o.sealed, o.id)
	if err != nil {
		return nil, err
	}
	auth, err := ca.ParseOrgAuthority([]byte(o.certPEM), keyPEM)
	if err != nil {
		return nil, err
	}
	now := s.now()
	// An expired device gets no membership: its certificate vouches for
	// nothing any more, and a membership names the device's key.
	rows, err := tx.QueryContext(ctx, `SELECT id, cert_pem FROM identity_devices WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY id`,
		account, now.Unix())
	if err != nil {
		return nil, err
	}
	type dev struct{ id, pem string }
	var devs []dev
	for rows.Next() {
		var d dev
		if err := rows.Scan(&d.id, &d.pem); err != nil {
			rows.Close()
			return nil, err
		}
		if onlyDevice == "" || d.id == onlyDevice {
			devs = append(devs, d)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := []MemberDevice{}
	var entries []transparency.Entry
	for _, d := range devs {
		cert, err := parsePEMCert(d.pem)
		if err != nil {
			return nil, err
		}
		// A membership lasts no longer than the organisation's certificate
		// nor than the device certificate whose key it names; renewing the
		// device renews its memberships.
		notAfter := now.Add(ca.DefaultMembershipLifetime)
		if orgEnd := auth.Certificate().NotAfter; notAfter.After(orgEnd) {
			notAfter = orgEnd
		}
		if notAfter.After(cert.NotAfter) {
			notAfter = cert.NotAfter
		}
		m, err := auth.IssueMembership(ca.MembershipRequest{DevicePublicKey: cert.PublicKey.(crypto.PublicKey), AccountID: account, DeviceID: d.id,
			Role: role, NotBefore: now.Add(-certSkew), NotAfter: notAfter})
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_memberships (serial, org_id, account_id, device_id, cert_pem, not_after) VALUES ($1, $2, $3, $4, $5, $6)`,
			m.SerialNumber.String(), o.id, account, d.id, pemCert(m.Raw), m.NotAfter.Unix()); err != nil {
			return nil, err
		}
		out = append(out, MemberDevice{DeviceID: d.id, Certificate: d.pem, MembershipCertificate: pemCert(m.Raw)})
		entries = append(entries, transparency.Entry{Kind: transparency.KindMembership, Org: o.id, Account: account, Device: d.id,
			Role: role, Cert: transparency.CertFingerprint(m.Raw), Time: now.Unix()})
	}
	if err := s.appendLog(ctx, tx, entries...); err != nil {
		return nil, err
	}
	return out, nil
}

// issueMembershipsForDevice gives a newly enrolled or renewed device a
// membership certificate in every organisation its account belongs to.
func (s *Service) issueMembershipsForDevice(ctx context.Context, tx *sql.Tx, account, deviceID string, _ crypto.PublicKey) error {
	rows, err := tx.QueryContext(ctx, `SELECT org_id, role FROM identity_members WHERE account_id = $1`, account)
	if err != nil {
		return err
	}
	type mem struct{ org, role string }
	var ms []mem
	for rows.Next() {
		var m mem
		if err := rows.Scan(&m.org, &m.role); err != nil {
			rows.Close()
			return err
		}
		ms = append(ms, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, m := range ms {
		o, err := s.loadOrg(ctx, tx, m.org)
		if err != nil {
			return err
		}
		if !o.verified.Valid {
			continue
		}
		if _, err := s.issueMemberships(ctx, tx, o, account, m.role, deviceID); err != nil {
			return err
		}
	}
	return nil
}
