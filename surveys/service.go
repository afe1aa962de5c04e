package surveys

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/keys/transparency"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the surveys schema.
func Migrations() db.Migrations { return db.Embedded("surveys", migrationFiles) }

// Caller is the authenticated account behind a request.
type Caller struct {
	AccountID string
	DeviceID  string
	Level     ca.Level
}

// Auth is how the service authenticates, provided by identity through
// cmd/kanald.
type Auth struct {
	// Require wraps h so that it runs only with a session of at least min.
	Require func(min ca.Level, h http.Handler) http.Handler
	// Caller returns the session's account inside h.
	Caller func(ctx context.Context) (Caller, bool)
}

// Directory answers what surveys needs to know about organisations.
type Directory interface {
	// OrgRole returns the account's role in the organisation, "" if none.
	OrgRole(ctx context.Context, orgID, accountID string) (string, error)
}

// Conversations answers whether an account is a member of a group
// conversation, for surveys whose audience is one. Optional.
type Conversations interface {
	IsMember(ctx context.Context, conversationID, accountID string) (bool, error)
}

// Options configures a Service. DB, Notary, Roots, Auth and Directory are
// required.
type Options struct {
	DB            *db.DB // must carry Migrations()
	Notary        *ca.Notary
	Roots         *x509.CertPool // the deployment CA, for definition signatures
	Auth          Auth
	Directory     Directory
	Conversations Conversations // nil: conversation audiences are refused
	Logger        *slog.Logger  // nil: discard
	Now           func() time.Time
	// SealKey (32 bytes) encrypts the surveys' token keys at rest, so a
	// database dump alone cannot mint eligibility tokens. kanald derives it
	// from the deployment secret.
	SealKey []byte
	// LegacySealKey, if set, is a key token keys may still be sealed under
	// (kanald before the deployment secret derived it from the CA key):
	// ResealLegacy seals them again under SealKey.
	LegacySealKey []byte
	// BallotBatch is the most ballots and token issuances that share one
	// commit (0: 64).
	BallotBatch int
	// HeadLog, if set, puts the board heads the service serves into the
	// deployment's transparency log (kanald wires identity/translog).
	HeadLog HeadLog
	// Persons, if set, names the proven (eID) identity behind an account:
	// an opaque pseudonym, "" if none. A survey whose audience is level
	// high gives one token per identity, not per account. Nil: such
	// surveys give no tokens.
	Persons func(ctx context.Context, accountID string) (string, error)
}

// HeadLog is the transparency log as the surveys see it.
type HeadLog interface {
	// LogHead makes sure the board head (survey, length, head hash) is
	// in the log and returns its entry's inclusion proof.
	LogHead(ctx context.Context, survey string, length int64, head []byte) (*transparency.Attachment, error)
}

// Service is the surveys domain. Its methods are safe for concurrent use.
type Service struct {
	db      *db.DB
	notary  *ca.Notary
	roots   *x509.CertPool
	auth    Auth
	dir     Directory
	convs   Conversations
	log     *slog.Logger
	now     func() time.Time
	commits *db.Batcher // group commit of ballots and token issuance
	seal    cipher.AEAD // token keys at rest
	legacy  cipher.AEAD // nil, or what token keys were sealed under before

	headLog HeadLog
	persons func(ctx context.Context, accountID string) (string, error)

	mu    sync.Mutex
	cache map[string]*openSurvey // surveys that have opened: immutable
}

// New checks o and returns a Service. Close stops its group commit.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Notary == nil || o.Roots == nil || o.Auth.Require == nil || o.Auth.Caller == nil || o.Directory == nil {
		return nil, errors.New("surveys: DB, Notary, Roots, Auth and Directory are required")
	}
	if len(o.SealKey) != 32 {
		return nil, errors.New("surveys: SealKey must be 32 bytes")
	}
	block, err := aes.NewCipher(o.SealKey)
	if err != nil {
		return nil, fmt.Errorf("surveys: seal key: %w", err)
	}
	seal, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("surveys: seal key: %w", err)
	}
	s := &Service{db: o.DB, notary: o.Notary, roots: o.Roots, auth: o.Auth, dir: o.Directory, convs: o.Conversations,
		log: o.Logger, now: o.Now, seal: seal, cache: map[string]*openSurvey{}, headLog: o.HeadLog, persons: o.Persons}
	if o.LegacySealKey != nil {
		if len(o.LegacySealKey) != 32 {
			return nil, errors.New("surveys: LegacySealKey must be 32 bytes")
		}
		block, _ := aes.NewCipher(o.LegacySealKey)
		s.legacy, _ = cipher.NewGCM(block)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	batch := o.BallotBatch
	if batch <= 0 {
		batch = 64
	}
	s.commits = o.DB.NewBatcher(batch)
	return s, nil
}

// ResealLegacy seals every token key that opens only under LegacySealKey
// again under SealKey, and returns how many it sealed again. kanald calls
// it at start; afterwards the legacy key is no longer needed.
func (s *Service) ResealLegacy(ctx context.Context) (int, error) {
	if s.legacy == nil {
		return 0, nil
	}
	n := 0
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, token_key FROM surveys WHERE token_key IS NOT NULL`)
		if err != nil {
			return err
		}
		type sealed struct {
			id  string
			key []byte
		}
		var todo []sealed
		for rows.Next() {
			var r sealed
			if err := rows.Scan(&r.id, &r.key); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		ns := s.seal.NonceSize()
		for _, r := range todo {
			if len(r.key) < ns {
				continue
			}
			if _, err := s.seal.Open(nil, r.key[:ns], r.key[ns:], []byte(r.id)); err == nil {
				continue
			}
			der, err := s.legacy.Open(nil, r.key[:ns], r.key[ns:], []byte(r.id))
			if err != nil {
				continue // neither key: openSurvey reports it when the survey is used
			}
			nonce := make([]byte, ns)
			if _, err := rand.Read(nonce); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE surveys SET token_key = $1 WHERE id = $2`, s.seal.Seal(nonce, nonce, der, []byte(r.id)), r.id); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("surveys: seal token keys again: %w", err)
	}
	return n, nil
}

// Close stops the service's background work.
func (s *Service) Close() { s.commits.Close() }

