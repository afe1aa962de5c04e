// Package oidc makes kanal an OpenID Connect relying party of an eID
// provider the operator configures (a BundID or Länder account broker, an
// nPA gateway, an EUDI wallet bridge): the authorization code flow with
// PKCE (S256), a nonce and a state, client authentication by secret or by
// private_key_jwt, and an ID token whose issuer, audience, expiry,
// signature, nonce and acr are all checked before kanal believes a word of
// it. What it returns — a subject, the level the acr proves and the
// released attributes — goes to identity, which binds it to an account.
package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/kanal-server/kanal/identity/ca"
)

// Claims is what a checked ID token says.
type Claims struct {
	Issuer, Subject string
	ACR             string
	Level           ca.Level // what the acr proves
	Attributes      Attributes
}

// Attributes are the verified attributes the provider released.
type Attributes struct {
	Name       string   `json:"name,omitempty"`
	GivenName  string   `json:"given_name,omitempty"`
	FamilyName string   `json:"family_name,omitempty"`
	Birthdate  string   `json:"birthdate,omitempty"`
	Address    *Address `json:"address,omitempty"`
}

// Address is an OpenID Connect address claim.
type Address struct {
	Formatted     string `json:"formatted,omitempty"`
	StreetAddress string `json:"street_address,omitempty"`
	Locality      string `json:"locality,omitempty"`
	Region        string `json:"region,omitempty"`
	PostalCode    string `json:"postal_code,omitempty"`
	Country       string `json:"country,omitempty"`
}

// Config is the operator's eID provider.
type Config struct {
	Issuer   string // https URL; the ID token's iss must equal it
	ClientID string
	// ClientSecret authenticates kanal at the token endpoint
	// (client_secret_basic). Either it or ClientKey is set.
	ClientSecret string
	// ClientKey signs a client assertion instead (private_key_jwt, RFC
	// 7523): an *ecdsa.PrivateKey (ES256), *rsa.PrivateKey (RS256) or
	// ed25519.PrivateKey (EdDSA), registered with the provider under
	// ClientKeyID.
	ClientKey   crypto.Signer
	ClientKeyID string
	// RedirectURL is kanald's /v1/eid/callback as the citizen's browser
	// reaches it, registered with the provider.
	RedirectURL string
	// ACRSubstantial and ACRHigh are the acr values the provider uses for
	// eIDAS substantial and high. A level is asked for with its values
	// and proven only by one of them (high's also prove substantial).
	ACRSubstantial []string
	ACRHigh        []string
	// Scopes asked for besides openid (default: profile address).
	Scopes []string
	// HTTPClient reaches the provider (nil: http.DefaultClient); a
	// private CA goes into its transport.
	HTTPClient *http.Client
	Now        func() time.Time // nil: time.Now
}

// The kinds of failure, for errors.Is; every error Exchange and
// AuthCodeURL return is an *Error of one of them.
var (
	ErrUnreachable = errors.New("the eID provider could not be reached")
	ErrRejected    = errors.New("the eID provider's ID token was refused")
	ErrLevel       = errors.New("the eID login was not at the level asked for")
)

// Error is a failure of one kind with its detail, in the citizen's terms.
type Error struct {
	Kind   error
	Detail string
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Detail }
func (e *Error) Unwrap() error { return e.Kind }

