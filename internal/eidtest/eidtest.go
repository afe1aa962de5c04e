// Package eidtest is a local eID provider for tests: an OpenID Provider
// built with zitadel/oidc's op package, served over HTTPS with a private
// CA, that issues ID tokens with an acr, a subject and the attributes an
// eID card releases (name, date of birth, address). Tests choose who logs
// in and at which acr, and may make the provider misbehave (tamper with
// the ID token, sign it with a key nobody published) to show that kanal
// refuses what it must.
//
// It is test infrastructure: it keeps everything in memory, logs the
// chosen person in without a page, and must never face a real user.
package eidtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The acr values the provider issues, as a German eID broker names the
// eIDAS levels.
const (
	ACRSubstantial = "http://eidas.europa.eu/LoA/substantial"
	ACRHigh        = "http://eidas.europa.eu/LoA/high"
)

// Person is a citizen the provider knows.
type Person struct {
	Subject    string
	GivenName  string
	FamilyName string
	Birthdate  string // YYYY-MM-DD
	Street     string
	PostalCode string
	Locality   string
	Country    string
}

// Provider is a running test eID provider.
type Provider struct {
	// Issuer is the provider's issuer URL (https://127.0.0.1:port).
	Issuer string
	// CAFile is a PEM file of the private CA its certificate chains to.
	CAFile string
	// Roots holds the same CA.
	Roots *x509.CertPool

	srv     *httptest.Server
	key     *rsa.PrivateKey
	keyID   string
	store   *storage
	tamper  func(claims map[string]any)
	unknown bool
	mu      sync.Mutex
}

// Client is a relying party registered with the provider.
type Client struct {
	ID           string
	Secret       string           // client_secret_basic; empty with PublicKey
	PublicKey    *ecdsa.PublicKey // private_key_jwt, with KeyID
	KeyID        string
	RedirectURIs []string
}

// Start runs a provider on a loopback port with a fresh private CA in
// dir (the CA's PEM is written there). Close stops it.
func Start(dir string) (*Provider, error) {
	caCert, caKey, err := newCA()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("eidtest: listen: %w", err)
	}
	leaf, err := newLeaf(caCert, caKey)
	if err != nil {
		ln.Close()
		return nil, err
	}
	p := &Provider{Issuer: "https://" + ln.Addr().String(), Roots: x509.NewCertPool(), CAFile: filepath.Join(dir, "eid-ca.pem")}
	p.Roots.AddCert(caCert)
	if err := os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o644); err != nil {
		ln.Close()
		return nil, fmt.Errorf("eidtest: %w", err)
	}
	if p.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		ln.Close()
		return nil, err
	}
	p.keyID = "eidtest-1"
	p.store = &storage{p: p, requests: map[string]*authRequest{}, codes: map[string]string{},
		clients: map[string]*Client{}, people: map[string]Person{}, acr: ACRHigh}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		ln.Close()
		return nil, err
	}
	provider, err := op.NewOpenIDProvider(p.Issuer, &op.Config{
		CryptoKey:               cryptoKey,
		CodeMethodS256:          true,
		AuthMethodPost:          true,
		AuthMethodPrivateKeyJWT: true,
		SupportedScopes:         []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeAddress},
	}, p.store)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("eidtest: provider: %w", err)
	}
	mux := http.NewServeMux()
	callback := op.AuthCallbackURL(provider)
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("authRequestID")
		if err := p.store.login(id); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	})
	mux.Handle("/oauth/token", p.rewriteToken(provider))
	mux.Handle("/", provider)
	p.srv = httptest.NewUnstartedServer(mux)
	p.srv.Listener.Close()
	p.srv.Listener = ln
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	p.srv.StartTLS()
	return p, nil
}

// Close stops the provider: afterwards it is unreachable.
func (p *Provider) Close() { p.srv.Close() }

// HTTPClient trusts the provider's CA, and only it.
func (p *Provider) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}}}
}

// AddClient registers a relying party.
func (p *Provider) AddClient(c Client) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.clients[c.ID] = &c
}

// AddPerson makes a citizen known.
func (p *Provider) AddPerson(x Person) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.people[x.Subject] = x
}

// LoginAs makes the next logins those of subject, authenticated at acr.
func (p *Provider) LoginAs(subject, acr string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.next, p.store.acr = subject, acr
}

