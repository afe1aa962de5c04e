package miniapps

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/kanal-server/kanal/internal/web"
)

// The OpenID Provider is zitadel/oidc's op package (certified by the
// OpenID Foundation for the Basic and Config profiles): it speaks the
// protocol — discovery, the authorize and token endpoints, ID tokens,
// at_hash, refresh, end_session, JWKS. kanal supplies the storage below
// (the database, consents, pairwise subjects), the signing key, and the
// login step, which is a kanal device login rather than a password form.

// authRequest is one authorization request from /authorize to the code's
// exchange (op.AuthRequest).
type authRequest struct {
	ID            string                   `json:"id"`
	ClientID      string                   `json:"client_id"`
	RedirectURI   string                   `json:"redirect_uri"`
	State         string                   `json:"state"`
	Nonce         string                   `json:"nonce"`
	Scopes        []string                 `json:"scopes"`
	ResponseType  oidc.ResponseType        `json:"response_type"`
	ResponseMode  oidc.ResponseMode        `json:"response_mode"`
	Challenge     string                   `json:"code_challenge"`
	ChallengeMeth oidc.CodeChallengeMethod `json:"code_challenge_method"`
	LoginHint     string                   `json:"login_hint"`
	CreatedAt     int64                    `json:"created_at"`

	// Set at login.
	AccountID string `json:"-"`
	Subject   string `json:"-"`
	Level     string `json:"-"`
	AuthTime  int64  `json:"-"`
	IsDone    bool   `json:"-"`
}

func (a *authRequest) GetID() string         { return a.ID }
func (a *authRequest) GetACR() string        { return a.Level }
func (a *authRequest) GetAMR() []string      { return []string{"pop"} } // RFC 8176: proof of possession of the device key
func (a *authRequest) GetAudience() []string { return []string{a.ClientID} }
func (a *authRequest) GetAuthTime() time.Time {
	return time.Unix(a.AuthTime, 0)
}
func (a *authRequest) GetClientID() string { return a.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: a.Challenge, Method: a.ChallengeMeth}
}
func (a *authRequest) GetNonce() string                   { return a.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.Scopes }
func (a *authRequest) GetState() string                   { return a.State }
func (a *authRequest) GetSubject() string                 { return a.Subject }
func (a *authRequest) Done() bool                         { return a.IsDone }

// grant is what a token was issued for: an exchanged code or a refresh
// token (op.TokenRequest, op.RefreshTokenRequest).
type grant struct {
	ClientID  string
	AccountID string
	Subject   string
	Scopes    []string
	Level     string
	AuthTime  time.Time
	RefreshID string // the refresh token being rotated
}

func (g *grant) GetAMR() []string            { return []string{"pop"} }
func (g *grant) GetAudience() []string       { return []string{g.ClientID} }
func (g *grant) GetAuthTime() time.Time      { return g.AuthTime }
func (g *grant) GetClientID() string         { return g.ClientID }
func (g *grant) GetScopes() []string         { return g.Scopes }
func (g *grant) GetSubject() string          { return g.Subject }
func (g *grant) SetCurrentScopes(s []string) { g.Scopes = s }

// client is an app as the provider sees it (op.Client).
type client struct {
	app    *App
	issuer string
}

func (c *client) GetID() string          { return c.app.ID }
func (c *client) RedirectURIs() []string { return c.app.Manifest.Redirects }
func (c *client) PostLogoutRedirectURIs() []string {
	if len(c.app.Manifest.PostLogout) > 0 {
		return c.app.Manifest.PostLogout
	}
	return c.app.Manifest.Redirects
}
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string            { return c.issuer + "/login?id=" + url.QueryEscape(id) }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return AccessTTL }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }

// DevMode lets the library accept http redirect URIs, which a manifest
// allows only on a loopback host.
func (c *client) DevMode() bool {
	return slices.ContainsFunc(c.app.Manifest.Redirects, func(u string) bool { return strings.HasPrefix(u, "http://") })
}
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(scope string) bool {
	return scope == ScopeOfflineAccess || slices.Contains(c.app.Manifest.Scopes, scope)
}