func fail(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// RP is a relying party of one provider. Its discovery document is
// fetched on first use and kept, so kanald starts while the provider is
// down and a later login still works.
type RP struct {
	cfg    Config
	client *http.Client
	now    func() time.Time

	mu       sync.Mutex
	provider *gooidc.Provider
}

// New checks c and returns a relying party.
func New(c Config) (*RP, error) {
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("oidc: issuer %q is not an https URL", c.Issuer)
	}
	if c.ClientID == "" {
		return nil, errors.New("oidc: a client id is required")
	}
	if (c.ClientSecret == "") == (c.ClientKey == nil) {
		return nil, errors.New("oidc: exactly one of a client secret and a client key is required")
	}
	if c.ClientKey != nil && c.ClientKeyID == "" {
		return nil, errors.New("oidc: a client key needs its key id")
	}
	if c.ClientKey != nil {
		if _, err := signingAlg(c.ClientKey); err != nil {
			return nil, err
		}
	}
	if r, err := url.Parse(c.RedirectURL); err != nil || (r.Scheme != "https" && r.Scheme != "http") || r.Host == "" {
		return nil, fmt.Errorf("oidc: redirect URL %q is not an http(s) URL", c.RedirectURL)
	}
	if len(c.ACRHigh) == 0 {
		return nil, errors.New("oidc: the acr values of level high are required")
	}
	for _, a := range c.ACRSubstantial {
		if slices.Contains(c.ACRHigh, a) {
			return nil, fmt.Errorf("oidc: acr %q is both substantial and high", a)
		}
	}
	if c.Scopes == nil {
		c.Scopes = []string{"profile", "address"}
	}
	rp := &RP{cfg: c, client: c.HTTPClient, now: c.Now}
	if rp.client == nil {
		rp.client = http.DefaultClient
	}
	if rp.now == nil {
		rp.now = time.Now
	}
	return rp, nil
}

func (rp *RP) ctx(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, rp.client)
}

// discover returns the provider, fetching its discovery document once.
func (rp *RP) discover(ctx context.Context) (*gooidc.Provider, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.provider != nil {
		return rp.provider, nil
	}
	p, err := gooidc.NewProvider(rp.ctx(ctx), rp.cfg.Issuer)
	if err != nil {
		return nil, fail(ErrUnreachable, "%v", err)
	}
	rp.provider = p
	return p, nil
}

func (rp *RP) oauth(p *gooidc.Provider) *oauth2.Config {
	ep := p.Endpoint()
	if rp.cfg.ClientKey != nil {
		ep.AuthStyle = oauth2.AuthStyleInParams
	} else {
		ep.AuthStyle = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{ClientID: rp.cfg.ClientID, ClientSecret: rp.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: rp.cfg.RedirectURL, Scopes: append([]string{gooidc.ScopeOpenID}, rp.cfg.Scopes...)}
}

func (rp *RP) acrValues(level ca.Level) []string {
	if level >= ca.LevelHigh {
		return rp.cfg.ACRHigh
	}
	return append(slices.Clone(rp.cfg.ACRSubstantial), rp.cfg.ACRHigh...)
}

// LevelOf is the level an acr value proves, 0 if none.
func (rp *RP) LevelOf(acr string) ca.Level {
	switch {
	case slices.Contains(rp.cfg.ACRHigh, acr):
		return ca.LevelHigh
	case slices.Contains(rp.cfg.ACRSubstantial, acr):
		return ca.LevelSubstantial
	}
	return 0
}

// AuthCodeURL returns the URL the citizen opens to log in at level or
// above. The PKCE verifier and the nonce are the caller's: identity
// derives them from the state, so it stores neither.
func (rp *RP) AuthCodeURL(ctx context.Context, level ca.Level, state, nonce, verifier string) (string, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return "", err
	}
	return rp.oauth(p).AuthCodeURL(state, gooidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("acr_values", strings.Join(rp.acrValues(level), " ")),
		oauth2.SetAuthURLParam("prompt", "login")), nil
}

