package miniapps

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// App is a registered mini-app as the registry knows it.
type App struct {
	ID              string    `json:"id"`
	OrgID           string    `json:"org_id"`
	OrgName         string    `json:"org_name,omitempty"` // verified: from the organisation certificate
	Status          string    `json:"status"`
	ApprovedVersion int       `json:"approved_version"` // 0: never approved
	LatestVersion   int       `json:"latest_version"`
	Manifest        Manifest  `json:"manifest"` // the approved version (the latest while never approved)
	Pending         *Manifest `json:"pending,omitempty"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// Registered is the answer to a registration.
type Registered struct {
	App App `json:"app"`
	// ClientSecret is the app backend's secret for the token endpoint and
	// the bridge: given once, at the first registration.
	ClientSecret string `json:"client_secret,omitempty"`
	// NeedsApproval says the operator must approve this version before
	// citizens see it.
	NeedsApproval bool `json:"needs_approval"`
}

// RegisterManifest registers a manifest version as its signing device sends it.
// The caller must be the signing device; the manifest must verify, be
// issued within MaxClockSkew of now, and its signer must be a current
// member of the organisation with current certificates. The first
// registration of an app id creates it (pending) and returns its client
// secret; a later one must have a higher version and the same
// organisation, and is approved at once only if the app is approved and
// the new version asks for no scope the approved one did not.
func (s *Service) RegisterManifest(ctx context.Context, actor Actor, jws string) (*Registered, error) {
	if len(jws) == 0 || len(jws) > MaxManifest {
		return nil, fmt.Errorf("%w: a compact JWS of at most %d bytes is required", ErrInvalidManifest, MaxManifest)
	}
	vm, err := VerifyManifest(jws, s.roots)
	if err != nil {
		return nil, err
	}
	m := vm.Manifest
	if actor.AccountID != vm.Signer.Device.AccountID || actor.DeviceID != vm.Signer.Device.DeviceID {
		return nil, fmt.Errorf("miniapps.register: %w: only the signing device registers its manifest", ErrForbidden)
	}
	now := s.now()
	if d := m.IssuedAt.Sub(now); d > MaxClockSkew || d < -MaxClockSkew {
		return nil, fmt.Errorf("%w: issued_at %s is more than %v from the server's clock", ErrInvalidManifest,
			m.IssuedAt.UTC().Format(time.RFC3339), MaxClockSkew)
	}
	if err := s.certs.CheckDeviceCertificate(ctx, vm.Signer.Device.Serial); err != nil {
		return nil, fmt.Errorf("miniapps.register: %w: %w", ErrForbidden, err)
	}
	ms := vm.Signer.Membership
	if err := s.certs.CheckMembership(ctx, ms.OrgID, ms.AccountID, ms.DeviceID, ms.Role, ms.Serial); err != nil {
		return nil, fmt.Errorf("miniapps.register: %w: %w", ErrForbidden, err)
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := &Registered{}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		a, err := loadApp(ctx, tx, m.AppID)
		switch {
		case errors.Is(err, ErrNotFound):
			secret, err := newID("kanal_app_", 32)
			if err != nil {
				return err
			}
			out.ClientSecret, out.NeedsApproval = secret, true
			if _, err := tx.ExecContext(ctx, `INSERT INTO miniapps_apps (id, org_id, status, approved_version, latest_version, secret_hash,
				created_at, updated_at) VALUES ($1, $2, $3, 0, $4, $5, $6, $6)`,
				m.AppID, m.OrgID, StatusPending, m.AppVer, hashToken(secret), now.Unix()); err != nil {
				return err
			}
		case err != nil:
			return err
		case a.OrgID != m.OrgID:
			return fmt.Errorf("miniapps.register: %w: app id %s belongs to another organisation", ErrConflict, m.AppID)
		case m.AppVer <= a.LatestVersion:
			return fmt.Errorf("miniapps.register: %w: version %d is not above the registered %d", ErrConflict, m.AppVer, a.LatestVersion)
		default:
			approved := a.Status == StatusApproved && a.ApprovedVersion > 0 && subset(m.Scopes, a.Manifest.Scopes)
			out.NeedsApproval = !approved
			q := `UPDATE miniapps_apps SET latest_version = $1, updated_at = $2 WHERE id = $3`
			if approved {
				q = `UPDATE miniapps_apps SET latest_version = $1, approved_version = $1, updated_at = $2 WHERE id = $3`
			}
			if _, err := tx.ExecContext(ctx, q, m.AppVer, now.Unix(), m.AppID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO miniapps_manifests (app_id, version, payload, jws, signer_account, signer_device, registered_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, m.AppID, m.AppVer, string(payload), jws, actor.AccountID, actor.DeviceID, now.Unix()); err != nil {
			return err
		}
		return audit(ctx, tx, now, m.AppID, "", actor.String(), "register", fmt.Sprintf("version %d, scopes %v", m.AppVer, m.Scopes))
	})
	if err != nil {
		return nil, err
	}
	a, err := s.App(ctx, m.AppID)
	if err != nil {
		return nil, err
	}
	out.App = *a
	return out, nil
}

// subset reports whether every scope of a is in b.
func subset(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}

// Approve makes the app's latest version the one citizens see.
func (s *Service) Approve(ctx context.Context, actor Actor, appID string) (*App, error) {
	if !actor.Operator {
		return nil, fmt.Errorf("miniapps.approve: %w", ErrForbidden)
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		a, err := loadApp(ctx, tx, appID)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE miniapps_apps SET status = $1, approved_version = latest_version, updated_at = $2 WHERE id = $3`,
			StatusApproved, s.now().Unix(), appID); err != nil {
			return err
		}
		return audit(ctx, tx, s.now(), appID, "", actor.String(), "approve", fmt.Sprintf("version %d", a.LatestVersion))
	})
	if err != nil {
		return nil, err
	}
	return s.App(ctx, appID)
}