// storage is op.Storage over the Service.
type storage struct{ s *Service }

func (st storage) CreateAuthRequest(ctx context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	a, err := st.s.App(ctx, r.ClientID)
	if err != nil {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	switch {
	case a.Status == StatusSuspended:
		return nil, oidc.ErrUnauthorizedClient().WithDescription("the app is suspended")
	case a.Status != StatusApproved:
		return nil, oidc.ErrUnauthorizedClient().WithDescription("the app is not approved")
	case r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256:
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method S256 is required")
	case r.ResponseType != oidc.ResponseTypeCode:
		return nil, &oidc.Error{ErrorType: "unsupported_response_type", Description: "only the authorization code flow is offered"}
	}
	id, err := newID("ar_", 16)
	if err != nil {
		return nil, err
	}
	req := &authRequest{ID: id, ClientID: r.ClientID, RedirectURI: r.RedirectURI, State: r.State, Nonce: r.Nonce,
		Scopes: r.Scopes, ResponseType: r.ResponseType, ResponseMode: r.ResponseMode, Challenge: r.CodeChallenge,
		ChallengeMeth: r.CodeChallengeMethod, LoginHint: r.LoginHint, CreatedAt: st.s.now().Unix()}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := st.s.db.Exec(ctx, `INSERT INTO miniapps_auth_requests (id, client_id, request, created_at) VALUES ($1, $2, $3, $4)`,
		id, r.ClientID, string(b), req.CreatedAt); err != nil {
		return nil, err
	}
	return req, nil
}

func (st storage) loadRequest(ctx context.Context, where string, arg any) (*authRequest, error) {
	var raw string
	var done int
	var authTime int64
	r := &authRequest{}
	err := st.s.db.QueryRow(ctx, `SELECT request, account_id, subject, level, auth_time, done FROM miniapps_auth_requests WHERE `+where, arg).
		Scan(&raw, &r.AccountID, &r.Subject, &r.Level, &authTime, &done)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, oidc.ErrInvalidRequest().WithDescription("unknown or finished authorization request")
	} else if err != nil {
		return nil, err
	}
	acc, sub, lvl := r.AccountID, r.Subject, r.Level
	if err := json.Unmarshal([]byte(raw), r); err != nil {
		return nil, err
	}
	r.AccountID, r.Subject, r.Level, r.AuthTime, r.IsDone = acc, sub, lvl, authTime, done == 1
	if st.s.now().Unix() >= r.CreatedAt+int64(CodeTTL/time.Second) {
		return nil, oidc.ErrInvalidGrant().WithDescription("the authorization request or code has expired")
	}
	return r, nil
}

func (st storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	return st.loadRequest(ctx, `id = $1`, id)
}

// AuthRequestByCode finds the request of a code and takes the code: a
// code is good for one exchange, and a second one — a replay, or a
// first one with the wrong PKCE verifier — finds nothing.
func (st storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	h := hashToken(code)
	r, err := st.loadRequest(ctx, `code_hash = $1`, h)
	if err != nil {
		if e := new(oidc.Error); errors.As(err, &e) {
			return nil, oidc.ErrInvalidGrant().WithDescription("unknown, used or expired code")
		}
		return nil, err
	}
	res, err := st.s.db.Exec(ctx, `UPDATE miniapps_auth_requests SET code_hash = NULL WHERE code_hash = $1`, h)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, oidc.ErrInvalidGrant().WithDescription("unknown, used or expired code")
	}
	return r, nil
}

func (st storage) SaveAuthCode(ctx context.Context, id, code string) error {
	_, err := st.s.db.Exec(ctx, `UPDATE miniapps_auth_requests SET code_hash = $1 WHERE id = $2 AND done = 1`, hashToken(code), id)
	return err
}

func (st storage) DeleteAuthRequest(ctx context.Context, id string) error {
	_, err := st.s.db.Exec(ctx, `DELETE FROM miniapps_auth_requests WHERE id = $1`, id)
	return err
}

