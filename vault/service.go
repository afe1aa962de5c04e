package vault

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the vault schema.
func Migrations() db.Migrations { return db.Embedded("vault", migrationFiles) }

// Errors of the domain. Each maps to one problem type at the HTTP edge.
var (
	ErrInvalid   = errors.New("invalid input")
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	ErrTooLarge  = errors.New("document over the size limit")
	ErrQuota     = errors.New("over the quota")
	ErrDevice    = errors.New("not a device of the account")
	ErrNotParty  = errors.New("not a party of the conversation")
)

// Actor is who acts: a session's account and device.
type Actor struct {
	AccountID string
	DeviceID  string
}

// Directory answers, from identity's records, which devices are active
// and who speaks for an organisation. identity.Service implements it
// (kanald adapts it).
type Directory interface {
	// AccountDevices returns the ids of the account's active devices.
	AccountDevices(ctx context.Context, account string) ([]string, error)
	// OrgRole returns the account's role in the organisation, "" for none.
	OrgRole(ctx context.Context, orgID, accountID string) (string, error)
}

// Conversations says whether a conversation is one between the parties:
// the owner and an account (their direct conversation, or a group both
// belong to), or the owner and an organisation (the organisation's
// conversation with the owner). kanald wires it to messaging.
type Conversations interface {
	Between(ctx context.Context, conversation, owner, account, org string) (bool, error)
}

// Notifier tells a share's recipients that it was withdrawn; kanald wires
// it to a signed notice in the share's conversation.
type Notifier interface {
	Withdrawn(ctx context.Context, s Share) error
}

// Options configures a Service. DB, Blobs, Directory and Conversations
// are required.
type Options struct {
	DB            *db.DB
	Blobs         Blobs
	Directory     Directory
	Conversations Conversations
	Notifier      Notifier         // nil: withdrawals are not announced
	Logger        *slog.Logger     // nil: discard
	Now           func() time.Time // nil: time.Now

	MaxDocument int64 // largest ciphertext of a version; 0: DefaultMaxDocument
	Quota       int64 // bytes per account and quota class; 0: DefaultQuota
}

// Service is the vault domain.
type Service struct {
	db       *db.DB
	blobs    Blobs
	dir      Directory
	convs    Conversations
	notifier Notifier
	log      *slog.Logger
	now      func() time.Time
	maxDoc   int64
	quota    int64
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Blobs == nil || o.Directory == nil || o.Conversations == nil {
		return nil, errors.New("vault.New: DB, Blobs, Directory and Conversations are required")
	}
	s := &Service{db: o.DB, blobs: o.Blobs, dir: o.Directory, convs: o.Conversations, notifier: o.Notifier,
		log: o.Logger, now: o.Now, maxDoc: o.MaxDocument, quota: o.Quota}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxDoc <= 0 {
		s.maxDoc = DefaultMaxDocument
	}
	if s.quota <= 0 {
		s.quota = DefaultQuota
	}
	return s, nil
}

// MaxDocument is the largest ciphertext of one version this service takes.
func (s *Service) MaxDocument() int64 { return s.maxDoc }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix and 80 random bits, e.g. vd_k3x…
func newID(prefix string) (string, error) {
	var b [10]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "", fmt.Errorf("vault: random: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b[:]), nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