// Exchange redeems code with the PKCE verifier and checks the ID token:
// signature by a key the provider publishes, iss, aud, exp, the nonce of
// this login, and an acr proving at least level.
func (rp *RP) Exchange(ctx context.Context, level ca.Level, code, verifier, nonce string) (Claims, error) {
	p, err := rp.discover(ctx)
	if err != nil {
		return Claims{}, err
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if rp.cfg.ClientKey != nil {
		assertion, err := rp.clientAssertion(p.Endpoint().TokenURL)
		if err != nil {
			return Claims{}, err
		}
		opts = append(opts, oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
			oauth2.SetAuthURLParam("client_assertion", assertion))
	}
	tok, err := rp.oauth(p).Exchange(rp.ctx(ctx), code, opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return Claims{}, fail(ErrRejected, "the token endpoint refused the code: %s", re.ErrorCode)
		}
		return Claims{}, fail(ErrUnreachable, "%v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Claims{}, fail(ErrRejected, "no ID token")
	}
	idt, err := p.VerifierContext(rp.ctx(ctx), &gooidc.Config{ClientID: rp.cfg.ClientID, Now: rp.now}).Verify(rp.ctx(ctx), raw)
	if err != nil {
		var exp *gooidc.TokenExpiredError
		if errors.As(err, &exp) {
			return Claims{}, fail(ErrRejected, "the ID token expired at %s", exp.Expiry.UTC().Format(time.RFC3339))
		}
		return Claims{}, fail(ErrRejected, "%s", strings.TrimPrefix(err.Error(), "oidc: "))
	}
	// go-oidc checks iss, aud and exp; an azp, if present, must be us too
	// (OIDC Core 3.1.3.7), and the nonce must be this login's.
	var c struct {
		ACR        string          `json:"acr"`
		AZP        string          `json:"azp"`
		Name       string          `json:"name"`
		GivenName  string          `json:"given_name"`
		FamilyName string          `json:"family_name"`
		Birthdate  string          `json:"birthdate"`
		Address    json.RawMessage `json:"address"`
		AuthTime   int64           `json:"auth_time"`
	}
	if err := idt.Claims(&c); err != nil {
		return Claims{}, fail(ErrRejected, "claims: %v", err)
	}
	if c.AZP != "" && c.AZP != rp.cfg.ClientID {
		return Claims{}, fail(ErrRejected, "the ID token was issued to %q", c.AZP)
	}
	if len(idt.Audience) > 1 && c.AZP == "" {
		return Claims{}, fail(ErrRejected, "an ID token for several audiences must name kanal as azp")
	}
	if !equalString(idt.Nonce, nonce) {
		return Claims{}, fail(ErrRejected, "the ID token's nonce is not this login's")
	}
	if idt.Subject == "" {
		return Claims{}, fail(ErrRejected, "the ID token names no subject")
	}
	got := rp.LevelOf(c.ACR)
	if got < level {
		return Claims{}, fail(ErrLevel, "acr %q is not level %s", c.ACR, level)
	}
	out := Claims{Issuer: idt.Issuer, Subject: idt.Subject, ACR: c.ACR, Level: got,
		Attributes: Attributes{Name: c.Name, GivenName: c.GivenName, FamilyName: c.FamilyName, Birthdate: c.Birthdate}}
	if out.Attributes.Name == "" {
		out.Attributes.Name = strings.TrimSpace(c.GivenName + " " + c.FamilyName)
	}
	if len(c.Address) > 0 && string(c.Address) != "null" {
		var a Address
		if err := json.Unmarshal(c.Address, &a); err != nil {
			return Claims{}, fail(ErrRejected, "address claim: %v", err)
		}
		out.Attributes.Address = &a
	}
	return out, nil
}

func equalString(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return ha == hb && len(a) > 0
}

func signingAlg(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve.Params().BitSize != 256 {
			return "", errors.New("oidc: an ECDSA client key must be P-256")
		}
		return jose.ES256, nil
	case *rsa.PrivateKey:
		return jose.RS256, nil
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	}
	return "", errors.New("oidc: the client key must be ECDSA P-256, RSA or Ed25519")
}

// clientAssertion is a private_key_jwt assertion (RFC 7523 section 3)
// for the token endpoint: one use, a minute of life.
func (rp *RP) clientAssertion(tokenURL string) (string, error) {
	alg, _ := signingAlg(rp.cfg.ClientKey)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: &jose.JSONWebKey{Key: rp.cfg.ClientKey, KeyID: rp.cfg.ClientKeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("oidc: client assertion: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	now := rp.now()
	claims, err := json.Marshal(map[string]any{
		"iss": rp.cfg.ClientID, "sub": rp.cfg.ClientID, "aud": []string{tokenURL, rp.cfg.Issuer},
		"jti": base64.RawURLEncoding.EncodeToString(jti), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	})
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		return "", fmt.Errorf("oidc: client assertion: %w", err)
	}
	return jws.CompactSerialize()
}
