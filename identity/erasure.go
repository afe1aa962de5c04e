package identity

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

// An account's own data (GDPR Art. 15 and 17; docs/privacy.md). Identity
// checks who asks and gives and erases what identity holds; cmd/kanald
// asks every other domain for its part.

// Challenge purposes of the account's own data: a fresh proof of the
// device key, on top of the session, before the server hands out
// everything it holds about the account or erases it.
const (
	ChallengeExport = "export"
	ChallengeErase  = "erase"
)

// AccountProofMessage returns the exact bytes a device signs to export
// (purpose "export") or erase ("erase") its account:
//
//	"kanal account " + purpose + " v1\n" + challenge_id + "\n" + device_id + "\n" + nonce
//
// with nonce the base64 string exactly as the challenge response gave it,
// and no trailing newline; encoded as LoginRequest documents. The prefix
// differs from every other signed message, so no other signature of the
// device is ever such a proof.
func AccountProofMessage(purpose, challengeID, deviceID, nonce string) []byte {
	return []byte("kanal account " + purpose + " v1\n" + challengeID + "\n" + deviceID + "\n" + nonce)
}

// POST /v1/account/export (session): the session's device proves its key
// over a fresh challenge of purpose "export".
type ExportRequest struct {
	ChallengeID string `json:"challenge_id"`
	Signature   string `json:"signature"`
}

// AccountExport answers POST /v1/account/export: every file of the
// export, each with what it holds (the client writes them, and a README
// made of the abouts, into the archive).
type AccountExport struct {
	AccountID   string       `json:"account_id"`
	GeneratedAt time.Time    `json:"generated_at"`
	Files       []ExportFile `json:"files"`
}

// ExportFile is one file of an export: Data is its JSON content.
type ExportFile struct {
	Name  string          `json:"name"`
	About string          `json:"about"`
	Data  json.RawMessage `json:"data"`
}

// POST /v1/account/erase (substantial session): the session's device
// proves its key over a fresh challenge of purpose "erase", and Confirm
// repeats the account id, so that no request erases an account by
// accident.
type EraseRequest struct {
	ChallengeID string `json:"challenge_id"`
	Signature   string `json:"signature"`
	Confirm     string `json:"confirm"`
}

// AccountErasure answers POST /v1/account/erase. Pseudonym is what the
// records kept by law (docs/privacy.md) name instead of the account; the
// server keeps no link from it to the account.
type AccountErasure struct {
	AccountID string    `json:"account_id"`
	Pseudonym string    `json:"pseudonym"`
	ErasedAt  time.Time `json:"erased_at"`
	Kept      []string  `json:"kept"`
}

// CheckAccountProof checks the proof of the session's device key over a
// fresh challenge of purpose, and returns the session's principal. The
// challenge is spent whatever the outcome.
func (s *Service) CheckAccountProof(ctx context.Context, purpose, challengeID, signature string) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, errNoToken
	}
	if !ca.ValidID(challengeID) {
		return Principal{}, validationf("challenge_id must be an id")
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) == 0 || len(sig) > 256 {
		return Principal{}, validationf("signature must be base64 (standard)")
	}
	now := s.now()
	nonce, err := s.consumeChallenge(ctx, now, challengeID, p.DeviceID, purpose)
	if err != nil {
		return Principal{}, err
	}
	var certPEM string
	if err := s.db.QueryRow(ctx, `SELECT cert_pem FROM identity_devices WHERE id = $1 AND revoked_at IS NULL`, p.DeviceID).Scan(&certPEM); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Principal{}, errDeviceRevoked
		}
		return Principal{}, err
	}
	id, err := s.currentCert(certPEM, now)
	if err != nil {
		return Principal{}, err
	}
	if !verifySignature(id.PublicKey, AccountProofMessage(purpose, challengeID, p.DeviceID, nonce), sig) {
		return Principal{}, errInvalidCredentials
	}
	return p, nil
}

