package payments

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"embed"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the payments schema.
func Migrations() db.Migrations { return db.Embedded("payments", migrationFiles) }

// Statuses of a payment request.
const (
	StatusOpen      = "open"
	StatusPaid      = "paid"
	StatusCancelled = "cancelled"
	StatusExpired   = "expired"
	StatusRefunded  = "refunded" // partly or fully; see RefundedCents
)

// Errors of the domain. Each maps to one problem type at the HTTP edge.
var (
	ErrInvalid       = errors.New("invalid input")
	ErrNotFound      = errors.New("not found")
	ErrForbidden     = errors.New("forbidden")
	ErrLevel         = errors.New("level of assurance too low")
	ErrLevelHigh     = errors.New("the offer requires level high")
	ErrIdempotency   = errors.New("idempotency key reused with different parameters")
	ErrState         = errors.New("not allowed in this state")
	ErrContract      = errors.New("contract does not verify")
	ErrDuplicate     = errors.New("already registered")
	ErrWebhook       = errors.New("webhook refused")
	ErrNotConfigured = errors.New("not configured")
	ErrProvider      = errors.New("payment provider failed")
	ErrUnbalanced    = errors.New("ledger transaction does not balance")
	ErrStatement     = errors.New("bank statement refused")
)

// Actor is who acts: a session's account and device with its level, or
// the operator.
type Actor struct {
	AccountID string
	DeviceID  string
	Level     ca.Level
	Operator  bool
}

// String names the actor in the audit log and the transitions: the
// operator, an account's device, or a non-person ("provider:psp",
// "system" for the expiry sweep).
func (a Actor) String() string {
	switch {
	case a.Operator:
		return "operator"
	case a.DeviceID == "":
		return a.AccountID
	}
	return "account:" + a.AccountID + "/device:" + a.DeviceID
}

// Orgs answers which role an account holds in an organisation ("" for
// none). identity.Service implements it.
type Orgs interface {
	OrgRole(ctx context.Context, orgID, accountID string) (string, error)
}

// Certificates answers, from identity's records, whether certificates
// may sign now. identity.Service implements it.
type Certificates interface {
	// CheckDeviceCertificate returns nil if serial names an unexpired,
	// unrevoked device certificate of an unrevoked device.
	CheckDeviceCertificate(ctx context.Context, serial *big.Int) error
	// CheckMembership returns nil if the membership certificate with
	// serial, of deviceID of accountID in orgID, is unexpired and
	// unrevoked, and the account is a member with role now.
	CheckMembership(ctx context.Context, orgID, accountID, deviceID, role string, serial *big.Int) error
}

// Announcement is a request's new state, to be posted into the chat of the
// payer and the organisation as a payment.status message.
type Announcement struct {
	RequestID    string
	OrgID        string
	PayerAccount string
	Status       string
	AmountCents  int64 // paid: the amount paid; refunded: the total refunded
}

// Announcer posts announcements. kanald wires it to messaging; payments
// does not know the chat.
type Announcer interface {
	Announce(ctx context.Context, a Announcement) error
}

// Options configures a Service. DB, CA, Certs and Orgs are required.
type Options struct {
	DB     *db.DB
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now

	// CA is the deployment's root certificate offers and contracts must
	// chain to, and Intermediates its issuing intermediates under an
	// offline root (current first, then retired; ca.TrustPool checks
	// them); Certs says whether their signers' certificates are current.
	CA            *x509.Certificate
	Intermediates []*x509.Certificate
	Certs         Certificates

	Orgs      Orgs
	Announcer Announcer // nil: transitions are not announced

	// PSP is the card/wallet provider; nil leaves checkout and its webhook
	// unconfigured. Bank transfer is always available.
	PSP *PSP
}

// Service is the payments domain.
type Service struct {
	db        *db.DB
	log       *slog.Logger
	now       func() time.Time
	ca        *x509.Certificate
	inters    []*x509.Certificate
	roots     *x509.CertPool // ca and inters
	certs     Certificates
	orgs      Orgs
	announcer Announcer
	psp       *PSP
	bank      bankTransfer
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.CA == nil || o.Certs == nil || o.Orgs == nil {
		return nil, errors.New("payments.New: DB, CA, Certs and Orgs are required")
	}
	roots, err := ca.TrustPool(o.CA, o.Intermediates)
	if err != nil {
		return nil, fmt.Errorf("payments.New: %w", err)
	}
	s := &Service{db: o.DB, log: o.Logger, now: o.Now, ca: o.CA, inters: o.Intermediates, roots: roots, certs: o.Certs, orgs: o.Orgs,
		announcer: o.Announcer, psp: o.PSP}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix and 80 random bits, e.g. pr_k3x…
func newID(prefix string) (string, error) {
	var b [10]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "", fmt.Errorf("payments: random: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b[:]), nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