// grantOf reads what a token request stands for.
func grantOf(req op.TokenRequest) (*grant, error) {
	switch r := req.(type) {
	case *authRequest:
		return &grant{ClientID: r.ClientID, AccountID: r.AccountID, Subject: r.Subject, Scopes: r.Scopes, Level: r.Level,
			AuthTime: time.Unix(r.AuthTime, 0)}, nil
	case *grant:
		return r, nil
	}
	return nil, fmt.Errorf("miniapps: token request %T", req)
}

func (st storage) insertToken(ctx context.Context, tx *sql.Tx, kind, hash string, g *grant, ttl time.Duration) (string, time.Time, error) {
	id, err := newID("tk_", 16)
	if err != nil {
		return "", time.Time{}, err
	}
	exp := st.s.now().Add(ttl)
	var h any
	if hash != "" {
		h = hash
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO miniapps_tokens (id, kind, hash, client_id, account_id, subject, scopes, level, auth_time, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, id, kind, h, g.ClientID, g.AccountID, g.Subject, strings.Join(g.Scopes, " "),
		g.Level, g.AuthTime.Unix(), exp.Unix())
	return id, exp, err
}

func (st storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	g, err := grantOf(req)
	if err != nil {
		return "", time.Time{}, err
	}
	var id string
	var exp time.Time
	err = st.s.db.Tx(ctx, func(tx *sql.Tx) error {
		id, exp, err = st.insertToken(ctx, tx, "access", "", g, AccessTTL)
		return err
	})
	return id, exp, err
}

func (st storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	g, err := grantOf(req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	refresh, err := newID("kanal_rt_", 32)
	if err != nil {
		return "", "", time.Time{}, err
	}
	var id string
	var exp time.Time
	err = st.s.db.Tx(ctx, func(tx *sql.Tx) error {
		if current != "" {
			// Rotation: the presented token dies with this use; a second
			// use of it finds it revoked.
			res, err := tx.ExecContext(ctx, `UPDATE miniapps_tokens SET revoked = 1 WHERE hash = $1 AND kind = 'refresh' AND revoked = 0`, hashToken(current))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return op.ErrInvalidRefreshToken
			}
		}
		if id, exp, err = st.insertToken(ctx, tx, "access", "", g, AccessTTL); err != nil {
			return err
		}
		_, _, err = st.insertToken(ctx, tx, "refresh", hashToken(refresh), g, RefreshTTL)
		return err
	})
	if errors.Is(err, op.ErrInvalidRefreshToken) {
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used or revoked")
	}
	return id, refresh, exp, err
}

// TokenRequestByRefreshToken accepts a refresh token only while it is
// unused, unexpired and unrevoked, the app is approved, and the citizen's
// consent still grants openid.
func (st storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	g := &grant{}
	var scopes string
	var authTime, exp int64
	var revoked int
	err := st.s.db.QueryRow(ctx, `SELECT id, client_id, account_id, subject, scopes, level, auth_time, expires_at, revoked FROM miniapps_tokens
		WHERE hash = $1 AND kind = 'refresh'`, hashToken(token)).Scan(&g.RefreshID, &g.ClientID, &g.AccountID, &g.Subject, &scopes, &g.Level, &authTime, &exp, &revoked)
	if errors.Is(err, sql.ErrNoRows) || err == nil && (revoked == 1 || st.s.now().Unix() >= exp) {
		return nil, op.ErrInvalidRefreshToken
	} else if err != nil {
		return nil, err
	}
	g.Scopes, g.AuthTime = strings.Fields(scopes), time.Unix(authTime, 0)
	a, err := st.s.activeApp(ctx, g.ClientID)
	if err != nil {
		return nil, op.ErrInvalidRefreshToken
	}
	granted, err := st.s.granted(ctx, g.AccountID, a)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(granted, ScopeOpenID) {
		return nil, op.ErrInvalidRefreshToken
	}
	return g, nil
}

// TerminateSession ends the app's tokens for the subject: RP-initiated
// logout.
func (st storage) TerminateSession(ctx context.Context, subject, clientID string) error {
	_, err := st.s.db.Exec(ctx, `UPDATE miniapps_tokens SET revoked = 1 WHERE client_id = $1 AND subject = $2`, clientID, subject)
	return err
}

func (st storage) RevokeToken(ctx context.Context, tokenOrID, _, clientID string) *oidc.Error {
	_, err := st.s.db.Exec(ctx, `UPDATE miniapps_tokens SET revoked = 1 WHERE client_id = $1 AND (id = $2 OR hash = $3)`,
		clientID, tokenOrID, hashToken(tokenOrID))
	if err != nil {
		return oidc.ErrServerError()
	}
	return nil
}

func (st storage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	var sub, id string
	err := st.s.db.QueryRow(ctx, `SELECT subject, id FROM miniapps_tokens WHERE hash = $1 AND client_id = $2 AND kind = 'refresh'`,
		hashToken(token), clientID).Scan(&sub, &id)
	if err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	return sub, id, nil
}

func (st storage) SigningKey(context.Context) (op.SigningKey, error) { return st.s.keys, nil }
func (st storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.ES256}, nil
}
func (st storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{st.s.keys}}, nil
}