// row is a survey as stored.
type row struct {
	id, orgID, createdBy, mode string
	tokenKey, tokenPub         []byte
	signed                     sql.NullString
	opensAt, closesAt          sql.NullInt64
	boardLen                   int64
	boardHead                  []byte
	tokensIssued               int64
	result                     sql.NullString
	closing                    sql.NullString // a SignedClosing, after an early close
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const rowColumns = `id, org_id, created_by, mode, token_key, token_pub, signed, opens_at, closes_at, board_len, board_head, tokens_issued, result, closing`

func scanRow(r *sql.Row) (*row, error) {
	var x row
	err := r.Scan(&x.id, &x.orgID, &x.createdBy, &x.mode, &x.tokenKey, &x.tokenPub, &x.signed, &x.opensAt, &x.closesAt,
		&x.boardLen, &x.boardHead, &x.tokensIssued, &x.result, &x.closing)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &x, err
}

func (s *Service) load(ctx context.Context, id string) (*row, error) {
	if !ca.ValidID(id) {
		return nil, ErrNotFound
	}
	return scanRow(s.db.QueryRow(ctx, `SELECT `+rowColumns+` FROM surveys WHERE id = $1`, id))
}

// loadDefined loads a survey that has a signed definition, parsed; a
// draft is not found.
func (s *Service) loadDefined(ctx context.Context, id string) (*row, *openSurvey, error) {
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	o, err := s.parsed(r) // ErrNotFound for a draft
	if err != nil {
		return nil, nil, err
	}
	return r, o, nil
}

// loadOpened returns the row of a survey in the cache (one that has
// opened) with the columns that may change after opening read again and
// the rest from the cached definition, which cannot change: opens_at and
// the mode are the definition's (Define stores them from it). It returns
// nil, nil for a survey not in the cache.
//
// The same statement reads j, a row of another table that the caller
// needs before it writes (joined): an issuance or a ballot then asks the
// database once, not twice or three times.
func (s *Service) loadOpened(ctx context.Context, id string, j joined) (*row, error) {
	s.mu.Lock()
	o, ok := s.cache[id]
	s.mu.Unlock()
	if !ok {
		return nil, nil
	}
	r := &row{id: id, mode: o.def.Mode, signed: sql.NullString{Valid: true}, opensAt: sql.NullInt64{Int64: o.def.OpensAt.Unix(), Valid: true}}
	var tallied, found int
	query, key, dest := j.join()
	err := s.db.QueryRow(ctx, query, id, key).Scan(append([]any{&r.closesAt, &tallied, &found}, dest...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	j.read(found == 1)
	r.result.Valid = tallied == 1
	return r, nil
}

// joined is a row of another table that loadOpened reads with its
// survey's row: a holder's token (tokenRow) or the board entry of a
// nullifier (boardRow).
type joined interface {
	// join returns the statement, the key of the row ($2; $1 is the
	// survey) and where its columns go.
	join() (query string, key any, dest []any)
	// read records that the row was looked for, and whether it is there.
	read(found bool)
}

// openedJoin begins a loadOpened statement: the survey's changing
// columns, and whether the joined row, j, is there. j's columns and the
// join follow.
const openedJoin = `SELECT s.closes_at, CASE WHEN s.result IS NULL THEN 0 ELSE 1 END, CASE WHEN j.survey_id IS NULL THEN 0 ELSE 1 END, `

// tokenRow is a holder's row in survey_tokens, as read with its survey's
// row (loadOpened) or on its own (readTokenRow).
type tokenRow struct {
	holder    string
	looked    bool   // the row was looked for
	found     bool   // and is there: hash and sig are its columns
	hash, sig []byte // SHA-256 of the blinded request, the blind signature
}

const tokenJoin = openedJoin + `j.blinded_hash, j.blind_sig
	FROM surveys s LEFT JOIN survey_tokens j ON j.survey_id = s.id AND j.account_id = $2 WHERE s.id = $1`

func (t *tokenRow) join() (string, any, []any) { return tokenJoin, t.holder, []any{&t.hash, &t.sig} }
func (t *tokenRow) read(found bool)            { t.looked, t.found = true, found }

// boardRow is the board entry that used a nullifier, if one did, as read
// with its survey's row (loadOpened) or on its own (scan).
type boardRow struct {
	nullifier []byte
	seq       int64 // the entry's; 0 if no entry used the nullifier (entries count from 1)
	hash      []byte
	msg, sig  []byte // its token, for an anonymous ballot
	ct        []byte
}

const boardJoin = openedJoin + `COALESCE(j.seq, 0), j.hash, j.token_message, j.token_signature, j.ciphertext
	FROM surveys s LEFT JOIN survey_board j ON j.survey_id = s.id AND j.nullifier = $2 WHERE s.id = $1`

func (b *boardRow) join() (string, any, []any) {
	return boardJoin, b.nullifier, []any{&b.seq, &b.hash, &b.msg, &b.sig, &b.ct}
}
func (b *boardRow) read(bool) {} // seq says it

// boardByNullifier reads a boardRow on its own.
const boardByNullifier = `SELECT seq, hash, token_message, token_signature, ciphertext FROM survey_board WHERE survey_id = $1 AND nullifier = $2`

// scan reads b from a boardByNullifier row.
func (b *boardRow) scan(row *sql.Row) error {
	err := row.Scan(&b.seq, &b.hash, &b.msg, &b.sig, &b.ct)
	if errors.Is(err, sql.ErrNoRows) {
		b.seq = 0
		return nil
	}
	return err
}

// same says whether the entry is e's very ballot: its token and its
// ciphertext, byte for byte.
func (b *boardRow) same(e Entry) bool {
	return b.seq != 0 && sameBallot(Entry{TokenMessage: b.msg, TokenSignature: b.sig, Ciphertext: b.ct}, e)
}

// openSurvey is a survey whose definition can no longer change, parsed
// once.
type openSurvey struct {
	def      *Definition
	signed   *Signed
	tokenKey *rsa.PrivateKey
	tokenPub *rsa.PublicKey
	signer   *TokenSigner
	// closed: the survey closed before its definition's closes_at (an
	// early closing), as this node has learnt; ballots for it then take
	// the path that reads the survey's row first (castCached).
	closed atomic.Bool
}

// parsed returns a defined survey's definition, from the cache once the
// survey has opened (it cannot change after that).
func (s *Service) parsed(r *row) (*openSurvey, error) {
	s.mu.Lock()
	o, ok := s.cache[r.id]
	s.mu.Unlock()
	if ok {
		return o, nil
	}
	if !r.signed.Valid {
		return nil, ErrNotFound
	}
	o = &openSurvey{signed: &Signed{}}
	if err := json.Unmarshal([]byte(r.signed.String), o.signed); err != nil {
		return nil, fmt.Errorf("surveys: stored definition: %w", err)
	}
	o.def = &Definition{}
	if err := json.Unmarshal(o.signed.Definition, o.def); err != nil {
		return nil, fmt.Errorf("surveys: stored definition: %w", err)
	}
	if r.mode == ModeAnonymous {
		ns := s.seal.NonceSize()
		if len(r.tokenKey) < ns {
			return nil, errors.New("surveys: stored token key too short")
		}
		der, err := s.seal.Open(nil, r.tokenKey[:ns], r.tokenKey[ns:], []byte(r.id))
		if err != nil && s.legacy != nil {
			der, err = s.legacy.Open(nil, r.tokenKey[:ns], r.tokenKey[ns:], []byte(r.id))
		}
		if err != nil {
			return nil, fmt.Errorf("surveys: stored token key does not unseal: %w", err)
		}
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("surveys: stored token key: %w", err)
		}
		signer, err := NewTokenSigner(k)
		if err != nil {
			return nil, err
		}
		o.tokenKey, o.tokenPub, o.signer = k, &k.PublicKey, signer
	}
	if !s.now().Before(o.def.OpensAt) {
		s.mu.Lock()
		s.cache[r.id] = o
		s.mu.Unlock()
	}
	return o, nil
}

// Status of a survey at a moment.
const (
	StatusDraft     = "draft"     // no definition yet
	StatusScheduled = "scheduled" // defined, not open yet: may still change
	StatusOpen      = "open"
	StatusClosed    = "closed" // waiting for the tally key
	StatusTallied   = "tallied"
)

func (s *Service) status(r *row, now time.Time) string {
	switch {
	case !r.signed.Valid:
		return StatusDraft
	case r.result.Valid:
		return StatusTallied
	case now.Unix() < r.opensAt.Int64:
		return StatusScheduled
	case now.Unix() < r.closesAt.Int64:
		return StatusOpen
	}
	return StatusClosed
}

func (s *Service) requireOrganiser(ctx context.Context, c Caller, orgID string) error {
	role, err := s.dir.OrgRole(ctx, orgID, c.AccountID)
	if err != nil {
		return err
	}
	if !MayOrganise(role) {
		return fmt.Errorf("%w: only an organiser, admin or owner of %s may do this", ErrForbidden, orgID)
	}
	return nil
}

// Create starts a draft survey for an organisation. For an anonymous
// survey the server makes the survey's blind-signature key here; its
// public half must appear in the definition the organiser signs.
func (s *Service) Create(ctx context.Context, c Caller, orgID, mode string) (*Draft, error) {
	if !ca.ValidID(orgID) {
		return nil, invalidf("org_id must be a kanal id")
	}
	if mode != ModeAnonymous && mode != ModeNamed {
		return nil, invalidf("mode must be anonymous or named")
	}
	if err := s.requireOrganiser(ctx, c, orgID); err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	var priv, pub []byte
	if mode == ModeAnonymous {
		k, err := GenerateTokenKey()
		if err != nil {
			return nil, err
		}
		// The survey id is the associated data: a sealed key cannot be
		// moved to another survey's row.
		nonce := make([]byte, s.seal.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("surveys.create: %w", err)
		}
		priv = s.seal.Seal(nonce, nonce, x509.MarshalPKCS1PrivateKey(k), []byte(id))
		if pub, err = MarshalTokenPublic(k); err != nil {
			return nil, err
		}
	}
	_, err = s.db.Exec(ctx, `INSERT INTO surveys (id, org_id, created_by, mode, token_key, token_pub, board_head, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, orgID, c.AccountID, mode, priv, pub, Genesis(id), s.now().Unix())
	if err != nil {
		return nil, fmt.Errorf("surveys.create: %w", err)
	}
	return &Draft{SurveyID: id, OrgID: orgID, Mode: mode, TokenKey: pub}, nil
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("surveys: id: %w", err)
	}
	return "srv_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Define sets or replaces a survey's signed definition. It is refused once
// the survey has opened, and unless the caller signed it as an organiser
// of the survey's organisation with the keys the draft fixed.
func (s *Service) Define(ctx context.Context, c Caller, id string, signed *Signed) error {
	r, err := s.load(ctx, id)
	if err != nil {
		return err
	}
	if err := s.requireOrganiser(ctx, c, r.orgID); err != nil {
		return err
	}
	now := s.now()
	if st := s.status(r, now); st != StatusDraft && st != StatusScheduled {
		return fmt.Errorf("%w: a survey cannot change once it has opened", ErrOpened)
	}
	d, signer, err := Verify(signed, s.roots)
	if err != nil {
		return err
	}
	// Verify checks the certificates at the signing time the definition
	// claims; the server takes a definition only from certificates that
	// are valid now, so an expired device or membership cannot sign one
	// with a date from its lifetime.
	if _, err := ca.VerifyDevice(signed.Device, s.roots, now); err != nil {
		return fmt.Errorf("%w: device certificate: %w", ErrBadSignature, err)
	}
	if _, err := ca.VerifyMembership(signed.Membership, signed.Organisation, s.roots, now); err != nil {
		return fmt.Errorf("%w: membership certificate: %w", ErrBadSignature, err)
	}
	switch {
	case signer.AccountID != c.AccountID:
		return fmt.Errorf("%w: sign the definition with one of your own devices", ErrBadSignature)
	case d.SurveyID != r.id || d.OrgID != r.orgID:
		return invalidf("the definition must name survey %s of organisation %s", r.id, r.orgID)
	case d.Mode != r.mode:
		return invalidf("this survey was created %s", r.mode)
	case !bytes.Equal(d.TokenKey, r.tokenPub):
		return invalidf("token_key must be the key the server made for this survey")
	case !d.ClosesAt.After(now):
		return invalidf("closes_at is in the past")
	}
	switch d.Audience.Kind {
	case AudienceConversation:
		if s.convs == nil {
			return fmt.Errorf("%w: conversation audiences", ErrNotConfigured)
		}
	}
	body, err := json.Marshal(signed)
	if err != nil {
		return err
	}
	if len(body) > MaxDefinition {
		return invalidf("signed definition over %d bytes", MaxDefinition)
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		// Re-check inside the transaction: the opening time of the stored
		// definition, not the one read before, decides.
		res, err := tx.ExecContext(ctx, `UPDATE surveys SET signed = $1, opens_at = $2, closes_at = $3
			WHERE id = $4 AND (opens_at IS NULL OR opens_at > $5)`, string(body), d.OpensAt.Unix(), d.ClosesAt.Unix(), r.id, now.Unix())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: a survey cannot change once it has opened", ErrOpened)
		}
		return nil
	})
}

// eligible checks the audience of a survey for a caller.
func (s *Service) eligible(ctx context.Context, d *Definition, c Caller) error {
	switch d.Audience.Kind {
	case AudienceLevel:
		if c.Level < d.Audience.Level {
			if d.Audience.Level >= ca.LevelHigh {
				return fmt.Errorf("%w: this survey needs a session of level high, an eID login (kanal eid link)", ErrNotEligible)
			}
			return fmt.Errorf("%w: this survey needs a session of level %s", ErrNotEligible, d.Audience.Level)
		}
		return nil
	case AudienceOrganisation:
		role, err := s.dir.OrgRole(ctx, d.Audience.OrgID, c.AccountID)
		if err != nil {
			return err
		}
		if role == "" {
			return fmt.Errorf("%w: this survey is for the members of %s", ErrNotEligible, d.Audience.OrgID)
		}
		return nil
	case AudienceConversation:
		if s.convs == nil {
			return fmt.Errorf("%w: conversation audiences", ErrNotConfigured)
		}
		ok, err := s.convs.IsMember(ctx, d.Audience.ConversationID, c.AccountID)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: this survey is for the members of a conversation", ErrNotEligible)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown audience", ErrNotEligible)
}

// openFor loads a survey that must be open now. A survey that has opened
// is parsed and cached already; of its row only what may still change
// (closes_at after an early close, the result) is read again, not the
// signed definition and the sealed key, and j with it (loadOpened).
func (s *Service) openFor(ctx context.Context, id string, j joined) (*row, *openSurvey, error) {
	r, err := s.loadOpened(ctx, id, j)
	if err != nil {
		return nil, nil, err
	}
	if r == nil {
		if r, err = s.load(ctx, id); err != nil {
			return nil, nil, err
		}
	}
	o, err := s.open(r)
	return r, o, err
}

// open checks that a survey's row is open now and returns it parsed.
func (s *Service) open(r *row) (*openSurvey, error) {
	switch st := s.status(r, s.now()); st {
	case StatusOpen:
	case StatusDraft:
		return nil, ErrNotFound
	case StatusScheduled:
		return nil, fmt.Errorf("%w: the survey opens at %s", ErrNotOpen, time.Unix(r.opensAt.Int64, 0).UTC().Format(time.RFC3339))
	default:
		return nil, closedAt(r.closesAt.Int64)
	}
	return s.parsed(r)
}

// closedAt is the refusal of a ballot or request for a survey that closed
// at unix.
func closedAt(unix int64) error {
	return fmt.Errorf("%w: the survey closed at %s", ErrNotOpen, time.Unix(unix, 0).UTC().Format(time.RFC3339))
}

// IssueToken blind-signs an eligible account's one token request for an
// open anonymous survey (for an audience of level high, the one request of
// the proven identity behind the account, whichever of its accounts asks). The account is recorded with a hash of its
// blinded request, never the token: a retry of the same request (a lost
// answer) is signed again, any other second request is refused.
func (s *Service) IssueToken(ctx context.Context, c Caller, id string, blinded []byte) ([]byte, error) {
	// The account is whose token row is read with the survey's: it is
	// the holder unless the audience is of level high (tokenHolder).
	tok := &tokenRow{holder: c.AccountID}
	r, o, err := s.openFor(ctx, id, tok)
	if err != nil {
		return nil, err
	}
	if r.mode != ModeAnonymous {
		return nil, fmt.Errorf("%w: a named survey needs no token; vote with your session", ErrWrongMode)
	}
	if err := s.eligible(ctx, o.def, c); err != nil {
		return nil, err
	}
	if len(blinded) != o.tokenKey.Size() {
		return nil, invalidf("blinded must be %d bytes", o.tokenKey.Size())
	}
	holder, already, err := s.tokenHolder(ctx, o.def, c)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(blinded)
	// A second request is refused, and a retry answered, before the
	// costly signature.
	if !tok.looked || tok.holder != holder {
		tok = &tokenRow{holder: holder}
		if err := s.readTokenRow(ctx, id, tok); err != nil {
			return nil, err
		}
	}
	switch {
	case tok.found && bytes.Equal(tok.hash, sum[:]):
		return tok.sig, nil
	case tok.found:
		return nil, fmt.Errorf("%w: %s", ErrAlreadyIssued, already)
	}
	// Sign before the commit, which holds SQLite's one writer: the RSA
	// operation is most of the cost, and nothing leaves the server unless
	// the issuance commits.
	sig, err := o.signer.BlindSign(blinded)
	if err != nil {
		return nil, err
	}
	// The issuance row and the survey's count go into the surveys' group
	// commit: concurrent issuances share one transaction and one fsync.
	it := &issuance{survey: id, holder: holder, hash: sum[:], sig: sig, already: already}
	if err := s.commits.DoMerged(ctx, issuances{s}, it, func(tx *sql.Tx) error { return s.issueTx(ctx, tx, it) }); err != nil {
		return nil, err
	}
	return sig, nil
}

// readTokenRow reads tok.holder's token row of survey id.
func (s *Service) readTokenRow(ctx context.Context, id string, tok *tokenRow) error {
	err := s.db.QueryRow(ctx, `SELECT blinded_hash, blind_sig FROM survey_tokens WHERE survey_id = $1 AND account_id = $2`, id, tok.holder).Scan(&tok.hash, &tok.sig)
	switch {
	case err == nil:
		tok.found = true
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	tok.looked = true
	return nil
}

// issuance is one token issued, as recorded.
type issuance struct {
	survey, holder string
	hash, sig      []byte // SHA-256 of the blinded request, the blind signature
	already        string // what a second request is told
}

// issueTx records one issuance on its own. The primary key (survey,
// holder) decides between concurrent requests: the row that is inserted
// wins, the retry of the same request is answered, any other request is
// refused. The count goes up only while the survey is open at commit, so
// a request that raced an early close issues nothing.
func (s *Service) issueTx(ctx context.Context, tx *sql.Tx, it *issuance) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO survey_tokens (survey_id, account_id, blinded_hash, blind_sig) VALUES ($1, $2, $3, $4)
		ON CONFLICT (survey_id, account_id) DO NOTHING`, it.survey, it.holder, it.hash, it.sig)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 1 {
		return s.countIssued(ctx, tx, it.survey, 1)
	}
	var have []byte
	if err := tx.QueryRowContext(ctx, `SELECT blinded_hash FROM survey_tokens WHERE survey_id = $1 AND account_id = $2`, it.survey, it.holder).Scan(&have); err != nil {
		return err
	}
	if !bytes.Equal(have, it.hash) {
		return fmt.Errorf("%w: %s", ErrAlreadyIssued, it.already)
	}
	return nil // the same request again: its signature is the same
}

// countIssued adds n to a survey's tokens issued, if it is still open.
func (s *Service) countIssued(ctx context.Context, tx *sql.Tx, survey string, n int) error {
	return updateOpen(ctx, tx, `UPDATE surveys SET tokens_issued = tokens_issued + $1 WHERE id = $2 AND closes_at > $3`, n, survey, s.now().Unix())
}

// updateOpen runs query, an update of one survey's row only while it is
// open (closes_at > now): ErrNotOpen if it changed no row.
func updateOpen(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("%w: the survey has closed", ErrNotOpen)
	}
	return nil
}

// issuances writes the issuances of one group commit together: their rows
// in multi-row inserts, and one count per survey, in the order of the
// survey ids. Anything but a fresh row for every issuance (a second
// request, a retry, a closed survey) fails the batch, and each issuance
// runs again on its own through issueTx, which tells them apart.
type issuances struct{ s *Service }

var errIssuanceConflict = errors.New("surveys: issuance conflicts with a recorded one")

// surveyRows locks survey rows in id order (db.Locks). Every write of the
// surveys' group commit goes through its survey's row — a ballot takes
// the board's length and head, an issuance the count of tokens issued —
// so a transaction that holds its surveys' rows, taken in one ordered
// pass before any body runs, waits for no one afterwards: two nodes'
// batches with ballots for the same two surveys in crossed order would
// otherwise deadlock (TestAttackCrossNodeBallots).
var surveyRows = &db.RowLock{SQL: `SELECT 1 FROM unnest($1::text[]) AS k(id),
	LATERAL (SELECT 1 FROM surveys WHERE surveys.id = k.id FOR UPDATE) s`}

// LockItems asks ls for the rows of the issuances' surveys (db.Locker).
func (m issuances) LockItems(ls *db.Locks, items []any) {
	for _, x := range items {
		ls.Lock(surveyRows, x.(*issuance).survey)
	}
}

var _ db.Locker = issuances{}

func (m issuances) MergeTx(ctx context.Context, tx *sql.Tx, items []any) error {
	its := make([]*issuance, len(items))
	counts := map[string]int{}
	for i, x := range items {
		its[i] = x.(*issuance)
		counts[its[i].survey]++
	}
	if err := insertAll(ctx, tx, `INSERT INTO survey_tokens (survey_id, account_id, blinded_hash, blind_sig) VALUES `, 4, its,
		func(it *issuance) []any { return []any{it.survey, it.holder, it.hash, it.sig} }, errIssuanceConflict); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(counts)) {
		if err := m.s.countIssued(ctx, tx, id, counts[id]); err != nil {
			return err
		}
	}
	return nil
}

