package miniapps

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Consent decisions.
const (
	DecisionGranted = "granted"
	DecisionRefused = "refused"
	DecisionRevoked = "revoked"
)

// ConsentRecord is one decision about one scope, as recorded.
type ConsentRecord struct {
	AppID           string    `json:"app_id"`
	Seq             int64     `json:"seq"`
	Scope           string    `json:"scope"`
	Decision        string    `json:"decision"`
	ManifestVersion int       `json:"manifest_version"`
	DecidedAt       time.Time `json:"decided_at"`
	DeviceID        string    `json:"device_id"`
}

// ConsentState is a citizen's consent to one app as in force now.
type ConsentState struct {
	AppID   string          `json:"app_id"`
	Granted []string        `json:"granted"`
	Refused []string        `json:"refused"`
	Records []ConsentRecord `json:"records"` // every decision, oldest first
}

// ConsentRequest is the body of POST /v1/apps/{app}/consent: the scopes
// granted; every other scope of the manifest is refused.
type ConsentRequest struct {
	Grant []string `json:"grant"`
}

// Consent records the citizen's decision on each scope of the app's
// approved manifest: the scopes in grant are granted, the others refused.
// openid must be granted, or nothing else means anything: a consent
// without it is refused as invalid.
func (s *Service) Consent(ctx context.Context, actor Actor, appID string, grant []string) (*ConsentState, error) {
	if actor.AccountID == "" {
		return nil, fmt.Errorf("miniapps.consent: %w", ErrForbidden)
	}
	a, err := s.activeApp(ctx, appID)
	if err != nil {
		return nil, err
	}
	for _, g := range grant {
		if !slices.Contains(a.Manifest.Scopes, g) {
			return nil, invalid("scope %q is not in the app's manifest (version %d)", g, a.ApprovedVersion)
		}
	}
	if !slices.Contains(grant, ScopeOpenID) {
		return nil, invalid("openid must be granted: without it the app cannot sign you in (refuse by not opening the app)")
	}
	now := s.now()
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		seq, err := nextSeq(ctx, tx, actor.AccountID, appID)
		if err != nil {
			return err
		}
		for _, sc := range a.Manifest.Scopes {
			d := DecisionRefused
			if slices.Contains(grant, sc) {
				d = DecisionGranted
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO miniapps_consents (account_id, app_id, seq, scope, decision, manifest_version, decided_at, device_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, actor.AccountID, appID, seq, sc, d, a.ApprovedVersion, now.Unix(), actor.DeviceID); err != nil {
				return err
			}
		}
		return audit(ctx, tx, now, appID, actor.AccountID, actor.String(), "consent", fmt.Sprintf("granted %v", grant))
	})
	if err != nil {
		return nil, err
	}
	return s.consentState(ctx, actor.AccountID, appID)
}

// Revoke revokes the citizen's consent to an app: every scope, and every
// token the app holds for the citizen, at once.
func (s *Service) Revoke(ctx context.Context, actor Actor, appID string) (*ConsentState, error) {
	if actor.AccountID == "" {
		return nil, fmt.Errorf("miniapps.revoke: %w", ErrForbidden)
	}
	st, err := s.consentState(ctx, actor.AccountID, appID)
	if err != nil {
		return nil, err
	}
	if len(st.Records) == 0 {
		return nil, fmt.Errorf("miniapps.revoke: %w: no consent to %s", ErrNotFound, appID)
	}
	now := s.now()
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		seq, err := nextSeq(ctx, tx, actor.AccountID, appID)
		if err != nil {
			return err
		}
		version := st.Records[len(st.Records)-1].ManifestVersion
		for _, sc := range append(slices.Clone(st.Granted), st.Refused...) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO miniapps_consents (account_id, app_id, seq, scope, decision, manifest_version, decided_at, device_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, actor.AccountID, appID, seq, sc, DecisionRevoked, version, now.Unix(), actor.DeviceID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE miniapps_tokens SET revoked = 1 WHERE client_id = $1 AND account_id = $2`, appID, actor.AccountID); err != nil {
			return err
		}
		return audit(ctx, tx, now, appID, actor.AccountID, actor.String(), "revoke", "")
	})
	if err != nil {
		return nil, err
	}
	return s.consentState(ctx, actor.AccountID, appID)
}

// Consents lists the citizen's consents, one state per app ever decided.
func (s *Service) Consents(ctx context.Context, accountID string) ([]ConsentState, error) {
	rows, err := s.db.Query(ctx, `SELECT DISTINCT app_id FROM miniapps_consents WHERE account_id = $1 ORDER BY app_id`, accountID)
	if err != nil {
		return nil, err
	}
	var apps []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		apps = append(apps, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := []ConsentState{}
	for _, id := range apps {
		st, err := s.consentState(ctx, accountID, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *st)
	}
	return out, nil
}

// Granted returns the scopes the citizen has granted the app now, among
// those of its approved manifest (a scope dropped from the manifest is no
// longer granted).
func (s *Service) granted(ctx context.Context, accountID string, a *App) ([]string, error) {
	st, err := s.consentState(ctx, accountID, a.ID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range st.Granted {
		if slices.Contains(a.Manifest.Scopes, g) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *Service) consentState(ctx context.Context, accountID, appID string) (*ConsentState, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, scope, decision, manifest_version, decided_at, device_id FROM miniapps_consents
		WHERE account_id = $1 AND app_id = $2 ORDER BY seq, scope`, accountID, appID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	st := &ConsentState{AppID: appID, Granted: []string{}, Refused: []string{}, Records: []ConsentRecord{}}
	for rows.Next() {
		r := ConsentRecord{AppID: appID}
		var at int64
		if err := rows.Scan(&r.Seq, &r.Scope, &r.Decision, &r.ManifestVersion, &at, &r.DeviceID); err != nil {
			return nil, err
		}
		r.DecidedAt = time.Unix(at, 0).UTC()
		st.Records = append(st.Records, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// The newest decision (highest seq) covers every scope it names; a
	// scope it does not name keeps an older one only if no newer decision
	// was made at all — a consent names every scope of its manifest, so
	// in practice the newest decision is the whole state.
	var newest int64
	if n := len(st.Records); n > 0 {
		newest = st.Records[n-1].Seq
	}
	for _, r := range st.Records {
		if r.Seq != newest {
			continue
		}
		switch r.Decision {
		case DecisionGranted:
			st.Granted = append(st.Granted, r.Scope)
		case DecisionRefused:
			st.Refused = append(st.Refused, r.Scope)
		}
	}
	return st, nil
}

func nextSeq(ctx context.Context, tx *sql.Tx, accountID, appID string) (int64, error) {
	var max sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(seq) FROM miniapps_consents WHERE account_id = $1 AND app_id = $2`, accountID, appID).Scan(&max); err != nil {
		return 0, err
	}
	return max.Int64 + 1, nil
}
