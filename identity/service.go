package identity

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/oidc"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the identity schema.
func Migrations() db.Migrations { return db.Embedded("identity", migrationFiles) }

// RevocationHook is called, inside the transaction that revokes a device,
// by the domains that keep per-device state (messaging deletes the
// device's prekeys). An error aborts the revocation.
type RevocationHook func(ctx context.Context, tx *sql.Tx, deviceID string) error

// EIDProvider is the deployment's eID provider as identity uses it:
// identity/oidc implements it as an OpenID Connect relying party.
type EIDProvider interface {
	// AuthCodeURL returns the URL the citizen opens to log in at level
	// or above; state, nonce and the PKCE verifier are identity's.
	AuthCodeURL(ctx context.Context, level ca.Level, state, nonce, verifier string) (string, error)
	// Exchange redeems the code and returns the checked claims of the ID
	// token, whose acr proves at least level.
	Exchange(ctx context.Context, level ca.Level, code, verifier, nonce string) (oidc.Claims, error)
}

// Options configures a Service. DB, CA, Mailer and Secret are required.
type Options struct {
	DB     *db.DB
	CA     *ca.CA
	Mailer Mailer

	// Secret is the deployment secret (32 bytes, shared by every node and
	// never in the database): the keys that seal organisation keys and
	// MAC sign-up codes are derived from it, not from the CA key.
	Secret []byte
	// LegacySecret, if set, is the master the seal key was derived from
	// before the deployment secret (the CA key's PEM): organisation keys
	// sealed under it still open, and ResealLegacy seals them again.
	LegacySecret []byte

	Logger *slog.Logger // nil: discard

	Now  func() time.Time // nil: time.Now
	Rand io.Reader        // nil: crypto/rand.Reader

	// TrustProxy makes login and sign-up throttling use the right-most address of
	// X-Forwarded-For. Only set it behind a proxy that sets that header.
	TrustProxy bool

	// Argon2 overrides DefaultArgon2 (tests use cheaper parameters).
	Argon2 *Argon2Params

	// SignupLimits overrides the sign-up rate limits (a zero field: the
	// default of limits.go).
	SignupLimits SignupLimits

	// EID enables the eID routes (/v1/eid/…) and so level high; nil
	// answers 501 not-configured.
	EID EIDProvider

	// Notary signs the verified name an eID login at level high gives the
	// device (verifiedname.go); nil gives none.
	Notary *ca.Notary

	RevocationHooks []RevocationHook

	// Log is the deployment's transparency log: every device, key change,
	// revocation and membership is appended to it in the transaction that
	// writes it, and the directory attaches inclusion proofs. Nil keeps no
	// log (identity's own unit tests); cmd/kanald always sets it.
	Log *translog.Log
}

// Service is the identity service. Its methods are safe for concurrent use.
type Service struct {
	db       *db.DB
	ca       *ca.CA
	mailer   Mailer
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	proxy    bool
	signups  SignupLimits
	argon    Argon2Params
	eid      EIDProvider
	notary   *ca.Notary
	eidKey   []byte // HMAC key of eID subjects and of the flows' PKCE verifiers and nonces
	codeKey  []byte // HMAC key of sign-up codes
	sealKey  []byte // AES key of organisation authority keys
	legacy   []byte // nil, or the AES key organisation keys were sealed under before the secret
	dummyPHC string // verified against when an account has no password

	rev revocationCache
	// sessions reads the sessions of concurrent requests together
	// (sessionread.go).
	sessions *sessionReads

	tlog *translog.Log

	mu         sync.Mutex
	hooks      []RevocationHook
	renewHooks []RenewalHook
	// keyNotices run after a device's key change has committed.
	keyNotices []func(accountID, deviceID string)
	// ended run after sessions have ended (sessionend.go).
	ended []func(SessionEnd)
}