// issueSQL writes a group commit's issuances on a PostgreSQL pipeline
// (db.Pipeliner): their rows, given as arrays, and each survey's count,
// in one statement. The pipeline's COMMIT is sent with it, so anything
// but a fresh row for every issuance in a survey still open must fail
// the statement itself: a recorded or repeated (survey, holder) fails the
// insert's primary key, and a survey closed before the commit, which the
// update then skips ($5 surveys must be counted), fails a cast that is
// evaluated only then (of a column, so that the planner cannot fold it).
// The batch then runs issuance by issuance through issueTx, which tells
// a retry, a second request and a closed survey apart, as after a failed
// MergeTx. Planned once per connection (db.Pipeline.Query), it reaches
// the surveys' rows through their primary key only.
const issueSQL = `WITH ins AS (
	INSERT INTO survey_tokens (survey_id, account_id, blinded_hash, blind_sig)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])
	RETURNING survey_id
), counted AS (
	UPDATE surveys s SET tokens_issued = s.tokens_issued + (SELECT COUNT(*) FROM ins WHERE ins.survey_id = s.id)
	WHERE s.id = ANY (ARRAY(SELECT survey_id FROM ins)) AND s.closes_at > $6
	RETURNING s.id
)
SELECT c.n FROM (SELECT COUNT(*) AS n FROM counted) c
WHERE CASE WHEN c.n = $5::bigint THEN true ELSE ('surveys closed before the commit: ' || ($5::bigint - c.n))::bigint IS NULL END`

