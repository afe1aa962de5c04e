package miniapps

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/internal/web"
)

// TypeLaunch is the "typ" header of a launch token.
const TypeLaunch = "kanal-launch+jwt"

// LaunchClaims are the claims of a launch token: a JWS (ES256) by the
// deployment's provider key, verifiable with the published JWKS.
type LaunchClaims struct {
	Issuer       string `json:"iss"`
	Audience     string `json:"aud"` // the app id
	Subject      string `json:"sub"` // the citizen's pairwise subject for the app
	IssuedAt     int64  `json:"iat"`
	Expiry       int64  `json:"exp"`
	Nonce        string `json:"nonce"`
	ID           string `json:"jti"`
	Conversation string `json:"kanal_conversation,omitempty"` // a handle, meaningful only to the bridge
	ACR          string `json:"acr"`                          // the level of the session that opened the app
}

// sectorOf is the key pairwise subjects are derived under: the
// organisation and the manifest's sector, or the app itself.
func sectorOf(m *Manifest) string {
	if m.Sector != "" {
		return "sector:" + m.OrgID + "/" + m.Sector
	}
	return "app:" + m.AppID
}

// subject returns the citizen's pairwise subject in the app's sector,
// HMAC-SHA256(key, sector ‖ 0x00 ‖ account) truncated to 160 bits, and
// records it so that the bridge can find the citizen again.
func (s *Service) subject(ctx context.Context, m *Manifest, accountID string) (string, error) {
	sector := sectorOf(m)
	mac := hmac.New(sha256.New, s.subKey)
	mac.Write([]byte(sector))
	mac.Write([]byte{0})
	mac.Write([]byte(accountID))
	sub := idEncoding.EncodeToString(mac.Sum(nil)[:20])
	_, err := s.db.Exec(ctx, `INSERT INTO miniapps_subjects (sector, subject, account_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		sector, sub, accountID)
	return sub, err
}

// accountOf finds the citizen behind an app's pairwise subject.
func (s *Service) accountOf(ctx context.Context, m *Manifest, subject string) (string, error) {
	var acc string
	err := s.db.QueryRow(ctx, `SELECT account_id FROM miniapps_subjects WHERE sector = $1 AND subject = $2`, sectorOf(m), subject).Scan(&acc)
	if err == sql.ErrNoRows {
		return "", fmt.Errorf("%w: unknown subject", ErrNotFound)
	}
	return acc, err
}

// OpenRequest is the body of POST /v1/apps/{app}/open.
type OpenRequest struct {
	// Conversation is the conversation the app is opened from ("": the
	// conversation of the citizen and the app's organisation).
	Conversation string `json:"conversation,omitempty"`
}

// Opened is the answer: the URL to open, which carries the launch token.
type Opened struct {
	URL         string    `json:"url"`
	LaunchToken string    `json:"launch_token"`
	Subject     string    `json:"subject"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// Open issues a launch token for the app to the citizen's device session
// and returns the app's launch URL carrying it. The citizen must have
// granted openid.
func (s *Service) Open(ctx context.Context, actor Actor, appID, conversation string) (*Opened, error) {
	if actor.AccountID == "" || actor.DeviceID == "" {
		return nil, fmt.Errorf("miniapps.open: %w: a device session opens apps", ErrForbidden)
	}
	a, err := s.activeApp(ctx, appID)
	if err != nil {
		return nil, err
	}
	granted, err := s.granted(ctx, actor.AccountID, a)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(granted, ScopeOpenID) {
		return nil, fmt.Errorf("miniapps.open: %w: consent to %s first (kanal app consent)", ErrConsent, appID)
	}
	if conversation == "" {
		conversation = s.convName(a.OrgID, actor.AccountID)
	}
	if len(conversation) > 64 || strings.ContainsFunc(conversation, isControl) {
		return nil, invalid("conversation id")
	}
	sub, err := s.subject(ctx, &a.Manifest, actor.AccountID)
	if err != nil {
		return nil, err
	}
	handle, err := newID("cv_", 16)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if _, err := s.db.Exec(ctx, `INSERT INTO miniapps_handles (handle, app_id, account_id, conversation, created_at) VALUES ($1, $2, $3, $4, $5)`,
		handle, appID, actor.AccountID, conversation, now.Unix()); err != nil {
		return nil, err
	}
	nonce, err := newID("", 16)
	if err != nil {
		return nil, err
	}
	jti, err := newID("lt_", 16)
	if err != nil {
		return nil, err
	}
	c := LaunchClaims{Issuer: s.issuer, Audience: appID, Subject: sub, IssuedAt: now.Unix(), Expiry: now.Add(LaunchTTL).Unix(),
		Nonce: nonce, ID: jti, Conversation: handle, ACR: actor.Level.String()}
	tok, err := s.signJWT(TypeLaunch, c)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(a.Manifest.LaunchURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("launch_token", tok)
	u.RawQuery = q.Encode()
	return &Opened{URL: u.String(), LaunchToken: tok, Subject: sub, ExpiresAt: time.Unix(c.Expiry, 0).UTC()}, nil
}

// signJWT signs claims as a compact JWS with the provider key.
func (s *Service) signJWT(typ string, claims any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.keys.priv, KeyID: s.keys.id}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// VerifyLaunch checks a launch token for appID at now: signature by the
// provider key, typ, issuer, audience, expiry. It does not consume it.
func (s *Service) VerifyLaunch(tok, appID string) (*LaunchClaims, error) {
	if len(tok) > 4096 {
		return nil, fmt.Errorf("%w: too long", ErrLaunch)
	}
	obj, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLaunch, err)
	}
	if len(obj.Signatures) != 1 || obj.Signatures[0].Protected.ExtraHeaders[jose.HeaderType] != TypeLaunch {
		return nil, fmt.Errorf("%w: not a launch token", ErrLaunch)
	}
	payload, err := obj.Verify(&s.keys.priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: signature", ErrLaunch)
	}
	var c LaunchClaims
	if err := orgsig.DecodeStrict(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLaunch, err)
	}
	now := s.now().Unix()
	switch {
	case c.Issuer != s.issuer:
		return nil, fmt.Errorf("%w: issuer", ErrLaunch)
	case c.Audience != appID:
		return nil, fmt.Errorf("%w: issued for another app", ErrLaunch)
	case now >= c.Expiry:
		return nil, fmt.Errorf("%w: expired", ErrLaunch)
	}
	return &c, nil
}

