package miniapps

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the miniapps schema.
func Migrations() db.Migrations { return db.Embedded("miniapps", migrationFiles) }

// App statuses.
const (
	StatusPending   = "pending"   // registered, never approved: citizens do not see it
	StatusApproved  = "approved"  // citizens see the approved version
	StatusSuspended = "suspended" // nobody signs in, no token works, the bridge is shut
)

// Errors of the domain. Each maps to one problem type at the HTTP edge,
// and to an OAuth error code at the provider.
var (
	ErrInvalid         = errors.New("invalid input")
	ErrInvalidManifest = errors.New("invalid manifest")
	ErrNotFound        = errors.New("not found")
	ErrForbidden       = errors.New("forbidden")
	ErrSuspended       = errors.New("app suspended")
	ErrNotApproved     = errors.New("app not approved")
	ErrConsent         = errors.New("scope not consented")
	ErrConflict        = errors.New("conflict")
	ErrRateLimited     = errors.New("rate limited")
	ErrLaunch          = errors.New("launch token refused")
	ErrClient          = errors.New("client authentication failed")
	ErrNotConfigured   = errors.New("not configured")
)

// Actor is who acts: a session's account and device with its level, or
// the operator.
type Actor struct {
	AccountID string
	DeviceID  string
	Level     ca.Level
	Operator  bool
}

func (a Actor) String() string {
	if a.Operator {
		return "operator"
	}
	return "account:" + a.AccountID + "/device:" + a.DeviceID
}

// Certificates answers, from identity's records, whether a manifest's
// signer may sign now. identity.Service implements it.
type Certificates interface {
	CheckDeviceCertificate(ctx context.Context, serial *big.Int) error
	CheckMembership(ctx context.Context, orgID, accountID, deviceID, role string, serial *big.Int) error
}

// Orgs names organisations on the consent screen. identity.Service
// implements it.
type Orgs interface {
	// OrgName returns a verified organisation's name; an error if it is
	// unknown or not verified.
	OrgName(ctx context.Context, orgID string) (string, error)
}

// Options configures a Service. DB, CA, Certs, Orgs, Secret and Issuer
// are required; the bridge's parts are optional (nil: that call answers
// not configured).
type Options struct {
	DB     *db.DB
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now

	// CA is the deployment's root certificate manifests chain to, and
	// Intermediates its issuing intermediates under an offline root
	// (current first, then retired; ca.TrustPool checks them).
	CA            *x509.Certificate
	Intermediates []*x509.Certificate
	Certs         Certificates
	Orgs          Orgs

	// Secret is the deployment secret (32 bytes): the pairwise-subject key
	// and the provider's signing key are derived from it, so every node
	// derives the same ones and the database never holds them.
	Secret []byte
	// Issuer is the provider's public URL, such as
	// https://kanal.example/oidc; http only on a loopback host.
	Issuer string

	// OrgConversation names the conversation of a citizen and an
	// organisation (messaging.OrgConversation): where an app opened
	// without a conversation posts.
	OrgConversation func(orgID, accountID string) string

	Bridge Bridge
}

// Service is the miniapps domain.
type Service struct {
	db       *db.DB
	log      *slog.Logger
	now      func() time.Time
	roots    *x509.CertPool // the root and the intermediates
	certs    Certificates
	orgs     Orgs
	issuer   string
	bridge   Bridge
	convName func(orgID, accountID string) string
	subKey   []byte // pairwise subjects
	keys     *signingKey
	provider *op.Provider // set by Register
	cryptoK  [32]byte     // zitadel's access token encryption
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.CA == nil || o.Certs == nil || o.Orgs == nil || len(o.Secret) < 32 || o.Issuer == "" || o.OrgConversation == nil {
		return nil, errors.New("miniapps.New: DB, CA, Certs, Orgs, Secret, Issuer and OrgConversation are required")
	}
	if _, err := webURL(o.Issuer); err != nil {
		return nil, fmt.Errorf("miniapps.New: issuer: %w", err)
	}
	roots, err := ca.TrustPool(o.CA, o.Intermediates)
	if err != nil {
		return nil, fmt.Errorf("miniapps.New: %w", err)
	}
	s := &Service{db: o.DB, log: o.Logger, now: o.Now, roots: roots, certs: o.Certs, orgs: o.Orgs,
		issuer: strings.TrimSuffix(o.Issuer, "/"), bridge: o.Bridge, convName: o.OrgConversation}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.subKey, err = hkdf.Key(sha256.New, o.Secret, nil, labelSubject, 32); err != nil {
		return nil, err
	}
	ck, err := hkdf.Key(sha256.New, o.Secret, nil, labelTokenCrypto, 32)
	if err != nil {
		return nil, err
	}
	copy(s.cryptoK[:], ck)
	if s.keys, err = deriveSigningKey(o.Secret); err != nil {
		return nil, err
	}
	return s, nil
}

// The keys miniapps derives from the deployment secret, one HKDF-SHA256
// label each (no salt, 32 bytes).
const (
	labelSubject     = "kanal secret: miniapps pairwise subject v1"
	labelSigning     = "kanal secret: miniapps signing key v1"
	labelTokenCrypto = "kanal secret: miniapps access token seal v1"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix and n random bytes in lower-case base32.
func newID(prefix string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", fmt.Errorf("miniapps: random: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b), nil
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