// ErrUnknownAccount: no account has the id (it never had, or it was
// erased).
var ErrUnknownAccount = errors.New("identity: unknown account")

// AccountRecord is the account itself.
type AccountRecord struct {
	AccountID   string    `json:"account_id"`
	Email       string    `json:"email"`
	CreatedAt   time.Time `json:"created_at"`
	HasPassword bool      `json:"has_password"` // the argon2id hash itself is not exported
}

// DeviceRecord is one device of the account, revoked ones included.
type DeviceRecord struct {
	DeviceID     string         `json:"device_id"`
	Name         string         `json:"name"`
	Level        string         `json:"level"`
	CreatedAt    time.Time      `json:"created_at"`
	ExpiresAt    time.Time      `json:"expires_at"`
	RevokedAt    *time.Time     `json:"revoked_at"`
	Certificate  string         `json:"certificate"` // PEM, the current one
	Certificates []CertRecord   `json:"certificates"`
	Members      []MemberCert   `json:"membership_certificates"`
	Sessions     []SessionEntry `json:"sessions"`
}

// CertRecord is one device certificate ever issued.
type CertRecord struct {
	Serial    string     `json:"serial"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// MemberCert is one membership certificate of a device.
type MemberCert struct {
	Serial    string     `json:"serial"`
	OrgID     string     `json:"org_id"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// SessionEntry is one session or refresh token (its hash is not
// exported: it is a credential).
type SessionEntry struct {
	Kind      string    `json:"kind"` // session | refresh
	Family    string    `json:"family"`
	Level     string    `json:"level"`
	ExpiresAt time.Time `json:"expires_at"`
	Used      bool      `json:"used"`
	Revoked   bool      `json:"revoked"`
}

// MembershipRecord is one organisation the account is a member of.
type MembershipRecord struct {
	OrgID   string    `json:"org_id"`
	OrgName string    `json:"org_name"`
	Role    string    `json:"role"`
	Since   time.Time `json:"since"`
}

// AuditRecord is one entry of identity's audit log that names the
// account, as actor or as subject.
type AuditRecord struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	OrgID     string    `json:"org_id"`
	AccountID string    `json:"account_id"`
	Detail    string    `json:"detail"`
}

// LogRecord is one transparency log entry about the account.
type LogRecord struct {
	Index    int64     `json:"index"`
	Kind     string    `json:"kind"`
	DeviceID string    `json:"device_id"`
	OrgID    string    `json:"org_id"`
	At       time.Time `json:"at"`
}

// IdentityExport is what identity holds about one account.
type IdentityExport struct {
	Account     AccountRecord      `json:"account"`
	Devices     []DeviceRecord     `json:"devices"`
	Memberships []MembershipRecord `json:"memberships"`
	Audit       []AuditRecord      `json:"audit"`
	Log         []LogRecord        `json:"transparency_log"`
}