// QueueTx queues a commit's issuances on p (db.Pipeliner), their surveys'
// rows locked first as LockItems locks them for MergeTx.
func (m issuances) QueueTx(p *db.Pipeline, items []any) error {
	n := len(items)
	surveys, holders, hashes, sigs := make([]string, 0, n), make([]string, 0, n), make([][]byte, 0, n), make([][]byte, 0, n)
	seen := map[string]bool{}
	var ids []string
	for _, x := range items {
		it := x.(*issuance)
		surveys, holders, hashes, sigs = append(surveys, it.survey), append(holders, it.holder), append(hashes, it.hash), append(sigs, it.sig)
		if !seen[it.survey] {
			seen[it.survey] = true
			ids = append(ids, it.survey)
		}
	}
	p.Lock(surveyRows, ids...)
	p.Query(issueSQL, []any{surveys, holders, hashes, sigs, int64(len(ids)), m.s.now().Unix()}, nil)
	return nil
}

var _ db.Pipeliner = issuances{}

// tokenHolder is who a token is recorded for: the account, or for an
// audience of level high the person, as a pseudonym of this survey —
// SHA-256("kanal survey person v1\x00" + survey id + "\x00" + identity) —
// so two accounts of one person share one token and the rows of two
// surveys do not join. The pseudonym is hex, and so never an account id.
func (s *Service) tokenHolder(ctx context.Context, d *Definition, c Caller) (holder, already string, err error) {
	if d.Audience.Kind != AudienceLevel || d.Audience.Level < ca.LevelHigh {
		return c.AccountID, "this account already received its token for this survey", nil
	}
	person := ""
	if s.persons != nil {
		if person, err = s.persons(ctx, c.AccountID); err != nil {
			return "", "", err
		}
	}
	if person == "" {
		return "", "", fmt.Errorf("%w: this survey is for eID-proven citizens; link your eID first (kanal eid link)", ErrNotEligible)
	}
	h := sha256.Sum256([]byte("kanal survey person v1\x00" + d.SurveyID + "\x00" + person))
	return hex.EncodeToString(h[:]), "this person already received a token for this survey, through this or another of their accounts", nil
}

// CastAnonymous puts an anonymous ballot on the board: the token must be
// this survey's and verify, its nullifier unused, the survey open.
func (s *Service) CastAnonymous(ctx context.Context, id string, t *Token, ciphertext []byte) (*Receipt, error) {
	if rec, done, err := s.castCached(ctx, id, t, ciphertext); done {
		return rec, err
	}
	// A survey that does not exist is not found, whatever the token says
	// (one in the cache exists); a token of another survey is named as
	// such before anything else.
	if !s.cached(id) {
		if _, err := s.load(ctx, id); err != nil {
			return nil, err
		}
	}
	if tid, err := TokenSurvey(t.Message); err != nil {
		return nil, err
	} else if tid != id {
		return nil, fmt.Errorf("%w: the token is for survey %q", ErrOtherSurvey, tid)
	}
	e := Entry{Nullifier: Nullifier(t.Message), TokenMessage: t.Message, TokenSignature: t.Signature, Ciphertext: ciphertext}
	rec, r, o, err := s.ballotFor(ctx, id, e)
	if rec != nil || err != nil {
		return rec, err
	}
	if r.mode != ModeAnonymous {
		return nil, fmt.Errorf("%w: a named survey takes ballots with a session", ErrWrongMode)
	}
	if err := checkCiphertext(ciphertext); err != nil {
		return nil, err
	}
	if err := VerifyToken(o.tokenPub, id, t); err != nil {
		return nil, err
	}
	return s.append(ctx, id, e, "")
}

