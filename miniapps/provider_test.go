package miniapps

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const appOrigin = "https://baeckerei.example"

// rp is a relying party as a merchant writes one: go-oidc and x/oauth2,
// nothing of kanal's.
type rp struct {
	t        *testing.T
	w        *world
	provider *gooidc.Provider
	conf     oauth2.Config
	verifier *gooidc.IDTokenVerifier
	browser  *http.Client // follows kanal's redirects, stops at the app
}

func newRP(t *testing.T, w *world, appID, secret string, scopes ...string) *rp {
	t.Helper()
	ctx := context.Background()
	p, err := gooidc.NewProvider(ctx, w.s.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	jar, _ := cookiejar.New(nil)
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader // as registered: client_secret_basic
	return &rp{t: t, w: w, provider: p,
		conf: oauth2.Config{ClientID: appID, ClientSecret: secret, Endpoint: ep, RedirectURL: appOrigin + "/callback",
			Scopes: scopes},
		verifier: p.Verifier(&gooidc.Config{ClientID: appID, Now: func() time.Time { return w.now }}),
		browser: &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), appOrigin) {
				return http.ErrUseLastResponse
			}
			return nil
		}}}
}

func randString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authorize runs the browser through /authorize with the launch token as
// login_hint, and returns the query kanal redirected to the app with.
func (r *rp) authorize(state, nonce, challengeVerifier, loginHint string, extra ...oauth2.AuthCodeOption) url.Values {
	r.t.Helper()
	opts := append([]oauth2.AuthCodeOption{gooidc.Nonce(nonce), oauth2.SetAuthURLParam("login_hint", loginHint)}, extra...)
	if challengeVerifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(challengeVerifier))
	}
	resp, err := r.browser.Get(r.conf.AuthCodeURL(state, opts...))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || !strings.HasPrefix(loc.String(), appOrigin) {
		b, _ := io.ReadAll(resp.Body)
		r.t.Fatalf("authorize ended at %d %v, not at the app: %s", resp.StatusCode, err, b)
	}
	return loc.Query()
}

// login is the whole flow: returns the token and the verified ID token.
func (r *rp) login(launch string) (*oauth2.Token, *gooidc.IDToken) {
	r.t.Helper()
	state, nonce, verifier := randString(), randString(), oauth2.GenerateVerifier()
	q := r.authorize(state, nonce, verifier, launch)
	if q.Get("state") != state || q.Get("code") == "" {
		r.t.Fatalf("callback: %v", q)
	}
	tok, err := r.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		r.t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	id, err := r.verifier.Verify(context.Background(), raw)
	if err != nil {
		r.t.Fatalf("ID token: %v", err)
	}
	if id.Nonce != nonce {
		r.t.Fatalf("nonce %q, sent %q", id.Nonce, nonce)
	}
	if err := id.VerifyAccessToken(tok.AccessToken); err != nil {
		r.t.Fatalf("at_hash: %v", err)
	}
	return tok, id
}

// consentAndOpen has the citizen consent to scopes and open the app.
func (w *world) consentAndOpen(acc, appID string, scopes ...string) *Opened {
	w.t.Helper()
	ctx := context.Background()
	if _, err := w.s.Consent(ctx, citizenActor(acc), appID, scopes); err != nil {
		w.t.Fatal(err)
	}
	o, err := w.s.Open(ctx, citizenActor(acc), appID, "")
	if err != nil {
		w.t.Fatal(err)
	}
	return o
}

func (w *world) secret(appID string, scopes ...string) string {
	w.t.Helper()
	reg, err := w.s.RegisterManifest(context.Background(), ownerActor, w.sign(w.manifest(appID, 1, scopes...)))
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.s.Approve(context.Background(), operator, appID); err != nil {
		w.t.Fatal(err)
	}
	return reg.ClientSecret
}

