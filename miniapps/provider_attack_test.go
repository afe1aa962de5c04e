package miniapps

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// tokens counts the tokens kanal has issued.
func (w *world) tokens() int {
	w.t.Helper()
	var n int
	if err := w.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM miniapps_tokens`).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// TestAttackAuthorize: each bad authorization request or exchange is
// refused with the OAuth or OpenID error code its spec defines, and no
// token is issued.
func TestAttackAuthorize(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		secret := w.secret("bakery", ScopeOpenID, ScopeChatPost)
		w.secret("pool", ScopeOpenID)
		r := newRP(t, w, "bakery", secret, gooidc.ScopeOpenID)
		if _, err := w.s.Consent(ctx, citizenActor(citizen), "bakery", []string{ScopeOpenID}); err != nil {
			t.Fatal(err)
		}
		open := func() string {
			o, err := w.s.Open(ctx, citizenActor(citizen), "bakery", "")
			if err != nil {
				t.Fatal(err)
			}
			return o.LaunchToken
		}
		wantError := func(name string, q map[string][]string, code string) {
			t.Helper()
			if got := q["error"]; len(got) != 1 || got[0] != code || q["code"] != nil {
				t.Errorf("%s: answer %v, want error %s", name, q, code)
			}
		}

		// No PKCE: invalid_request, back at the app.
		wantError("no PKCE", r.authorize("s", "n", "", open()), "invalid_request")
		// PKCE plain instead of S256.
		wantError("PKCE plain", r.authorize("s", "n", "", open(),
			oauth2.SetAuthURLParam("code_challenge", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"), oauth2.SetAuthURLParam("code_challenge_method", "plain")), "invalid_request")
		// A redirect URI not in the manifest: never redirected to, refused at kanal.
		bad := r.conf
		bad.RedirectURL = "https://evil.example/callback"
		resp, err := r.browser.Get(bad.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("login_hint", open())))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusBadRequest || loc != "" {
			t.Errorf("foreign redirect URI: %d to %q", resp.StatusCode, loc)
		}
		// A scope the citizen has not consented to: consent_required.
		wantError("scope not consented", r.authorize("s", "n", oauth2.GenerateVerifier(), open(), oauth2.SetAuthURLParam("scope", "openid chat.post")), "consent_required")
		// A launch token: replayed, expired, for another app, or forged.
		lt := open()
		r.login(lt)
		before := w.tokens()
		wantError("replayed launch token", r.authorize("s", "n", oauth2.GenerateVerifier(), lt), "login_required")
		lt = open()
		w.now = w.now.Add(LaunchTTL + time.Second)
		wantError("expired launch token", r.authorize("s", "n", oauth2.GenerateVerifier(), lt), "login_required")
		w.now = t0
		if _, err := w.s.Consent(ctx, citizenActor(citizen), "pool", []string{ScopeOpenID}); err != nil {
			t.Fatal(err)
		}
		poolToken, _ := w.s.Open(ctx, citizenActor(citizen), "pool", "")
		wantError("another app's launch token", r.authorize("s", "n", oauth2.GenerateVerifier(), poolToken.LaunchToken), "login_required")
		parts := strings.Split(open(), ".")
		wantError("forged launch token", r.authorize("s", "n", oauth2.GenerateVerifier(), parts[0]+"."+parts[1]+"."+strings.Repeat("A", len(parts[2]))), "login_required")

		// The code: a wrong verifier burns it; a replayed or expired one is refused.
		verifier := oauth2.GenerateVerifier()
		q := r.authorize("s", "n", verifier, open())
		if _, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); !isOAuth(err, "invalid_grant") {
			t.Errorf("wrong verifier: %v", err)
		}
		if _, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !isOAuth(err, "invalid_grant") {
			t.Errorf("code after a wrong verifier: %v", err)
		}
		q = r.authorize("s", "n", verifier, open())
		if _, err := r.conf.Exchange(ctx, q.Get("code")); !isOAuth(err, "invalid_request") {
			t.Errorf("missing verifier: %v", err)
		}
		q = r.authorize("s", "n", verifier, open())
		w.now = w.now.Add(CodeTTL + time.Second)
		if _, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !isOAuth(err, "invalid_grant") {
			t.Errorf("expired code: %v", err)
		}
		w.now = t0
		if n := w.tokens(); n != before {
			t.Errorf("%d tokens issued by refused requests", n-before)
		}
		q = r.authorize("s", "n", verifier, open())
		if _, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err != nil {
			t.Fatalf("good code: %v", err)
		}
		if _, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !isOAuth(err, "invalid_grant") {
			t.Errorf("replayed code: %v", err)
		}
		// The wrong client secret.
		wrong := r.conf
		wrong.ClientSecret = "kanal_app_wrong"
		q = r.authorize("s", "n", verifier, open())
		if _, err := wrong.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !isOAuth(err, "invalid_client") {
			t.Errorf("wrong secret: %v", err)
		}
	})
}

// TestAttackSuspendedApp: a suspended app signs nobody in, refreshes no
// token and is not opened.
func TestAttackSuspendedApp(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		secret := w.secret("bakery", ScopeOpenID)
		r := newRP(t, w, "bakery", secret, gooidc.ScopeOpenID, gooidc.ScopeOfflineAccess)
		lt := w.consentAndOpen(citizen, "bakery", ScopeOpenID)
		tok, _ := r.login(lt.LaunchToken)
		pending, _ := w.s.Open(ctx, citizenActor(citizen), "bakery", "")
		if _, err := w.s.Suspend(ctx, operator, "bakery"); err != nil {
			t.Fatal(err)
		}
		q := r.authorize("s", "n", oauth2.GenerateVerifier(), pending.LaunchToken)
		if q.Get("error") != "unauthorized_client" {
			t.Errorf("authorize a suspended app: %v", q)
		}
		// The suspended app's backend no longer authenticates at all.
		if _, err := r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); !isOAuth(err, "invalid_client") {
			t.Errorf("refresh for a suspended app: %v", err)
		}
		if _, err := w.s.Open(ctx, citizenActor(citizen), "bakery", ""); err == nil {
			t.Error("a suspended app opened")
		}
		// Revoked consent: no launch.
		if _, err := w.s.Approve(ctx, operator, "bakery"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.s.Revoke(ctx, citizenActor(citizen), "bakery"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.s.Open(ctx, citizenActor(citizen), "bakery", ""); err == nil {
			t.Error("an app opened after consent was revoked")
		}
	})
}