// castCached casts an anonymous ballot for a survey this node has
// cached, open by its definition's times, without reading anything
// before the commit: the token is checked against the cached key, and
// the commit refuses a used nullifier and a survey closed early, and
// answers the very ballot again with its entry's receipt (appendTx, in
// the order CastAnonymous's other path would). done says that the ballot
// went to the commit and rec, err are its answer; otherwise (not cached,
// not open, or anything the other path must name in its order: another
// survey's token, a bad ciphertext or token) nothing was written and the
// ballot takes the other path, which reads the survey's row first.
func (s *Service) castCached(ctx context.Context, id string, t *Token, ciphertext []byte) (rec *Receipt, done bool, err error) {
	s.mu.Lock()
	o, ok := s.cache[id]
	s.mu.Unlock()
	if !ok || o.def.Mode != ModeAnonymous || o.closed.Load() {
		return nil, false, nil
	}
	now := s.now().Unix()
	if now < o.def.OpensAt.Unix() || now >= o.def.ClosesAt.Unix() {
		return nil, false, nil
	}
	if tid, err := TokenSurvey(t.Message); err != nil || tid != id {
		return nil, false, nil
	}
	if checkCiphertext(ciphertext) != nil || VerifyToken(o.tokenPub, id, t) != nil {
		return nil, false, nil
	}
	e := Entry{Nullifier: Nullifier(t.Message), TokenMessage: t.Message, TokenSignature: t.Signature, Ciphertext: ciphertext}
	rec, err = s.append(ctx, id, e, "")
	if errors.Is(err, ErrNotOpen) {
		// Closed early, on this node or another: closes_at only moves
		// earlier, so every later ballot takes the other path.
		o.closed.Store(true)
	}
	return rec, true, err
}

// cached says whether survey id has opened and is parsed on this node.
func (s *Service) cached(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cache[id]
	return ok
}

// ballotFor reads what a ballot needs before its commit — for a survey in
// the cache, in one statement (loadOpened): the board entry that used e's
// nullifier and the survey's row.
//
// A ballot that is on the board already, byte for byte — the same
// nullifier, token and ciphertext — is answered with that entry's receipt
// (rec), and nothing is written: a voter whose answer was lost sends the
// same ballot again and learns where it was counted, also after the
// survey closed. Every part of the entry is public on the board, so the
// answer tells no one anything new. Otherwise the survey must be open; a
// different ballot under a used nullifier is refused later, in append.
func (s *Service) ballotFor(ctx context.Context, id string, e Entry) (rec *Receipt, r *row, o *openSurvey, err error) {
	prior := &boardRow{nullifier: e.Nullifier}
	if r, err = s.loadOpened(ctx, id, prior); err != nil {
		return nil, nil, nil, err
	}
	if r == nil {
		if err := prior.scan(s.db.QueryRow(ctx, boardByNullifier, id, e.Nullifier)); err != nil {
			return nil, nil, nil, err
		}
	}
	if prior.same(e) {
		return s.receipt(id, prior.seq, prior.hash), nil, nil, nil
	}
	if r == nil {
		if r, err = s.load(ctx, id); err != nil {
			return nil, nil, nil, err
		}
	}
	if o, err = s.open(r); err != nil {
		return nil, nil, nil, err
	}
	return nil, r, o, nil
}

// CastNamed puts a named ballot on the board for an eligible caller, once.
func (s *Service) CastNamed(ctx context.Context, c Caller, id string, ciphertext []byte) (*Receipt, error) {
	e := Entry{Nullifier: NamedNullifier(id, c.AccountID), Voter: c.AccountID, Ciphertext: ciphertext}
	rec, r, o, err := s.ballotFor(ctx, id, e)
	if rec != nil || err != nil {
		return rec, err
	}
	if r.mode != ModeNamed {
		return nil, fmt.Errorf("%w: an anonymous survey takes ballots with a token and without a session", ErrWrongMode)
	}
	if err := s.eligible(ctx, o.def, c); err != nil {
		return nil, err
	}
	if err := checkCiphertext(ciphertext); err != nil {
		return nil, err
	}
	// Of level high: one ballot per person, whichever of their accounts
	// casts it. The board still names the account (the public nullifier is
	// unchanged); the person is checked beside it.
	var person string
	if o.def.Audience.Kind == AudienceLevel && o.def.Audience.Level >= ca.LevelHigh {
		var err error
		if person, _, err = s.tokenHolder(ctx, o.def, c); err != nil {
			return nil, err
		}
	}
	return s.append(ctx, id, e, person)
}

// hpkeOverhead is X25519's encapsulated key and ChaCha20-Poly1305's tag.
const hpkeOverhead = 32 + 16

func checkCiphertext(ct []byte) error {
	if len(ct) < hpkeOverhead+PadBlock || len(ct) > MaxCiphertext || (len(ct)-hpkeOverhead)%PadBlock != 0 {
		return invalidf("ciphertext must be an HPKE ballot padded to a multiple of %d bytes, at most %d bytes", PadBlock, MaxCiphertext)
	}
	return nil
}

// append adds e to the board in the surveys' group commit: concurrent
// ballots share one transaction, and the ballots of one survey in it are
// written together (ballots). person, if set, is the survey's pseudonym
// of the person casting a named ballot of level high: a second ballot of
// the same person, from any account, is refused.
func (s *Service) append(ctx context.Context, id string, e Entry, person string) (*Receipt, error) {
	b := &ballot{survey: id, e: e, person: person}
	if err := s.commits.DoMerged(ctx, ballots{s}, b, func(tx *sql.Tx) error { return s.appendTx(ctx, tx, b) }); err != nil {
		return nil, err
	}
	if b.err != nil {
		return nil, b.err
	}
	return s.receipt(id, b.e.Seq, b.e.Hash), nil
}

// ballot is one ballot on its way to the board. The commit that writes it
// sets its entry's Seq, Prev and Hash.
type ballot struct {
	survey string
	e      Entry
	person string
	// err is the commit's refusal of a ballot it did not write, decided
	// by the batch's reads (ballots.MergeTx): the batch commits the
	// others. appendTx returns its refusals instead.
	err error
}

// counted is the refusal of a ballot whose nullifier is on the board
// with another ballot.
func (b *ballot) counted() error {
	if b.e.Voter != "" {
		return fmt.Errorf("%w: %s has already voted in this survey", ErrAlreadyVoted, b.e.Voter)
	}
	return fmt.Errorf("%w: this ballot's token has been counted already", ErrAlreadyVoted)
}