// ExportAccount returns everything identity holds about account.
func (s *Service) ExportAccount(ctx context.Context, account string) (*IdentityExport, error) {
	out := &IdentityExport{Devices: []DeviceRecord{}, Memberships: []MembershipRecord{}, Audit: []AuditRecord{}, Log: []LogRecord{}}
	var created int64
	var phc string
	err := s.db.QueryRow(ctx, `SELECT id, email, password, created_at FROM identity_accounts WHERE id = $1`, account).
		Scan(&out.Account.AccountID, &out.Account.Email, &phc, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnknownAccount
	} else if err != nil {
		return nil, fmt.Errorf("identity.export: %w", err)
	}
	out.Account.CreatedAt, out.Account.HasPassword = unixTime(created), phc != ""

	err = s.rows(ctx, `SELECT id, name, level, created_at, expires_at, revoked_at, cert_pem FROM identity_devices
		WHERE account_id = $1 ORDER BY created_at, id`, []any{account}, func(r *sql.Rows) error {
		var d DeviceRecord
		var level int
		var created, expires int64
		var revoked sql.NullInt64
		if err := r.Scan(&d.DeviceID, &d.Name, &level, &created, &expires, &revoked, &d.Certificate); err != nil {
			return err
		}
		d.Level, d.CreatedAt, d.ExpiresAt, d.RevokedAt = ca.Level(level).String(), unixTime(created), unixTime(expires), nullTime(revoked)
		d.Certificates, d.Members, d.Sessions = []CertRecord{}, []MemberCert{}, []SessionEntry{}
		out.Devices = append(out.Devices, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out.Devices {
		d := &out.Devices[i]
		err := s.rows(ctx, `SELECT serial, not_after, revoked_at FROM identity_device_certs WHERE device_id = $1 ORDER BY not_after, serial`,
			[]any{d.DeviceID}, func(r *sql.Rows) error {
				var c CertRecord
				var na int64
				var rv sql.NullInt64
				if err := r.Scan(&c.Serial, &na, &rv); err != nil {
					return err
				}
				c.NotAfter, c.RevokedAt = unixTime(na), nullTime(rv)
				d.Certificates = append(d.Certificates, c)
				return nil
			})
		if err != nil {
			return nil, err
		}
		err = s.rows(ctx, `SELECT serial, org_id, not_after, revoked_at FROM identity_memberships WHERE device_id = $1 ORDER BY not_after, serial`,
			[]any{d.DeviceID}, func(r *sql.Rows) error {
				var c MemberCert
				var na int64
				var rv sql.NullInt64
				if err := r.Scan(&c.Serial, &c.OrgID, &na, &rv); err != nil {
					return err
				}
				c.NotAfter, c.RevokedAt = unixTime(na), nullTime(rv)
				d.Members = append(d.Members, c)
				return nil
			})
		if err != nil {
			return nil, err
		}
		for _, q := range []struct{ kind, sql string }{
			{"session", `SELECT family, level, expires_at, 0, revoked FROM identity_sessions WHERE device_id = $1 ORDER BY expires_at, family`},
			{"refresh", `SELECT family, level, expires_at, used, revoked FROM identity_refresh_tokens WHERE device_id = $1 ORDER BY expires_at, family`},
		} {
			err := s.rows(ctx, q.sql, []any{d.DeviceID}, func(r *sql.Rows) error {
				e := SessionEntry{Kind: q.kind}
				var level, used, revoked int
				var exp int64
				if err := r.Scan(&e.Family, &level, &exp, &used, &revoked); err != nil {
					return err
				}
				e.Level, e.ExpiresAt, e.Used, e.Revoked = ca.Level(level).String(), unixTime(exp), used != 0, revoked != 0
				d.Sessions = append(d.Sessions, e)
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	err = s.rows(ctx, `SELECT m.org_id, o.name, m.role, m.created_at FROM identity_members m JOIN identity_orgs o ON o.id = m.org_id
		WHERE m.account_id = $1 ORDER BY m.created_at, m.org_id`, []any{account}, func(r *sql.Rows) error {
		var m MembershipRecord
		var since int64
		if err := r.Scan(&m.OrgID, &m.OrgName, &m.Role, &since); err != nil {
			return err
		}
		m.Since = unixTime(since)
		out.Memberships = append(out.Memberships, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.rows(ctx, `SELECT id, at, actor, action, org_id, account_id, detail FROM identity_audit
		WHERE account_id = $1 OR actor = $2 ORDER BY id`, []any{account, "account:" + account}, func(r *sql.Rows) error {
		var a AuditRecord
		var at int64
		if err := r.Scan(&a.ID, &at, &a.Actor, &a.Action, &a.OrgID, &a.AccountID, &a.Detail); err != nil {
			return err
		}
		a.At = unixTime(at)
		out.Audit = append(out.Audit, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.tlog != nil {
		// Version 1 entries name the account, version 2 entries the
		// commitment to it (its hex form, which no account id has).
		err = s.rows(ctx, `SELECT idx, kind, device, org, created_at FROM translog_entries
			WHERE account = $1 OR account = (SELECT commitment FROM translog_account_salts WHERE account = $1) ORDER BY idx`,
			[]any{account}, func(r *sql.Rows) error {
				var l LogRecord
				var at int64
				if err := r.Scan(&l.Index, &l.Kind, &l.DeviceID, &l.OrgID, &at); err != nil {
					return err
				}
				l.At = unixTime(at)
				out.Log = append(out.Log, l)
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// rows runs a query and calls each for every row.
func (s *Service) rows(ctx context.Context, query string, args []any, each func(*sql.Rows) error) error {
	rs, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("identity.export: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		if err := each(rs); err != nil {
			return fmt.Errorf("identity.export: %w", err)
		}
	}
	return rs.Err()
}

// NewPseudonym returns a fresh pseudonym for an account about to be
// erased: "erased_" and 80 random bits, derived from nothing, so that no
// one can compute it from the account id.
func (s *Service) NewPseudonym() (string, error) { return newID(s.rand, "erased_") }

// AccountDevices lists the ids of every device the account ever had,
// revoked ones included, for the domains that erase per-device state.
func (s *Service) AccountDeviceIDs(ctx context.Context, account string) ([]string, error) {
	var out []string
	err := s.rows(ctx, `SELECT id FROM identity_devices WHERE account_id = $1 ORDER BY id`, []any{account}, func(r *sql.Rows) error {
		var id string
		if err := r.Scan(&id); err != nil {
			return err
		}
		out = append(out, id)
		return nil
	})
	return out, err
}

// Erasure is what EraseAccountTx did.
type Erasure struct {
	AccountID string
	Pseudonym string
	Devices   []string // every device the account had
	Orgs      []string // the organisations it left
}

// EraseAccountTx erases account inside tx (docs/privacy.md): its devices
// are revoked (every RevocationHook runs: prekeys, mailboxes and push
// subscriptions go), its sessions, refresh and setup tokens, challenges,
// login throttles and sign-up row are deleted, it leaves its
// organisations (membership certificates revoked), the revoked devices
// and certificates stay, nameless, under the pseudonym (the CRLs list
// them until they expire), the audit log names the pseudonym instead of
// the account, and the account row is gone. Call Erased after commit.
func (s *Service) EraseAccountTx(ctx context.Context, tx *sql.Tx, account, pseudonym string) (*Erasure, error) {
	now := s.now().Unix()
	var email string
	var created int64
	err := tx.QueryRowContext(ctx, `SELECT email, created_at FROM identity_accounts WHERE id = $1`, account).Scan(&email, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnknownAccount
	} else if err != nil {
		return nil, fmt.Errorf("identity.erase: %w", err)
	}
	e := &Erasure{AccountID: account, Pseudonym: pseudonym}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM identity_devices WHERE account_id = $1 ORDER BY id`, account)
	if err != nil {
		return nil, fmt.Errorf("identity.erase: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("identity.erase: %w", err)
		}
		e.Devices = append(e.Devices, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("identity.erase: %w", err)
	}
	hooks := s.revocationHooks()
	actor := "account:" + account // replaced by the pseudonym below, with every other mention
	for _, d := range e.Devices {
		if _, err := s.revokeDeviceTx(ctx, tx, hooks, d, actor, now); err != nil {
			return nil, fmt.Errorf("identity.erase: revoke %s: %w", d, err)
		}
	}
	orgs, err := tx.QueryContext(ctx, `SELECT org_id FROM identity_members WHERE account_id = $1 ORDER BY org_id`, account)
	if err != nil {
		return nil, fmt.Errorf("identity.erase: %w", err)
	}
	for orgs.Next() {
		var o string
		if err := orgs.Scan(&o); err != nil {
			orgs.Close()
			return nil, fmt.Errorf("identity.erase: %w", err)
		}
		e.Orgs = append(e.Orgs, o)
	}
	orgs.Close()
	if err := orgs.Err(); err != nil {
		return nil, fmt.Errorf("identity.erase: %w", err)
	}
	steps := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO identity_accounts (id, email, password, created_at) VALUES ($1, $2, '', $3)`, []any{pseudonym, pseudonym + "@erased.invalid", now}},
		{`DELETE FROM identity_members WHERE account_id = $1`, []any{account}},
		{`UPDATE identity_memberships SET revoked_at = $2 WHERE account_id = $1 AND revoked_at IS NULL`, []any{account, now}},
		{`UPDATE identity_memberships SET account_id = $2, cert_pem = '' WHERE account_id = $1`, []any{account, pseudonym}},
		{`DELETE FROM identity_sessions WHERE account_id = $1`, []any{account}},
		// The eID link goes: the identity may be linked to a new account.
		{`DELETE FROM identity_eid_bindings WHERE account_id = $1`, []any{account}},
		{`DELETE FROM identity_eid_flows WHERE account_id = $1`, []any{account}},
		{`DELETE FROM identity_refresh_tokens WHERE account_id = $1`, []any{account}},
		{`DELETE FROM identity_setup_tokens WHERE account_id = $1`, []any{account}},
		{`DELETE FROM identity_throttle WHERE key = $1`, []any{"account:" + account}},
		{`DELETE FROM identity_signups WHERE email = $1`, []any{email}},
		{`UPDATE identity_devices SET account_id = $2, name = '', cert_pem = '' WHERE account_id = $1`, []any{account, pseudonym}},
	}
	for _, st := range steps {
		if _, err := tx.ExecContext(ctx, st.q, st.args...); err != nil {
			return nil, fmt.Errorf("identity.erase: %w", err)
		}
	}
	for _, o := range e.Orgs {
		if err := audit(ctx, tx, now, "account:"+pseudonym, "member.erase", o, pseudonym, "the member's account was erased"); err != nil {
			return nil, fmt.Errorf("identity.erase: %w", err)
		}
	}
	// The audit log keeps what happened, naming the pseudonym (the
	// trigger of migration 0004 allows exactly this change).
	if _, err := tx.ExecContext(ctx, `UPDATE identity_audit SET actor = REPLACE(actor, $1, $2), account_id = REPLACE(account_id, $1, $2),
		detail = REPLACE(REPLACE(detail, $1, $2), $3, $2)
		WHERE actor LIKE $4 OR account_id LIKE $4 OR detail LIKE $4 OR detail LIKE $5`,
		account, pseudonym, email, "%"+account+"%", "%"+email+"%"); err != nil {
		return nil, fmt.Errorf("identity.erase: audit: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM identity_accounts WHERE id = $1`, account); err != nil {
		return nil, fmt.Errorf("identity.erase: %w", err)
	}
	// Crypto-shredding: the log's entries about the account (the device
	// revocations just appended too) name it by a commitment under its
	// salt; without the salt they name no one.
	if s.tlog != nil {
		if err := s.tlog.Shred(ctx, tx, account); err != nil {
			return nil, fmt.Errorf("identity.erase: %w", err)
		}
	}
	if err := audit(ctx, tx, now, "account:"+pseudonym, "account.erase", "", pseudonym, fmt.Sprintf("%d devices, %d organisations", len(e.Devices), len(e.Orgs))); err != nil {
		return nil, fmt.Errorf("identity.erase: %w", err)
	}
	return e, nil
}

// Erased runs, after the erasing transaction committed, what lies outside
// the database: every node closes the account's streams.
func (s *Service) Erased(e *Erasure) {
	for _, d := range e.Devices {
		s.sessionsEnded(SessionEnd{Reason: EndDeviceRevoked, Device: d})
	}
}
