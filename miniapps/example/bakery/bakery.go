// Package bakery is an example mini-app to copy: the bakery's order page.
// It signs the citizen in through kanal's OpenID Provider with
// coreos/go-oidc and golang.org/x/oauth2 (code flow, PKCE, nonce), shows
// the citizen's pairwise subject, and on an order asks kanal's bridge for
// a payment and posts a confirmation into the conversation the app was
// opened from. It uses nothing of kanal's Go code: a merchant writes the
// same in any language. cmd/bakery runs it.
package bakery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config is the app's setting.
type Config struct {
	Issuer       string // kanal's issuer: https://kanal.example/oidc
	Kanal        string // kanald's base URL, for the bridge: https://kanal.example
	ClientID     string // the manifest's app_id
	ClientSecret string // printed by 'kanal org app register'
	BaseURL      string // this app's origin, as in the manifest: https://baeckerei.example
	Creditor     string // the bakery's account holder
	IBAN         string
	HTTPClient   *http.Client // nil: a 30 s timeout
}

// App is the running app. Sessions live in memory: an example.
type App struct {
	cfg      Config
	hc       *http.Client
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	keys     *oidc.RemoteKeySet

	mu       sync.Mutex
	pending  map[string]*pending // by state
	sessions map[string]*session // by cookie
}

type pending struct {
	verifier, nonce, conversation string
}

type session struct {
	Subject      string
	ACR          string
	Conversation string
	Token        *oauth2.Token
	Orders       []string
}

// New discovers the provider and returns the app.
func New(ctx context.Context, cfg Config) (*App, error) {
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	ctx = oidc.ClientContext(ctx, hc)
	p, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("bakery: discovery: %w", err)
	}
	var disc struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&disc); err != nil {
		return nil, err
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	return &App{cfg: cfg, hc: hc,
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: ep,
			RedirectURL: cfg.BaseURL + "/callback", Scopes: []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess, "payments.request", "chat.post"}},
		verifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		keys:     oidc.NewRemoteKeySet(ctx, disc.JWKS),
		pending:  map[string]*pending{}, sessions: map[string]*session{}}, nil
}

// Handler serves the app.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /launch", a.launch)
	mux.HandleFunc("GET /callback", a.callback)
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("POST /order", a.order)
	mux.HandleFunc("POST /refresh", a.refresh)
	return mux
}

func random() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// launchClaims are the launch token's claims the app uses.
type launchClaims struct {
	Issuer       string `json:"iss"`
	Audience     string `json:"aud"`
	Subject      string `json:"sub"`
	Expiry       int64  `json:"exp"`
	Conversation string `json:"kanal_conversation"`
}