// appendTx writes one ballot on its own, and tells apart what a batch of
// them (ballots) only fails on: what the board and the survey already
// decide, as in a batch (sortBallots: the very ballot again takes its
// entry, then a closed survey, then a used nullifier is refused), then a
// person who has cast. The survey's row is locked already (the batch's
// first statement, surveyRows): appends to one board are serialised, so
// each entry follows the head before it.
func (s *Service) appendTx(ctx context.Context, tx *sql.Tx, b *ballot) error {
	id := b.survey
	boards, err := readBoards(ctx, tx, s.db.Dialect(), []*ballot{b})
	if err != nil {
		return err
	}
	// The same ballot twice at once: the second finds the first here.
	fresh, _ := s.sortBallots(boards[id], []*ballot{b})
	if err := b.err; err != nil {
		b.err = nil // answered here, as appendTx's error
		return err
	}
	if len(fresh) == 0 {
		return nil // on the board already: its entry is the answer
	}
	if b.person != "" {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM survey_named_persons WHERE survey_id = $1 AND person = $2`, id, b.person).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: this person has already voted in this survey, through this or another of their accounts", ErrAlreadyVoted)
		}
	}
	return s.appendBoard(ctx, tx, id, boards[id], fresh)
}

// appendBoard appends bs to survey id's board, in their order, its row
// locked and read (readBoards): one entry after the other from the
// board's head, the entries in multi-row inserts, then the board's length
// and head in one update — which still requires closes_at > now, so that
// nothing commits on a board after its closing, whatever the reads found.
// bs are fresh (sortBallots); a row that is skipped all the same — a
// person who has cast already — fails the batch (errBallotConflict), and
// each ballot runs again on its own through appendTx, which tells them
// apart.
func (s *Service) appendBoard(ctx context.Context, tx *sql.Tx, id string, sb *surveyBoard, bs []*ballot) error {
	seq, prev := sb.length, sb.head
	for _, b := range bs {
		seq++
		b.e.Seq, b.e.Prev = seq, prev
		b.e.Hash = b.e.ComputeHash(id)
		prev = b.e.Hash
	}
	if err := insertAll(ctx, tx, `INSERT INTO survey_board (survey_id, seq, prev, nullifier, token_message, token_signature, ciphertext, hash) VALUES `, 8, bs,
		func(b *ballot) []any {
			return []any{id, b.e.Seq, b.e.Prev, b.e.Nullifier, nilIfEmpty(b.e.TokenMessage), nilIfEmpty(b.e.TokenSignature), b.e.Ciphertext, b.e.Hash}
		}, errBallotConflict); err != nil {
		return err
	}
	var named, persons []*ballot
	for _, b := range bs {
		if b.e.Voter != "" {
			named = append(named, b)
		}
		if b.person != "" {
			persons = append(persons, b)
		}
	}
	if err := insertAll(ctx, tx, `INSERT INTO survey_named_voters (survey_id, account_id, seq) VALUES `, 3, named,
		func(b *ballot) []any { return []any{id, b.e.Voter, b.e.Seq} }, errBallotConflict); err != nil {
		return err
	}
	if err := insertAll(ctx, tx, `INSERT INTO survey_named_persons (survey_id, person) VALUES `, 2, persons,
		func(b *ballot) []any { return []any{id, b.person} }, errBallotConflict); err != nil {
		return err
	}
	return updateOpen(ctx, tx, `UPDATE surveys SET board_len = $1, board_head = $2 WHERE id = $3 AND closes_at > $4`, seq, prev, id, s.now().Unix())
}

var errBallotConflict = errors.New("surveys: ballot conflicts with a recorded one")

// insertAll inserts a row of cols values for each of rows, in multi-row
// inserts that skip a row whose key is taken; a skipped row is conflict.
func insertAll[T any](ctx context.Context, tx *sql.Tx, insert string, cols int, rows []T, values func(T) []any, conflict error) error {
	for len(rows) > 0 {
		k := db.Rows(len(rows), db.MaxParams/cols)
		args := make([]any, 0, cols*k)
		for _, r := range rows[:k] {
			args = append(args, values(r)...)
		}
		res, err := tx.ExecContext(ctx, insert+db.Values(k, cols)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != int64(k) {
			return conflict
		}
		rows = rows[k:]
	}
	return nil
}

// ballots writes the ballots of one group commit together, survey by
// survey in the order of their ids, each survey's in the order they came
// (appendBoard), after answering those the board and the survey already
// decide (sortBallots). What only the writes find (a person who has cast)
// fails the batch, and each ballot runs again on its own through
// appendTx.
type ballots struct{ s *Service }

// LockItems asks ls for the rows of the ballots' surveys (db.Locker).
func (m ballots) LockItems(ls *db.Locks, items []any) {
	for _, x := range items {
		ls.Lock(surveyRows, x.(*ballot).survey)
	}
}

var _ db.Locker = ballots{}

func (m ballots) MergeTx(ctx context.Context, tx *sql.Tx, items []any) error {
	all := make([]*ballot, len(items))
	bySurvey := map[string][]*ballot{}
	for i, x := range items {
		b := x.(*ballot)
		all[i] = b
		bySurvey[b.survey] = append(bySurvey[b.survey], b)
	}
	boards, err := readBoards(ctx, tx, m.s.db.Dialect(), all)
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(bySurvey)) {
		fresh, copies := m.s.sortBallots(boards[id], bySurvey[id])
		if len(fresh) == 0 {
			continue
		}
		if err := m.s.appendBoard(ctx, tx, id, boards[id], fresh); err != nil {
			return err
		}
		for c, first := range copies {
			c.e.Seq, c.e.Hash = first.e.Seq, first.e.Hash
		}
	}
	return nil
}

// sortBallots decides, for the ballots bs of one survey in one batch,
// what the board and the survey already answer (sb, read by readBoards),
// in the order CastAnonymous documents: a ballot already on the board,
// byte for byte, takes its entry; then a closed survey refuses the rest;
// then a nullifier on the board, or taken by an earlier ballot of the
// batch, refuses its ballot (err) — unless the ballot is that earlier
// one again, a copy, which takes its entry once written. It returns the
// ballots to write and the copies. The batch commits whatever its
// ballots are: a ballot anyone can send again (the board is public) or
// one under a token already counted does not send the batch back to be
// committed in halves.
func (s *Service) sortBallots(sb *surveyBoard, bs []*ballot) (fresh []*ballot, copies map[*ballot]*ballot) {
	closed := sb.tallied || s.now().Unix() >= sb.closes
	first := map[string]*ballot{}
	for _, b := range bs {
		b.err = nil
		prior, ok := sb.entries[string(b.e.Nullifier)]
		switch {
		case ok && prior.same(b.e):
			b.e.Seq, b.e.Hash = prior.seq, prior.hash
		case closed:
			b.err = closedAt(sb.closes)
		case ok:
			b.err = b.counted()
		case first[string(b.e.Nullifier)] != nil:
			f := first[string(b.e.Nullifier)]
			if !sameBallot(f.e, b.e) {
				b.err = b.counted()
				break
			}
			if copies == nil {
				copies = map[*ballot]*ballot{}
			}
			copies[b] = f
		default:
			first[string(b.e.Nullifier)] = b
			fresh = append(fresh, b)
		}
	}
	return fresh, copies
}

// surveyBoard is what a commit reads of a survey it writes ballots to,
// the survey's row locked (readBoards): when it closes, whether it is
// tallied, its board's length and head, and the board entries that used
// the commit's nullifiers, by nullifier.
type surveyBoard struct {
	closes  int64
	tallied bool
	length  int64
	head    []byte
	entries map[string]*boardRow
}

// boardsPerRead is the most ballots one statement of readBoards reads
// for.
const boardsPerRead = 256

// boardsSQL reads m surveys' rows (kind 0) and the board entries of k
// (survey, nullifier) pairs (kind 1, only those on a board): each row
// once, each entry by one probe of the board's unique index on
// (survey_id, nullifier), so a batch costs a probe a ballot however many
// surveys it spans. On PostgreSQL the ids ($1) and the pairs ($2, $3)
// are arrays, one text for any m and k. On SQLite they are lists, $1 to
// $m and then k pairs, and the statement names the index: without
// statistics the planner would read a survey's whole board by the primary
// key.
func boardsSQL(d db.Dialect, m, k int) string {
	const rows = `SELECT 0, s.id, s.closes_at, CASE WHEN s.result IS NULL THEN 0 ELSE 1 END, s.board_len, s.board_head,
		NULL, 0, NULL, NULL, NULL, NULL FROM surveys s WHERE `
	const entries = ` UNION ALL SELECT 1, j.survey_id, 0, 0, 0, NULL, j.nullifier, j.seq, j.hash, j.token_message, j.token_signature, j.ciphertext FROM `
	if d == db.Postgres {
		return rows + `s.id = ANY ($1::text[])` + entries +
			`unnest($2::text[], $3::bytea[]) AS k(survey_id, nullifier) JOIN survey_board j ON j.survey_id = k.survey_id AND j.nullifier = k.nullifier`
	}
	key := [2]int{m, k}
	if v, ok := boardsTexts.Load(key); ok {
		return v.(string)
	}
	var ids, pairs strings.Builder
	for i := range m {
		if i > 0 {
			ids.WriteByte(',')
		}
		ids.WriteString("$" + strconv.Itoa(i+1))
	}
	for i := range k {
		if i > 0 {
			pairs.WriteByte(',')
		}
		pairs.WriteString("($" + strconv.Itoa(m+2*i+1) + ",$" + strconv.Itoa(m+2*i+2) + ")")
	}
	v, _ := boardsTexts.LoadOrStore(key, rows+`s.id IN (`+ids.String()+`)`+entries+
		`(VALUES `+pairs.String()+`) AS k JOIN survey_board j INDEXED BY sqlite_autoindex_survey_board_2 ON j.survey_id = k.column1 AND j.nullifier = k.column2`)
	return v.(string)
}

// boardsTexts caches boardsSQL's SQLite texts by m and k, powers of two
// up to boardsPerRead (readBoards pads its lists to them): at most 81.
var boardsTexts sync.Map // [2]int → string

// readBoards reads, for the ballots bs, each of their surveys' rows and
// the board entries that used their nullifiers (surveyBoard), in one
// statement per boardsPerRead ballots, after the commit has locked the
// surveys' rows. A survey that is not there is ErrNotFound.
func readBoards(ctx context.Context, tx *sql.Tx, d db.Dialect, bs []*ballot) (map[string]*surveyBoard, error) {
	boards := map[string]*surveyBoard{}
	var found []surveyEntry
	for len(bs) > 0 {
		part := bs[:min(len(bs), boardsPerRead)]
		bs = bs[len(part):]
		var ids []string
		for _, b := range part {
			if _, ok := boards[b.survey]; !ok {
				boards[b.survey] = nil // until its row is read
				ids = append(ids, b.survey)
			}
		}
		if len(ids) == 0 {
			ids = []string{part[0].survey} // read again: the statement reads one at least
		}
		var args []any
		if d == db.Postgres {
			surveys, nulls := make([]string, len(part)), make([][]byte, len(part))
			for i, b := range part {
				surveys[i], nulls[i] = b.survey, b.e.Nullifier
			}
			args = []any{ids, surveys, nulls}
		} else {
			// Padded to powers of two with the last of each list, which
			// finds nothing new: a few texts for any batch.
			args = make([]any, 0, pow2(len(ids))+2*pow2(len(part)))
			for i := range pow2(len(ids)) {
				args = append(args, ids[min(i, len(ids)-1)])
			}
			for i := range pow2(len(part)) {
				b := part[min(i, len(part)-1)]
				args = append(args, b.survey, b.e.Nullifier)
			}
		}
		rows, err := tx.QueryContext(ctx, boardsSQL(d, pow2(len(ids)), pow2(len(part))), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var kind, t int
			var id string
			sb, e := &surveyBoard{}, &boardRow{}
			if err := rows.Scan(&kind, &id, &sb.closes, &t, &sb.length, &sb.head, &e.nullifier, &e.seq, &e.hash, &e.msg, &e.sig, &e.ct); err != nil {
				rows.Close()
				return nil, err
			}
			if kind == 0 {
				sb.tallied = t == 1
				boards[id] = sb
			} else {
				found = append(found, surveyEntry{id, e})
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for _, sb := range boards {
		if sb == nil {
			return nil, ErrNotFound
		}
		sb.entries = map[string]*boardRow{}
	}
	for _, f := range found {
		boards[f.survey].entries[string(f.e.nullifier)] = f.e
	}
	return boards, nil
}

// surveyEntry is a board entry readBoards found, and its survey.
type surveyEntry struct {
	survey string
	e      *boardRow
}

// pow2 is the smallest power of two at least n (n ≥ 1).
func pow2(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

// sameBallot says whether a and b are one ballot: token and ciphertext,
// byte for byte.
func sameBallot(a, b Entry) bool {
	return bytes.Equal(a.TokenMessage, b.TokenMessage) && bytes.Equal(a.TokenSignature, b.TokenSignature) && bytes.Equal(a.Ciphertext, b.Ciphertext)
}

// receipt is the notary's signed statement, as of now, that board entry
// seq of survey id has hash.
func (s *Service) receipt(id string, seq int64, hash []byte) *Receipt {
	rec := &Receipt{SurveyID: id, Seq: seq, Hash: hash, At: s.now().UTC().Truncate(time.Second)}
	rec.Signature, rec.Notary = s.notary.Sign(PurposeReceipt, ReceiptMessage(rec)), s.notary.Certificate().Raw
	return rec
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Board returns up to limit entries after entry number after, and a signed
// head read before them (so the page never ends before it).
func (s *Service) Board(ctx context.Context, id string, after int64, limit int) ([]Entry, *SignedHead, error) {
	p, err := s.Page(ctx, id, after, limit)
	if err != nil {
		return nil, nil, err
	}
	return p.Entries, &p.Head, nil
}

// Page is Board as served: the entries, the signed head and, when the
// organiser closed the survey early, its signed closing.
func (s *Service) Page(ctx context.Context, id string, after int64, limit int) (*BoardPage, error) {
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !r.signed.Valid {
		return nil, ErrNotFound
	}
	if after < 0 || limit < 1 || limit > MaxBoardPage {
		return nil, invalidf("after must be >= 0 and limit 1..%d", MaxBoardPage)
	}
	closing, err := r.signedClosing()
	if err != nil {
		return nil, err
	}
	head, err := s.signHead(r)
	if err != nil {
		return nil, err
	}
	var headLog *transparency.Attachment
	if s.headLog != nil {
		if headLog, err = s.headLog.LogHead(ctx, r.id, r.boardLen, r.boardHead); err != nil {
			return nil, fmt.Errorf("surveys: logging the board head: %w", err)
		}
	}
	entries, err := s.entries(ctx, id, after, limit)
	if err != nil {
		return nil, err
	}
	return &BoardPage{Head: *head, Entries: entries, Closing: closing, HeadLog: headLog}, nil
}

func (r *row) signedClosing() (*SignedClosing, error) {
	if !r.closing.Valid {
		return nil, nil
	}
	var c SignedClosing
	if err := json.Unmarshal([]byte(r.closing.String), &c); err != nil {
		return nil, fmt.Errorf("surveys: stored closing: %w", err)
	}
	return &c, nil
}

// CloseEarly records the organiser's signed closing of an open survey:
// from then on ballots are refused and the tally key may be published.
// The closing must be signed by the device that signed the definition and
// carry a time within MaxClosingSkew of kanald's clock; closes_at becomes
// the moment it is recorded.
func (s *Service) CloseEarly(ctx context.Context, c Caller, id string, sc *SignedClosing) error {
	r, err := s.load(ctx, id)
	if err != nil {
		return err
	}
	if err := s.requireOrganiser(ctx, c, r.orgID); err != nil {
		return err
	}
	now := s.now()
	switch s.status(r, now) {
	case StatusDraft:
		return ErrNotFound
	case StatusScheduled:
		return fmt.Errorf("%w: it opens at %s", ErrNotOpen, time.Unix(r.opensAt.Int64, 0).UTC().Format(time.RFC3339))
	case StatusClosed, StatusTallied:
		return fmt.Errorf("%w: already closed", ErrNotOpen)
	}
	o, err := s.parsed(r)
	if err != nil {
		return err
	}
	cl, err := VerifyClosing(o.signed, o.def, sc)
	if err != nil {
		return err
	}
	if d := cl.ClosedAt.Sub(now); d > MaxClosingSkew || d < -MaxClosingSkew {
		return invalidf("closing: closed_at %s is more than %v from the server's clock", cl.ClosedAt.Format(time.RFC3339), MaxClosingSkew)
	}
	body, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	res, err := s.db.Exec(ctx, `UPDATE surveys SET closing = $1, closes_at = $2
		WHERE id = $3 AND closing IS NULL AND result IS NULL AND closes_at > $2`, string(body), now.Unix(), id)
	if err != nil {
		return fmt.Errorf("surveys.close: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("%w: already closed", ErrNotOpen)
	}
	o.closed.Store(true)
	return nil
}

func (s *Service) signHead(r *row) (*SignedHead, error) {
	h, err := json.Marshal(Head{SurveyID: r.id, Length: r.boardLen, Hash: r.boardHead, At: s.now().UTC().Truncate(time.Second)})
	if err != nil {
		return nil, err
	}
	return &SignedHead{Head: h, Signature: s.notary.Sign(PurposeHead, h), Notary: s.notary.Certificate().Raw}, nil
}

func (s *Service) entries(ctx context.Context, id string, after int64, limit int) ([]Entry, error) {
	rows, err := s.db.Query(ctx, `SELECT b.seq, b.prev, b.nullifier, b.token_message, b.token_signature, b.ciphertext, b.hash, COALESCE(v.account_id, '')
		FROM survey_board b LEFT JOIN survey_named_voters v ON v.survey_id = b.survey_id AND v.seq = b.seq
		WHERE b.survey_id = $1 AND b.seq > $2 ORDER BY b.seq LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("surveys.board: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Seq, &e.Prev, &e.Nullifier, &e.TokenMessage, &e.TokenSignature, &e.Ciphertext, &e.Hash, &e.Voter); err != nil {
			return nil, fmt.Errorf("surveys.board: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Tally takes the tally private key after closing, counts the board,
// signs the statement with the notary and publishes it with the key, so
// that anyone can recount. Only an organiser of the survey's organisation
// may, once.
//
// The board is read without the survey's row locked, so a commit that
// wrote ballots or issued tokens before the closing may still be on its
// way when the count begins; the statement is stored only if the board's
// length and the tokens issued are still the ones counted (a commit holds
// the row until it is durable), and otherwise counted again. A ballot
// whose receipt was given is never left out of the result, and the
// participation it states is of every token issued.
func (s *Service) Tally(ctx context.Context, c Caller, id string, tallyPriv []byte) (*SignedResult, error) {
	for attempt := 1; ; attempt++ {
		signed, err := s.tally(ctx, c, id, tallyPriv)
		if !errors.Is(err, errBoardMoved) {
			return signed, err
		}
		if attempt == tallyAttempts {
			return nil, fmt.Errorf("%w: ballots were still being committed while the board was counted; try again", ErrNotClosed)
		}
	}
}

// tallyAttempts bounds how often Tally counts a board that grew while it
// counted. After the closing only the commits already under way can add
// to it, so a second count normally stands.
const tallyAttempts = 3

// errBoardMoved: the board or the tokens issued grew between tally's
// count and its write.
var errBoardMoved = errors.New("surveys: the board grew while it was counted")

func (s *Service) tally(ctx context.Context, c Caller, id string, tallyPriv []byte) (*SignedResult, error) {
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.requireOrganiser(ctx, c, r.orgID); err != nil {
		return nil, err
	}
	switch s.status(r, s.now()) {
	case StatusDraft:
		return nil, ErrNotFound
	case StatusScheduled, StatusOpen:
		return nil, fmt.Errorf("%w: the tally key is published after closing, at %s", ErrNotClosed, time.Unix(r.closesAt.Int64, 0).UTC().Format(time.RFC3339))
	case StatusTallied:
		return nil, ErrTallied
	}
	o, err := s.parsed(r)
	if err != nil {
		return nil, err
	}
	if err := CheckTallyKey(o.def.TallyKey, tallyPriv); err != nil {
		return nil, err
	}
	entries, err := s.entries(ctx, id, 0, int(r.boardLen)+1)
	if err != nil {
		return nil, err
	}
	res, err := Tally(o.def, tallyPriv, entries)
	if err != nil {
		return nil, err
	}
	tokens := int(r.tokensIssued)
	if r.mode == ModeNamed {
		tokens = len(entries)
	}
	st := Statement{Result: *res, TallyKey: tallyPriv, TokensIssued: tokens,
		Participation: Participation(res.BoardLength, tokens), TalliedAt: s.now().UTC().Truncate(time.Second)}
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	signed := &SignedResult{Statement: body, Signature: s.notary.Sign(PurposeResult, body), Notary: s.notary.Certificate().Raw}
	out, err := json.Marshal(signed)
	if err != nil {
		return nil, err
	}
	// board_len and tokens_issued: a commit of ballots or of token
	// issuances holds the row until it is durable, so this waits for one
	// under way and then finds what it wrote.
	res2, err := s.db.Exec(ctx, `UPDATE surveys SET result = $1 WHERE id = $2 AND result IS NULL AND board_len = $3 AND tokens_issued = $4`,
		string(out), id, res.BoardLength, r.tokensIssued)
	if err != nil {
		return nil, fmt.Errorf("surveys.tally: %w", err)
	}
	if n, _ := res2.RowsAffected(); n != 1 {
		var tallied bool
		if err := s.db.QueryRow(ctx, `SELECT result IS NOT NULL FROM surveys WHERE id = $1`, id).Scan(&tallied); err != nil {
			return nil, fmt.Errorf("surveys.tally: %w", err)
		}
		if tallied {
			return nil, ErrTallied
		}
		return nil, errBoardMoved
	}
	return signed, nil
}

// Result returns a tallied survey's signed result. Results of visibility
// "organisation" need a caller who is a member of the organisation.
func (s *Service) Result(ctx context.Context, c *Caller, id string) (*SignedResult, error) {
	r, o, err := s.loadDefined(ctx, id)
	if err != nil {
		return nil, err
	}
	if o.def.Results == ResultsOrganisation {
		if c == nil {
			return nil, fmt.Errorf("%w: the results of this survey are for the members of %s; sign in", ErrForbidden, r.orgID)
		}
		role, err := s.dir.OrgRole(ctx, r.orgID, c.AccountID)
		if err != nil {
			return nil, err
		}
		if role == "" {
			return nil, fmt.Errorf("%w: the results of this survey are for the members of %s", ErrForbidden, r.orgID)
		}
	}
	if !r.result.Valid {
		return nil, ErrNotTallied
	}
	var out SignedResult
	if err := json.Unmarshal([]byte(r.result.String), &out); err != nil {
		return nil, fmt.Errorf("surveys: stored result: %w", err)
	}
	return &out, nil
}

// VerifyResult checks a signed result against the deployment CA.
func VerifyResult(sr *SignedResult, roots *x509.CertPool) (*Statement, error) {
	var st Statement
	if err := strictJSON(sr.Statement, &st); err != nil {
		return nil, fmt.Errorf("%w: result: %v", ErrBadBoard, err)
	}
	if err := ca.VerifyNotarized(sr.Notary, roots, st.TalliedAt, PurposeResult, sr.Statement, sr.Signature); err != nil {
		return nil, fmt.Errorf("%w: result signature: %w", ErrBadBoard, err)
	}
	return &st, nil
}

// Get returns a survey's signed definition and its state. Drafts are not
// shown.
func (s *Service) Get(ctx context.Context, id string) (*Survey, error) {
	r, o, err := s.loadDefined(ctx, id)
	if err != nil {
		return nil, err
	}
	closing, err := r.signedClosing()
	if err != nil {
		return nil, err
	}
	// Named surveys issue no tokens; like the signed statement, count each
	// voter as one.
	tokens := r.tokensIssued
	if r.mode == ModeNamed {
		tokens = r.boardLen
	}
	return &Survey{Signed: *o.signed, Status: s.status(r, s.now()), BoardLength: r.boardLen, TokensIssued: tokens, Closing: closing}, nil
}

// ListOpen returns the open surveys the caller may answer.
func (s *Service) ListOpen(ctx context.Context, c Caller) ([]Summary, error) {
	now := s.now().Unix()
	rows, err := s.db.Query(ctx, `SELECT `+rowColumns+` FROM surveys WHERE signed IS NOT NULL AND opens_at <= $1 AND closes_at > $1 ORDER BY closes_at, id LIMIT 500`, now)
	if err != nil {
		return nil, fmt.Errorf("surveys.list: %w", err)
	}
	var rs []*row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.id, &x.orgID, &x.createdBy, &x.mode, &x.tokenKey, &x.tokenPub, &x.signed, &x.opensAt, &x.closesAt,
			&x.boardLen, &x.boardHead, &x.tokensIssued, &x.result, &x.closing); err != nil {
			rows.Close()
			return nil, fmt.Errorf("surveys.list: %w", err)
		}
		rs = append(rs, &x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("surveys.list: %w", err)
	}
	out := []Summary{}
	for _, r := range rs {
		o, err := s.parsed(r)
		if err != nil {
			return nil, err
		}
		if err := s.eligible(ctx, o.def, c); err != nil {
			if errors.Is(err, ErrNotEligible) || errors.Is(err, ErrNotConfigured) {
				continue
			}
			return nil, err
		}
		out = append(out, Summary{SurveyID: r.id, OrgID: r.orgID, Title: o.def.Title, Mode: r.mode, ClosesAt: o.def.ClosesAt})
	}
	return out, nil
}