func (st storage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	a, err := st.s.App(ctx, id)
	if err != nil {
		return nil, err
	}
	return &client{app: a, issuer: st.s.issuer}, nil
}

func (st storage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	_, err := st.s.checkSecret(ctx, id, secret)
	return err
}

func (st storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (st storage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	account, level := "", ""
	switch r := req.(type) {
	case *authRequest:
		account, level = r.AccountID, r.Level
	case *grant:
		account, level = r.AccountID, r.Level
	}
	return st.s.userinfo(ctx, ui, req.GetClientID(), account, req.GetSubject(), level, scopes)
}

func (s *Service) userinfo(ctx context.Context, ui *oidc.UserInfo, clientID, account, subject, level string, scopes []string) error {
	ui.Subject = subject
	// profile releases nothing the server knows: a citizen's display
	// name is end-to-end encrypted between devices. The scope is kept so
	// that an app asks for it and the citizen's device can share it.
	if slices.Contains(scopes, ScopeLevel) {
		ui.AppendClaims("kanal_level", level)
	}
	return nil
}

func (st storage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, _ string) error {
	var account, scopes, level, client string
	var exp int64
	var revoked int
	err := st.s.db.QueryRow(ctx, `SELECT account_id, scopes, level, client_id, expires_at, revoked FROM miniapps_tokens WHERE id = $1 AND kind = 'access'`,
		tokenID).Scan(&account, &scopes, &level, &client, &exp, &revoked)
	if err != nil || revoked == 1 || st.s.now().Unix() >= exp {
		return oidc.ErrAccessDenied().WithDescription("the access token is not valid")
	}
	if _, err := st.s.activeApp(ctx, client); err != nil {
		return oidc.ErrAccessDenied().WithDescription("the app is not active")
	}
	return st.s.userinfo(ctx, ui, client, account, subject, level, strings.Fields(scopes))
}

func (st storage) SetIntrospectionFromToken(ctx context.Context, ir *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	var exp int64
	var revoked int
	var scopes string
	err := st.s.db.QueryRow(ctx, `SELECT scopes, expires_at, revoked FROM miniapps_tokens WHERE id = $1 AND client_id = $2`, tokenID, clientID).
		Scan(&scopes, &exp, &revoked)
	if err != nil || revoked == 1 || st.s.now().Unix() >= exp {
		return errors.New("token not active")
	}
	ir.Active, ir.Subject, ir.ClientID, ir.Scope = true, subject, clientID, strings.Fields(scopes)
	return nil
}

func (st storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (st storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile is not offered")
}

func (st storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile is not offered")
}

func (st storage) Health(ctx context.Context) error { return st.s.db.Ping(ctx) }

// mountProvider mounts the provider at /oidc/ (the issuer's path) and
// the device login at /oidc/login.
func (s *Service) mountProvider(mux *http.ServeMux, auth Auth) error {
	u, err := url.Parse(s.issuer)
	if err != nil {
		return err
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	if prefix == "" {
		return errors.New("miniapps: the issuer needs a path, such as https://kanal.example/oidc")
	}
	opts := []op.Option{}
	if u.Scheme == "http" {
		opts = append(opts, op.WithAllowInsecure())
	}
	cfg := &op.Config{CryptoKey: s.cryptoK, CodeMethodS256: true, GrantTypeRefreshToken: true,
		SupportedScopes: append([]string{ScopeOfflineAccess}, AllScopes...),
		SupportedClaims: []string{"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "acr", "amr", "at_hash", "azp", "name", "kanal_level"}}
	provider, err := op.NewProvider(cfg, storage{s}, op.StaticIssuer(s.issuer), opts...)
	if err != nil {
		return err
	}
	s.provider = provider
	mux.Handle(prefix+"/", http.StripPrefix(prefix, provider))
	mux.Handle("GET "+prefix+"/login", http.HandlerFunc(s.handleLogin))
	return nil
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<meta charset="utf-8"><title>Sign in with kanal</title>
<h1>Sign in with kanal</h1>
<p>Open this app from kanal on your device: <code>kanal app open {{.}}</code>.</p>`))

// handleLogin is the provider's login step: a kanal device login. The
// authorization request's login_hint must be a launch token that the
// citizen's enrolled device obtained for this app with its session
// (kanal app open), unused and unexpired; it names the citizen. The
// requested scopes must all be consented. Without a launch token the page
// says how to open the app from kanal.
func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := op.ContextWithIssuer(r.Context(), s.issuer)
	req, err := storage{s}.loadRequest(ctx, `id = $1`, r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, "unknown or expired authorization request", http.StatusBadRequest)
		return
	}
	if req.IsDone {
		http.Error(w, "this authorization request is finished", http.StatusBadRequest)
		return
	}
	if req.LoginHint == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = loginPage.Execute(w, req.ClientID)
		return
	}
	if err := s.login(ctx, req); err != nil {
		var oe *oidc.Error
		if !errors.As(err, &oe) {
			s.log.Error("miniapps login", "err", err)
			oe = oidc.ErrServerError()
		}
		op.AuthRequestError(w, r, req, oe, s.provider)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(s.provider)(ctx, req.ID), http.StatusFound)
}

// login completes req with the citizen its launch token names.
func (s *Service) login(ctx context.Context, req *authRequest) error {
	c, err := s.VerifyLaunch(req.LoginHint, req.ClientID)
	if err != nil {
		return oidc.ErrLoginRequired().WithDescription("%s", web.Detail(err))
	}
	a, err := s.activeApp(ctx, req.ClientID)
	if err != nil {
		return oidc.ErrUnauthorizedClient().WithDescription("the app is not active")
	}
	account, err := s.accountOf(ctx, &a.Manifest, c.Subject)
	if err != nil {
		return oidc.ErrLoginRequired().WithDescription("unknown subject")
	}
	granted, err := s.granted(ctx, account, a)
	if err != nil {
		return err
	}
	for _, sc := range req.Scopes {
		if sc != ScopeOfflineAccess && !slices.Contains(granted, sc) {
			return &oidc.Error{ErrorType: "consent_required", Description: fmt.Sprintf("scope %s is not consented", sc)}
		}
	}
	now := s.now()
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := s.useLaunch(ctx, tx, c); err != nil {
			return oidc.ErrLoginRequired().WithDescription("the launch token was already used")
		}
		res, err := tx.ExecContext(ctx, `UPDATE miniapps_auth_requests SET account_id = $1, subject = $2, level = $3, auth_time = $4, done = 1
			WHERE id = $5 AND done = 0`, account, c.Subject, c.ACR, now.Unix(), req.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return oidc.ErrInvalidRequest().WithDescription("the authorization request is finished")
		}
		return audit(ctx, tx, now, req.ClientID, account, "account:"+account, "login", "scopes "+strings.Join(req.Scopes, " "))
	})
}