// Tamper makes the token endpoint change the ID token's claims with f
// and sign it again with the provider's key (nil: stop tampering).
func (p *Provider) Tamper(f func(claims map[string]any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = f
}

// SignWithUnknownKey makes the token endpoint sign ID tokens with a key
// that is not in the provider's published key set, under the same key id.
func (p *Provider) SignWithUnknownKey(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unknown = on
}

// rewriteToken applies Tamper and SignWithUnknownKey to the token
// endpoint's answers.
func (p *Provider) rewriteToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		tamper, unknown := p.tamper, p.unknown
		p.mu.Unlock()
		if tamper == nil && !unknown {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var resp map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(body, &resp) == nil {
			if raw, ok := resp["id_token"].(string); ok {
				if re, err := p.resign(raw, tamper, unknown); err == nil {
					resp["id_token"] = re
					body, _ = json.Marshal(resp)
				}
			}
		}
		for k, v := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

func (p *Provider) resign(raw string, tamper func(map[string]any), unknown bool) (string, error) {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return "", err
	}
	var claims map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return "", err
	}
	if tamper != nil {
		tamper(claims)
	}
	key := p.key
	if unknown {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return "", err
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: &jose.JSONWebKey{Key: key, KeyID: p.keyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	out, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return out.CompactSerialize()
}

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "eidtest private CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newLeaf(caCert *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, caCert.Raw}, PrivateKey: key}, nil
}

// authRequest is one authorization in progress.
type authRequest struct {
	id       string
	req      oidc.AuthRequest
	subject  string
	acr      string
	authTime time.Time
	done     bool
}

func (a *authRequest) GetID() string         { return a.id }
func (a *authRequest) GetACR() string        { return a.acr }
func (a *authRequest) GetAMR() []string      { return []string{"hwk"} }
func (a *authRequest) GetAudience() []string { return []string{a.req.ClientID} }
func (a *authRequest) GetAuthTime() time.Time {
	return a.authTime
}
func (a *authRequest) GetClientID() string { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *authRequest) GetNonce() string                   { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.req.Scopes }
func (a *authRequest) GetState() string                   { return a.req.State }
func (a *authRequest) GetSubject() string                 { return a.subject }
func (a *authRequest) Done() bool                         { return a.done }

// client adapts Client to op.Client.
type client struct {
	c *Client
}

func (c client) GetID() string                       { return c.c.ID }
func (c client) RedirectURIs() []string              { return c.c.RedirectURIs }
func (c client) PostLogoutRedirectURIs() []string    { return nil }
func (c client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c client) AuthMethod() oidc.AuthMethod {
	if c.c.PublicKey != nil {
		return oidc.AuthMethodPrivateKeyJWT
	}
	return oidc.AuthMethodBasic
}
func (c client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c client) GrantTypes() []oidc.GrantType { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c client) LoginURL(id string) string    { return "/login?authRequestID=" + id }
func (c client) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c client) IDTokenLifetime() time.Duration { return 5 * time.Minute }

// DevMode lets tests register http://127.0.0.1 redirect URIs.
func (c client) DevMode() bool { return true }
func (c client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c client) IsScopeAllowed(string) bool { return false }

// IDTokenUserinfoClaimsAssertion puts the released attributes into the
// ID token, as eID brokers do.
func (c client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c client) ClockSkew() time.Duration             { return 0 }

// storage is the provider's in-memory op.Storage.
type storage struct {
	p        *Provider
	mu       sync.Mutex
	requests map[string]*authRequest
	codes    map[string]string // code → request id
	clients  map[string]*Client
	people   map[string]Person
	next     string // who logs in next
	acr      string // at which acr
}

var errNotFound = errors.New("eidtest: not found")

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func (s *storage) login(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.requests[id]
	if !ok {
		return errNotFound
	}
	if _, ok := s.people[s.next]; !ok {
		return fmt.Errorf("eidtest: nobody to log in (LoginAs)")
	}
	a.subject, a.acr, a.authTime, a.done = s.next, s.acr, time.Now(), true
	return nil
}

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &authRequest{id: randomID(), req: *req}
	s.requests[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.requests[id]
	if !ok {
		return nil, errNotFound
	}
	return a, nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.requests[s.codes[code]]
	if !ok {
		return nil, errNotFound
	}
	return a, nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for c, r := range s.codes {
		if r == id {
			delete(s.codes, c)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return randomID(), time.Now().Add(5 * time.Minute), nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("eidtest: no refresh tokens")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(context.Context, string, string, string) *oidc.Error { return nil }

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct {
	id  string
	key *rsa.PublicKey
}

func (k publicKey) ID() string                         { return k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.key }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{s.p.keyID, s.p.key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.p.keyID, &s.p.key.PublicKey}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, errNotFound
	}
	return client{c}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return errors.New("eidtest: bad client credentials")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest releases the person's attributes into the ID
// token, by scope.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.userinfo(info, req.GetSubject(), scopes)
}

func (s *storage) userinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.people[subject]
	if !ok {
		return errNotFound
	}
	info.Subject = subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeProfile:
			info.GivenName, info.FamilyName, info.Birthdate = x.GivenName, x.FamilyName, x.Birthdate
			info.Name = strings.TrimSpace(x.GivenName + " " + x.FamilyName)
		case oidc.ScopeAddress:
			if x.Street != "" {
				info.Address = &oidc.UserInfoAddress{StreetAddress: x.Street, PostalCode: x.PostalCode, Locality: x.Locality, Country: x.Country}
			}
		}
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, _, subject, _ string) error {
	return s.userinfo(info, subject, []string{oidc.ScopeProfile, oidc.ScopeAddress})
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID returns a private_key_jwt client's public key.
func (s *storage) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok || c.PublicKey == nil || c.KeyID != keyID {
		return nil, errNotFound
	}
	return &jose.JSONWebKey{Key: c.PublicKey, KeyID: c.KeyID, Algorithm: string(jose.ES256), Use: "sig"}, nil
}

func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s *storage) Health(context.Context) error { return nil }