// useLaunch records a launch token as used, refusing a second use.
func (s *Service) useLaunch(ctx context.Context, tx *sql.Tx, c *LaunchClaims) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO miniapps_launches_used (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, c.ID, c.Expiry)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("%w: already used", ErrLaunch)
	}
	return nil
}

// ExpireLaunches forgets used launch tokens past their expiry, and
// finished or abandoned authorization requests.
func (s *Service) Expire(ctx context.Context) (int64, error) {
	now := s.now()
	var n int64
	for _, q := range []string{
		`DELETE FROM miniapps_launches_used WHERE expires_at < $1`,
		`DELETE FROM miniapps_auth_requests WHERE created_at < $1 - 600`,
		`DELETE FROM miniapps_tokens WHERE expires_at < $1 - 86400`,
	} {
		res, err := s.db.Exec(ctx, q, now.Unix())
		if err != nil {
			return n, err
		}
		k, _ := res.RowsAffected()
		n += k
	}
	return n, nil
}

func (s *Service) handleOpen(w http.ResponseWriter, r *http.Request, a Actor) error {
	var req OpenRequest
	if err := web.DecodeJSON(w, r, &req, MaxBody); err != nil {
		return err
	}
	out, err := s.Open(r.Context(), a, r.PathValue("app"), req.Conversation)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func levelOf(acr string) ca.Level {
	if l, err := ca.ParseLevel(acr); err == nil {
		return l
	}
	return ca.LevelLow
}