// New checks o and returns a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.CA == nil || o.Mailer == nil {
		return nil, errors.New("identity: DB, CA and Mailer are required")
	}
	if len(o.Secret) != SecretSize {
		return nil, fmt.Errorf("identity: Secret must be %d bytes", SecretSize)
	}
	s := &Service{
		db: o.DB, ca: o.CA, mailer: o.Mailer, log: o.Logger, now: o.Now, rand: o.Rand,
		proxy: o.TrustProxy, argon: DefaultArgon2, eid: o.EID, notary: o.Notary,
		hooks: append([]RevocationHook(nil), o.RevocationHooks...), tlog: o.Log,
		sessions: newSessionReads(o.DB),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	s.signups = o.SignupLimits
	if s.signups.PerClient <= 0 {
		s.signups.PerClient = MaxSignupsPerClient
	}
	if s.signups.Global <= 0 {
		s.signups.Global = MaxSignupsGlobal
	}
	if o.Argon2 != nil {
		s.argon = *o.Argon2
	}
	var err error
	if s.codeKey, err = deriveKey(o.Secret, "secret: signup code v2"); err != nil {
		return nil, err
	}
	if s.eidKey, err = deriveKey(o.Secret, "secret: eid subject v1"); err != nil {
		return nil, err
	}
	if s.sealKey, err = deriveKey(o.Secret, "secret: organisation key seal v2"); err != nil {
		return nil, err
	}
	if o.LegacySecret != nil {
		if s.legacy, err = deriveKey(o.LegacySecret, "organisation key seal v1"); err != nil {
			return nil, err
		}
	}
	if s.dummyPHC, err = hashPassword(s.rand, s.argon, "kanal dummy password"); err != nil {
		return nil, err
	}
	return s, nil
}

// AddRevocationHook registers h for every later device revocation. Call it
// while wiring, before serving.
func (s *Service) AddRevocationHook(h RevocationHook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, h)
}

// RenewalHook is called, inside the transaction that gives a device a new
// certificate, with the device and the new certificate's DER: messaging
// logs the device's published identity key again under the new
// certificate. An error aborts the renewal.
type RenewalHook func(ctx context.Context, tx *sql.Tx, accountID, deviceID string, certDER []byte) error

// AddRenewalHook registers h for every later renewal. Call it while
// wiring, before serving.
func (s *Service) AddRenewalHook(h RenewalHook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewHooks = append(s.renewHooks, h)
}

func (s *Service) renewalHooks() []RenewalHook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.renewHooks)
}

// TransparencyLog is the log the service appends to, nil if none.
func (s *Service) TransparencyLog() *translog.Log { return s.tlog }

// AddKeyChangeNotice registers f to be called after a renewal that gave
// device deviceID of account accountID a new key has committed: kanald
// tells the account's devices, so a key change nobody asked for is seen.
func (s *Service) AddKeyChangeNotice(f func(accountID, deviceID string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keyNotices = append(s.keyNotices, f)
}

func (s *Service) keyChangeNotices() []func(string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keyNotices)
}

func (s *Service) revocationHooks() []RevocationHook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hooks)
}

// Route is one registered route and who may call it, for documentation
// and for the authorization test.
type Route struct {
	Pattern string
	Auth    string
}

// Who may call a route.
const (
	AuthNone            = "none"
	AuthSetupOrSession  = "setup token or session"
	AuthSetupOrSubst    = "setup token (first device) or substantial session"
	AuthSession         = "session"
	AuthSubstantial     = "substantial session"
	AuthOperator        = "operator"
	AuthOperatorOrOwner = "operator or substantial session of an org owner/admin"
)

type route struct {
	pattern string
	auth    string
	h       func(w http.ResponseWriter, r *http.Request) error
}