// launch checks the launch token with kanal's published keys and starts
// the sign-in with it as login_hint.
func (a *App) launch(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("launch_token")
	header, _, _ := strings.Cut(tok, ".")
	var h struct {
		Typ string `json:"typ"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(header); err != nil || json.Unmarshal(b, &h) != nil || h.Typ != "kanal-launch+jwt" {
		http.Error(w, "not a kanal launch token", http.StatusBadRequest)
		return
	}
	payload, err := a.keys.VerifySignature(oidc.ClientContext(r.Context(), a.hc), tok)
	if err != nil {
		http.Error(w, "launch token signature: "+err.Error(), http.StatusBadRequest)
		return
	}
	var c launchClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Issuer != a.cfg.Issuer || c.Audience != a.cfg.ClientID || time.Now().Unix() >= c.Expiry {
		http.Error(w, "launch token not for this app, or expired", http.StatusBadRequest)
		return
	}
	p := &pending{verifier: oauth2.GenerateVerifier(), nonce: random(), conversation: c.Conversation}
	state := random()
	a.mu.Lock()
	a.pending[state] = p
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "bakery_state", Value: state, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, a.oauth.AuthCodeURL(state, oidc.Nonce(p.nonce), oauth2.S256ChallengeOption(p.verifier),
		oauth2.SetAuthURLParam("login_hint", tok)), http.StatusFound)
}

// callback finishes the sign-in: state, code exchange with the PKCE
// verifier, the ID token verified by go-oidc, nonce and at_hash.
func (a *App) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ck, err := r.Cookie("bakery_state")
	if err != nil || ck.Value != q.Get("state") {
		http.Error(w, "state does not match", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	p := a.pending[ck.Value]
	delete(a.pending, ck.Value)
	a.mu.Unlock()
	if p == nil {
		http.Error(w, "unknown sign-in", http.StatusBadRequest)
		return
	}
	if e := q.Get("error"); e != "" {
		http.Error(w, "kanal refused the sign-in: "+e+": "+q.Get("error_description"), http.StatusForbidden)
		return
	}
	ctx := oidc.ClientContext(r.Context(), a.hc)
	tok, err := a.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		http.Error(w, "code exchange: "+err.Error(), http.StatusBadGateway)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	id, err := a.verifier.Verify(ctx, raw)
	if err != nil || id.Nonce != p.nonce || id.VerifyAccessToken(tok.AccessToken) != nil {
		http.Error(w, "the ID token does not verify", http.StatusBadGateway)
		return
	}
	var claims struct {
		ACR string `json:"acr"`
	}
	_ = id.Claims(&claims)
	sid := random()
	a.mu.Lock()
	a.sessions[sid] = &session{Subject: id.Subject, ACR: claims.ACR, Conversation: p.conversation, Token: tok}
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "bakery_session", Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusFound)
}

func (a *App) session(r *http.Request) *session {
	ck, err := r.Cookie("bakery_session")
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[ck.Value]
}

var page = template.Must(template.New("home").Parse(`<!doctype html>
<meta charset="utf-8"><title>Bäckerei</title>
<h1>Bäckerei: Bestellung</h1>
<p>Signed in with kanal. Your subject in this app: <code id="sub">{{.Subject}}</code> (level {{.ACR}}).</p>
<form method="post" action="/order"><input name="item" value="2 Brezeln"> <input name="cents" value="450"> <button>Bestellen</button></form>
<ul>{{range .Orders}}<li>{{.}}</li>{{end}}</ul>`))

func (a *App) home(w http.ResponseWriter, r *http.Request) {
	s := a.session(r)
	if s == nil {
		http.Error(w, "open this app from kanal: kanal app open "+a.cfg.ClientID, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, s)
}

// order asks for the payment and posts the confirmation, through kanal's
// bridge with the app's client credentials.
func (a *App) order(w http.ResponseWriter, r *http.Request) {
	s := a.session(r)
	if s == nil {
		http.Error(w, "not signed in", http.StatusUnauthorized)
		return
	}
	item := strings.TrimSpace(r.FormValue("item"))
	cents, err := strconv.ParseInt(r.FormValue("cents"), 10, 64)
	if item == "" || err != nil || cents <= 0 {
		http.Error(w, "item and cents are required", http.StatusBadRequest)
		return
	}
	key := random()
	var pay struct {
		ID string `json:"payment_request"`
	}
	if err := a.bridge(r.Context(), "/v1/bridge/payment-requests", map[string]any{"subject": s.Subject, "amount_cents": cents,
		"purpose": item, "creditor": a.cfg.Creditor, "iban": a.cfg.IBAN, "due_date": time.Now().AddDate(0, 0, 7).Format(time.DateOnly),
		"idempotency_key": key}, &pay); err != nil {
		http.Error(w, "payment request: "+err.Error(), http.StatusBadGateway)
		return
	}
	text := fmt.Sprintf("Bestellung bestätigt: %s, %d,%02d €. Zahlung: %s", item, cents/100, cents%100, pay.ID)
	if err := a.bridge(r.Context(), "/v1/bridge/messages", map[string]string{"conversation": s.Conversation, "text": text}, nil); err != nil {
		http.Error(w, "chat post: "+err.Error(), http.StatusBadGateway)
		return
	}
	a.mu.Lock()
	s.Orders = append(s.Orders, text)
	a.mu.Unlock()
	fmt.Fprintln(w, text)
}

// refresh renews the session's tokens: it fails once the citizen has
// revoked the consent.
func (a *App) refresh(w http.ResponseWriter, r *http.Request) {
	s := a.session(r)
	if s == nil {
		http.Error(w, "not signed in", http.StatusUnauthorized)
		return
	}
	old := *s.Token
	old.Expiry = time.Now().Add(-time.Minute) // force a refresh
	tok, err := a.oauth.TokenSource(oidc.ClientContext(r.Context(), a.hc), &old).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			http.Error(w, "refresh refused: "+re.ErrorCode, http.StatusUnauthorized)
			return
		}
		http.Error(w, "refresh: "+err.Error(), http.StatusBadGateway)
		return
	}
	a.mu.Lock()
	s.Token = tok
	a.mu.Unlock()
	fmt.Fprintln(w, "refreshed")
}

func (a *App) bridge(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(a.cfg.Kanal, "/")+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(a.cfg.ClientID, a.cfg.ClientSecret)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