// TestProviderConformance signs a citizen in with go-oidc: discovery,
// JWKS, the code flow with PKCE, the ID token's iss, aud, exp, nonce,
// at_hash and acr, pairwise subjects per app, refresh, and consent
// revocation ending refresh.
func TestProviderConformance(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		secret := w.secret("bakery", ScopeOpenID, ScopeLevel, ScopeChatPost)
		secret2 := w.secret("pool", ScopeOpenID)
		r := newRP(t, w, "bakery", secret, gooidc.ScopeOpenID, gooidc.ScopeOfflineAccess, ScopeLevel)
		var disc struct {
			Issuer     string   `json:"issuer"`
			Algs       []string `json:"id_token_signing_alg_values_supported"`
			Challenges []string `json:"code_challenge_methods_supported"`
			EndSession string   `json:"end_session_endpoint"`
		}
		if err := r.provider.Claims(&disc); err != nil {
			t.Fatal(err)
		}
		if disc.Issuer != w.s.issuer || len(disc.Algs) != 1 || disc.Algs[0] != "ES256" || disc.EndSession == "" ||
			len(disc.Challenges) != 1 || disc.Challenges[0] != "S256" {
			t.Fatalf("discovery: %+v", disc)
		}

		opened := w.consentAndOpen(citizen, "bakery", ScopeOpenID, ScopeLevel, ScopeChatPost)
		tok, id := r.login(opened.LaunchToken)
		var claims struct {
			ACR   string `json:"acr"`
			Level string `json:"kanal_level"`
		}
		if err := id.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		if id.Subject != opened.Subject || id.Issuer != w.s.issuer || len(id.Audience) != 1 || id.Audience[0] != "bakery" ||
			claims.ACR != "substantial" || claims.Level != "substantial" {
			t.Fatalf("ID token: sub %s (launch %s) iss %s aud %v claims %+v", id.Subject, opened.Subject, id.Issuer, id.Audience, claims)
		}
		if strings.Contains(id.Subject, citizen) {
			t.Fatal("the subject shows the account id")
		}

		// The same citizen in another app: another subject.
		r2 := newRP(t, w, "pool", secret2, gooidc.ScopeOpenID)
		_, id2 := r2.login(w.consentAndOpen(citizen, "pool", ScopeOpenID).LaunchToken)
		if id2.Subject == id.Subject {
			t.Fatal("two apps see the same subject")
		}
		// Another citizen in the same app: another subject.
		_, id3 := r.login(w.consentAndOpen(citizen2, "bakery", ScopeOpenID, ScopeLevel).LaunchToken)
		if id3.Subject == id.Subject {
			t.Fatal("two citizens share a subject")
		}

		// Refresh works, and rotates.
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token for offline_access")
		}
		src := r.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken})
		tok2, err := src.Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if _, err := r.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); !isOAuth(err, "invalid_grant") {
			t.Fatalf("a rotated refresh token worked again: %v", err)
		}
		// Revoking consent ends the app's tokens.
		if _, err := w.s.Revoke(context.Background(), citizenActor(citizen), "bakery"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token(); !isOAuth(err, "invalid_grant") {
			t.Fatalf("refresh after revocation: %v", err)
		}
	})
}

// isOAuth reports whether err is an OAuth error answer with code.
func isOAuth(err error, code string) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == code
}

// TestLogout is RP-initiated logout: the provider ends the app's tokens
// for the subject and returns only to a registered URI.
func TestLogout(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		secret := w.secret("bakery", ScopeOpenID)
		r := newRP(t, w, "bakery", secret, gooidc.ScopeOpenID, gooidc.ScopeOfflineAccess)
		tok, _ := r.login(w.consentAndOpen(citizen, "bakery", ScopeOpenID).LaunchToken)
		raw, _ := tok.Extra("id_token").(string)
		var disc struct {
			EndSession string `json:"end_session_endpoint"`
		}
		if err := r.provider.Claims(&disc); err != nil {
			t.Fatal(err)
		}
		end := func(redirect string) *http.Response {
			q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {redirect}, "state": {"bye"}}
			resp, err := r.browser.Get(disc.EndSession + "?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		if resp := end("https://evil.example/bye"); strings.HasPrefix(resp.Header.Get("Location"), "https://evil.example") {
			t.Fatal("logout returned to a URI not in the manifest")
		}
		// The refused logout ended nothing.
		tok2, err := r.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil {
			t.Fatalf("refresh after a refused logout: %v", err)
		}
		if resp := end(appOrigin + "/callback"); !strings.HasPrefix(resp.Header.Get("Location"), appOrigin+"/callback") {
			t.Fatalf("logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if _, err := r.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token(); !isOAuth(err, "invalid_grant") {
			t.Fatalf("refresh after logout: %v", err)
		}
	})
}

// TestLaunchTokenVerifiesWithJWKS: an app checks a launch token with the
// published keys alone, no secret shared with kanal; a token with one
// byte changed does not verify.
func TestLaunchTokenVerifiesWithJWKS(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		w.secret("bakery", ScopeOpenID)
		o := w.consentAndOpen(citizen, "bakery", ScopeOpenID)
		keys := gooidc.NewRemoteKeySet(context.Background(), w.s.issuer+"/keys")
		payload, err := keys.VerifySignature(context.Background(), o.LaunchToken)
		if err != nil {
			t.Fatalf("launch token against the JWKS: %v", err)
		}
		var c LaunchClaims
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		if c.Subject != o.Subject || c.Audience != "bakery" || c.Issuer != w.s.issuer || c.Nonce == "" || c.ID == "" ||
			!strings.HasPrefix(c.Conversation, "cv_") || c.Expiry-c.IssuedAt != int64(LaunchTTL/time.Second) {
			t.Fatalf("claims: %+v", c)
		}
		u, _ := url.Parse(o.URL)
		if u.Query().Get("launch_token") != o.LaunchToken || !strings.HasPrefix(o.URL, appOrigin+"/launch?") {
			t.Fatalf("launch URL %s", o.URL)
		}
		b := []byte(o.LaunchToken)
		b[len(b)/2] ^= 0x01
		if _, err := keys.VerifySignature(context.Background(), string(b)); err == nil {
			t.Fatal("a changed launch token verified")
		}
	})
}