// Suspend stops an app: it disappears from the citizens' list, sign-in
// and launch are refused, every token of it stops working, and the bridge
// refuses it. Approve lifts a suspension.
func (s *Service) Suspend(ctx context.Context, actor Actor, appID string) (*App, error) {
	if !actor.Operator {
		return nil, fmt.Errorf("miniapps.suspend: %w", ErrForbidden)
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := loadApp(ctx, tx, appID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE miniapps_apps SET status = $1, updated_at = $2 WHERE id = $3`,
			StatusSuspended, s.now().Unix(), appID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE miniapps_tokens SET revoked = 1 WHERE client_id = $1`, appID); err != nil {
			return err
		}
		return audit(ctx, tx, s.now(), appID, "", actor.String(), "suspend", "")
	})
	if err != nil {
		return nil, err
	}
	return s.App(ctx, appID)
}

// App returns one app.
func (s *Service) App(ctx context.Context, appID string) (*App, error) {
	var a *App
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		a, err = loadApp(ctx, tx, appID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if name, err := s.orgs.OrgName(ctx, a.OrgID); err == nil {
		a.OrgName = name
	}
	return a, nil
}

// Apps lists the registry: every app for the operator, the approved ones
// (in their approved version) otherwise.
func (s *Service) Apps(ctx context.Context, all bool) ([]App, error) {
	q := `SELECT id FROM miniapps_apps ORDER BY id`
	if !all {
		q = `SELECT id FROM miniapps_apps WHERE status = 'approved' ORDER BY id`
	}
	rows, err := s.db.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := []App{}
	for _, id := range ids {
		a, err := s.App(ctx, id)
		if err != nil {
			return nil, err
		}
		if !all {
			a.Pending = nil
		}
		out = append(out, *a)
	}
	return out, nil
}

// activeApp returns an approved app in its approved version: what sign-in,
// launch and the bridge need.
func (s *Service) activeApp(ctx context.Context, appID string) (*App, error) {
	a, err := s.App(ctx, appID)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Status == StatusSuspended:
		return nil, fmt.Errorf("miniapps: %w: %s", ErrSuspended, appID)
	case a.Status != StatusApproved || a.ApprovedVersion == 0:
		return nil, fmt.Errorf("miniapps: %w: %s", ErrNotApproved, appID)
	}
	return a, nil
}

// checkSecret authenticates an app's backend.
func (s *Service) checkSecret(ctx context.Context, appID, secret string) (*App, error) {
	var hash string
	err := s.db.QueryRow(ctx, `SELECT secret_hash FROM miniapps_apps WHERE id = $1`, appID).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) || err == nil && subtle.ConstantTimeCompare([]byte(hash), []byte(hashToken(secret))) != 1 {
		return nil, fmt.Errorf("miniapps: %w", ErrClient)
	} else if err != nil {
		return nil, err
	}
	return s.activeApp(ctx, appID)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func loadApp(ctx context.Context, q querier, appID string) (*App, error) {
	a := &App{ID: appID}
	var updated int64
	err := q.QueryRowContext(ctx, `SELECT org_id, status, approved_version, latest_version, updated_at FROM miniapps_apps WHERE id = $1`, appID).
		Scan(&a.OrgID, &a.Status, &a.ApprovedVersion, &a.LatestVersion, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("miniapps: %w: app %s", ErrNotFound, appID)
	} else if err != nil {
		return nil, err
	}
	a.UpdatedAt = time.Unix(updated, 0).UTC()
	shown := a.ApprovedVersion
	if shown == 0 {
		shown = a.LatestVersion
	}
	m, err := loadManifest(ctx, q, appID, shown)
	if err != nil {
		return nil, err
	}
	a.Manifest = *m
	if a.LatestVersion != shown {
		if a.Pending, err = loadManifest(ctx, q, appID, a.LatestVersion); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func loadManifest(ctx context.Context, q querier, appID string, version int) (*Manifest, error) {
	var payload string
	if err := q.QueryRowContext(ctx, `SELECT payload FROM miniapps_manifests WHERE app_id = $1 AND version = $2`, appID, version).Scan(&payload); err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// audit records one event.
func audit(ctx context.Context, tx execer, at time.Time, appID, account, actor, action, detail string) error {
	id, err := newID("au_", 10)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO miniapps_audit (id, at, app_id, account_id, actor, action, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, at.Unix(), appID, account, actor, action, detail)
	return err
}