func (s *Service) routes() []route {
	return []route{
		{"POST /v1/signup", AuthNone, s.handleSignup},
		{"POST /v1/signup/verify", AuthNone, s.handleVerify},
		{"PUT /v1/account/password", AuthSetupOrSession, s.handlePassword},
		{"POST /v1/devices", AuthSetupOrSubst, s.handleEnroll},
		{"GET /v1/devices", AuthSession, s.handleListDevices},
		{"POST /v1/devices/{id}/renew", AuthSession, s.handleRenew},
		{"DELETE /v1/devices/{id}", AuthSession, s.handleRevoke},
		{"POST /v1/sessions/challenge", AuthNone, s.handleChallenge},
		{"POST /v1/sessions", AuthNone, s.handleLogin},
		{"POST /v1/sessions/refresh", AuthNone, s.handleRefresh},
		{"DELETE /v1/sessions/current", AuthSession, s.handleLogout},
		{"GET /v1/me", AuthSession, s.handleMe},
		{"POST /v1/eid/start", AuthSubstantial, s.handleEIDStart},
		{"GET /v1/eid/callback", AuthNone, s.handleEIDCallback},
		{"POST /v1/eid/complete", AuthSession, s.handleEIDComplete},
		{"DELETE /v1/eid/link", AuthSubstantial, s.handleEIDUnlink},
		{"POST /v1/admin/orgs", AuthOperator, s.handleCreateOrg},
		{"POST /v1/admin/orgs/{id}/verify", AuthOperator, s.handleVerifyOrg},
		{"GET /v1/admin/audit", AuthOperator, s.handleAudit},
		{"PATCH /v1/orgs/{id}", AuthOperatorOrOwner, s.handleOrgSettings},
		{"POST /v1/orgs/{id}/members", AuthOperatorOrOwner, s.handleAddMember},
		{"DELETE /v1/orgs/{id}/members/{account_id}", AuthOperatorOrOwner, s.handleRemoveMember},
		{"GET /v1/directory/accounts/{id}/devices", AuthSession, s.handleDirectoryDevices},
		{"GET /v1/directory/orgs/{id}", AuthSession, s.handleDirectoryOrg},
		{"GET /v1/directory/ca", AuthNone, s.handleDirectoryCA},
		{"GET /v1/directory/crl", AuthNone, s.handleDirectoryCRL},
		{"GET /v1/directory/orgs/{id}/crl", AuthNone, s.handleDirectoryOrgCRL},
		{"POST /v1/ocsp", AuthNone, s.handleOCSP},
		{"POST /v1/directory/orgs/{id}/ocsp", AuthNone, s.handleOrgOCSP},
	}
}

// Routes lists the routes Register adds.
func (s *Service) Routes() []Route {
	rs := s.routes()
	out := make([]Route, len(rs))
	for i, r := range rs {
		out[i] = Route{Pattern: r.pattern, Auth: r.auth}
	}
	return out
}

// Register adds the identity routes to mux, each behind its authentication.
func (s *Service) Register(mux *http.ServeMux) {
	for _, rt := range s.routes() {
		var h http.Handler = s.handler(rt.h)
		switch rt.auth {
		case AuthNone:
		case AuthSetupOrSession, AuthSetupOrSubst:
			h = s.authenticate(h, acceptSetup|acceptSession, ca.LevelLow)
		case AuthSession:
			h = s.authenticate(h, acceptSession, ca.LevelLow)
		case AuthSubstantial:
			h = s.authenticate(h, acceptSession, ca.LevelSubstantial)
		case AuthOperator:
			h = s.authenticate(h, acceptOperator, ca.LevelLow)
		case AuthOperatorOrOwner:
			h = s.authenticate(h, acceptOperator|acceptSession, ca.LevelSubstantial)
		default:
			panic("identity: route without authentication: " + rt.pattern)
		}
		mux.Handle(rt.pattern, h)
	}
}

// handler adapts a handler that returns an error: a *web.Problem goes to
// the client, anything else is logged and becomes a bare 500.
func (s *Service) handler(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			var p *web.Problem
			if !errors.As(err, &p) {
				s.log.ErrorContext(r.Context(), "identity", "request_id", web.RequestID(r.Context()), "route", r.Pattern, "err", err)
			}
			if p != nil && p.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="kanal"`)
			}
			web.WriteError(w, r, err)
		}
	})
}

// unixTime converts a stored time.
func unixTime(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

func nullTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := unixTime(n.Int64)
	return &t
}
