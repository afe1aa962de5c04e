package forms

import (
	"context"
	"crypto/x509"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the forms schema.
func Migrations() db.Migrations { return db.Embedded("forms", migrationFiles) }

// MaxClockSkew is how far in the future a template's signed_at may be
// when it is published.
const MaxClockSkew = 2 * time.Minute

// Actor is who calls: a session's account and device.
type Actor struct {
	AccountID string
	DeviceID  string
}

// Orgs answers which role an account holds in an organisation ("" for
// none). identity.Service implements it.
type Orgs interface {
	OrgRole(ctx context.Context, orgID, accountID string) (string, error)
}

// Certificates answers, from identity's records, whether certificates
// may sign now. identity.Service implements it.
type Certificates interface {
	CheckDeviceCertificate(ctx context.Context, serial *big.Int) error
	CheckMembership(ctx context.Context, orgID, accountID, deviceID, role string, serial *big.Int) error
}

// Options configures a Catalogue. DB, CA, Certs and Orgs are required.
type Options struct {
	DB     *db.DB
	Logger *slog.Logger      // nil: discard
	Now    func() time.Time  // nil: time.Now
	CA     *x509.Certificate // the deployment's root, what clients pin
	// Intermediates are the deployment's issuing intermediates, current
	// and retired, when its root is kept offline (nil otherwise): a
	// template signed under any of them verifies (Verify).
	Intermediates []*x509.Certificate
	Certs         Certificates
	Orgs          Orgs
}

// Catalogue is the deployment's catalogue of signed form templates.
type Catalogue struct {
	db    *db.DB
	log   *slog.Logger
	now   func() time.Time
	ca    *x509.Certificate
	inter []*x509.Certificate
	certs Certificates
	orgs  Orgs
}

// NewCatalogue checks o and returns the catalogue.
func NewCatalogue(o Options) (*Catalogue, error) {
	if o.DB == nil || o.CA == nil || o.Certs == nil || o.Orgs == nil {
		return nil, errors.New("forms: DB, CA, Certs and Orgs are required")
	}
	c := &Catalogue{db: o.DB, log: o.Logger, now: o.Now, ca: o.CA, inter: o.Intermediates, certs: o.Certs, orgs: o.Orgs}
	if _, err := trustPool(o.CA, o.Intermediates); err != nil {
		return nil, fmt.Errorf("forms: %w", err)
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// Summary is a catalogue entry without its signed document.
type Summary struct {
	ID          string     `json:"id"`
	Version     string     `json:"version"`
	OrgID       string     `json:"org_id"`
	OrgName     string     `json:"org_name"`
	Title       Text       `json:"title"`
	Hash        string     `json:"hash"`
	PublishedAt time.Time  `json:"published_at"`
	WithdrawnAt *time.Time `json:"withdrawn_at,omitempty"`
}

// Entry is a catalogue entry with its signed document.
type Entry struct {
	Summary
	Signed Signed `json:"signed"`
}

// Verify verifies s as Verify does, against the deployment's root and
// intermediates the catalogue was made with.
func (c *Catalogue) Verify(s Signed) (*Verified, error) { return Verify(s, c.ca, c.inter...) }

// Publish verifies s against the deployment CA (signature, chain,
// lineage), checks that the caller is the signing device, still a member
// of the template's organisation with current certificates, that the id
// is the organisation's (or new) and the version after every published
// one, and stores it. Nothing is stored on any error.
func (c *Catalogue) Publish(ctx context.Context, a Actor, s Signed) (*Entry, error) {
	v, err := c.Verify(s)
	if err != nil {
		return nil, err
	}
	t := v.Template
	if a.AccountID != v.Signer.AccountID || a.DeviceID != v.Signer.DeviceID {
		return nil, fmt.Errorf("forms.publish: %w: only the signing device publishes its template", ErrForbidden)
	}
	now := c.now()
	if v.SignedAt.After(now.Add(MaxClockSkew)) {
		return nil, fmt.Errorf("forms.publish: %w: signed_at %s is ahead of the server's clock", ErrInvalid, v.SignedAt.Format(time.RFC3339))
	}
	if err := c.certs.CheckDeviceCertificate(ctx, v.Signer.Serial); err != nil {
		return nil, fmt.Errorf("forms.publish: %w: signing device: %w", ErrForbidden, err)
	}
	m := v.Membership
	if err := c.certs.CheckMembership(ctx, m.OrgID, m.AccountID, m.DeviceID, m.Role, m.Serial); err != nil {
		return nil, fmt.Errorf("forms.publish: %w: membership: %w", ErrForbidden, err)
	}
	signed, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	ver, _ := ParseVersion(t.Version)
	e := &Entry{Summary: Summary{ID: t.ID, Version: t.Version, OrgID: t.Org.ID, OrgName: t.Org.Name, Title: t.Title, Hash: t.Hash(),
		PublishedAt: time.Unix(now.Unix(), 0).UTC()}, Signed: s}
	err = c.db.Tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT org_id, major, minor, patch FROM forms_templates WHERE id = $1`, t.ID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var org string
			var p Version
			if err := rows.Scan(&org, &p.Major, &p.Minor, &p.Patch); err != nil {
				return err
			}
			if org != t.Org.ID {
				return fmt.Errorf("%w: template id %s belongs to organisation %s", ErrForbidden, t.ID, org)
			}
			if ver.Compare(p) == 0 {
				return fmt.Errorf("%w: %s %s", ErrExists, t.ID, t.Version)
			}
			if ver.Compare(p) < 0 {
				return fmt.Errorf("%w: %s %s is published, %s is not after it", ErrVersion, t.ID, p, t.Version)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		_, err = tx.ExecContext(ctx, `INSERT INTO forms_templates (id, version, major, minor, patch, org_id, org_name, title_de, title_en,
			hash, signed, publisher_account, publisher_device, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			t.ID, t.Version, ver.Major, ver.Minor, ver.Patch, t.Org.ID, t.Org.Name, t.Title.DE, t.Title.EN, t.Hash(), string(signed),
			a.AccountID, a.DeviceID, e.PublishedAt.Unix())
		if db.IsUniqueViolation(err) {
			return fmt.Errorf("%w: %s %s", ErrExists, t.ID, t.Version)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("forms.publish: %w", err)
	}
	c.log.Info("form template published", "id", t.ID, "version", t.Version, "org", t.Org.ID, "hash", t.Hash())
	return e, nil
}

// ListOptions filters List.
type ListOptions struct {
	ID        string // only this id, every version (withdrawn ones too)
	OrgID     string // only this organisation's
	After     string // the last id of the previous page
	Limit     int    // 1 to MaxListLimit; 0 is 100
	Withdrawn bool   // with ID: include withdrawn versions
}

// List returns, ordered by id, the newest version of each template that
// is not withdrawn; with ID, every version of that template, the newest
// first.
func (c *Catalogue) List(ctx context.Context, o ListOptions) ([]Summary, error) {
	if o.Limit == 0 {
		o.Limit = 100
	}
	if o.Limit < 1 || o.Limit > MaxListLimit {
		return nil, fmt.Errorf("forms.list: %w: limit 1 to %d", ErrInvalid, MaxListLimit)
	}
	q := `SELECT id, version, org_id, org_name, title_de, title_en, hash, published_at, withdrawn_at, major, minor, patch FROM forms_templates
		WHERE ($1 = '' OR id = $1) AND ($2 = '' OR org_id = $2) AND id > $3 AND (withdrawn_at IS NULL OR $4)
		ORDER BY id, major DESC, minor DESC, patch DESC`
	rows, err := c.db.Query(ctx, q, o.ID, o.OrgID, o.After, o.ID != "" && o.Withdrawn)
	if err != nil {
		return nil, fmt.Errorf("forms.list: %w", err)
	}
	defer rows.Close()
	var out []Summary
	for rows.Next() {
		s, err := scanSummary(rows)
		if err != nil {
			return nil, fmt.Errorf("forms.list: %w", err)
		}
		if o.ID == "" && len(out) > 0 && out[len(out)-1].ID == s.ID {
			continue // an older version
		}
		if len(out) == o.Limit {
			break
		}
		out = append(out, *s)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

func scanSummary(r scanner) (*Summary, error) {
	var s Summary
	var published int64
	var withdrawn sql.NullInt64
	var maj, min, pat int64
	if err := r.Scan(&s.ID, &s.Version, &s.OrgID, &s.OrgName, &s.Title.DE, &s.Title.EN, &s.Hash, &published, &withdrawn, &maj, &min, &pat); err != nil {
		return nil, err
	}
	s.PublishedAt = time.Unix(published, 0).UTC()
	if withdrawn.Valid {
		w := time.Unix(withdrawn.Int64, 0).UTC()
		s.WithdrawnAt = &w
	}
	return &s, nil
}

// Get returns a template version, "latest" for the newest one not
// withdrawn. A withdrawn version is refused with ErrWithdrawn unless
// withdrawn is set (its organisation's agents and verifiers still read it).
func (c *Catalogue) Get(ctx context.Context, id, version string, withdrawn bool) (*Entry, error) {
	if !validSlug(id, 3) {
		return nil, fmt.Errorf("forms.get: %w: id %q", ErrNotFound, id)
	}
	q := `SELECT id, version, org_id, org_name, title_de, title_en, hash, published_at, withdrawn_at, major, minor, patch, signed
		FROM forms_templates WHERE id = $1 AND version = $2`
	args := []any{id, version}
	if version == "latest" {
		q = `SELECT id, version, org_id, org_name, title_de, title_en, hash, published_at, withdrawn_at, major, minor, patch, signed
		FROM forms_templates WHERE id = $1 AND withdrawn_at IS NULL ORDER BY major DESC, minor DESC, patch DESC LIMIT 1`
		args = args[:1]
	} else if _, err := ParseVersion(version); err != nil {
		return nil, fmt.Errorf("forms.get: %w: version %q", ErrNotFound, version)
	}
	var signed string
	var e Entry
	row := c.db.QueryRow(ctx, q, args...)
	s, err := scanSummary(scanFunc(func(dest ...any) error { return row.Scan(append(dest, &signed)...) }))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("forms.get: %w: %s %s", ErrNotFound, id, version)
	} else if err != nil {
		return nil, fmt.Errorf("forms.get: %w", err)
	}
	e.Summary = *s
	if err := json.Unmarshal([]byte(signed), &e.Signed); err != nil {
		return nil, fmt.Errorf("forms.get: stored template: %w", err)
	}
	if e.WithdrawnAt != nil && !withdrawn {
		return nil, fmt.Errorf("forms.get: %w: %s %s was withdrawn at %s", ErrWithdrawn, e.ID, e.Version, e.WithdrawnAt.Format(time.RFC3339))
	}
	return &e, nil
}

type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// Withdraw marks a template version withdrawn: it leaves the list and
// Get refuses it, so no new submission can be made for it. Only a
// current member of the template's organisation withdraws.
func (c *Catalogue) Withdraw(ctx context.Context, a Actor, id, version string) (*Summary, error) {
	e, err := c.Get(ctx, id, version, true)
	if err != nil {
		return nil, fmt.Errorf("forms.withdraw: %w", err)
	}
	role, err := c.orgs.OrgRole(ctx, e.OrgID, a.AccountID)
	if err != nil {
		return nil, fmt.Errorf("forms.withdraw: %w", err)
	}
	if role == "" {
		return nil, fmt.Errorf("forms.withdraw: %w: only a member of %s withdraws its templates", ErrForbidden, e.OrgID)
	}
	if e.WithdrawnAt != nil {
		return &e.Summary, nil
	}
	now := time.Unix(c.now().Unix(), 0).UTC()
	if _, err := c.db.Exec(ctx, `UPDATE forms_templates SET withdrawn_at = $1, withdrawn_by = $2 WHERE id = $3 AND version = $4 AND withdrawn_at IS NULL`,
		now.Unix(), a.AccountID, e.ID, e.Version); err != nil {
		return nil, fmt.Errorf("forms.withdraw: %w", err)
	}
	e.WithdrawnAt = &now
	c.log.Info("form template withdrawn", "id", id, "version", version, "by", a.AccountID)
	return &e.Summary, nil
}
