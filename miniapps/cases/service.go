package cases

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the cases schema.
func Migrations() db.Migrations { return db.Embedded("cases", migrationFiles) }

// The statuses of a case.
const (
	StatusReceived         = "received"
	StatusInProgress       = "in_progress"
	StatusNeedsInformation = "needs_information"
	StatusDecided          = "decided"
)

// next lists the statuses a case may move to from each status. A decided
// case is final: a new request is a new case.
var next = map[string][]string{
	StatusReceived:         {StatusInProgress, StatusNeedsInformation, StatusDecided},
	StatusInProgress:       {StatusNeedsInformation, StatusDecided},
	StatusNeedsInformation: {StatusInProgress, StatusDecided},
	StatusDecided:          nil,
}

// ValidStatus reports whether s is a case status.
func ValidStatus(s string) bool { _, ok := next[s]; return ok }

// NextStatuses lists the statuses a case in status s may move to (none
// for a decided case), for clients that offer only allowed changes.
func NextStatuses(s string) []string { return append([]string(nil), next[s]...) }

// Errors of the domain. Each maps to one problem type at the HTTP edge.
var (
	ErrInvalid          = errors.New("invalid input")
	ErrNotFound         = errors.New("not found")
	ErrForbidden        = errors.New("forbidden")
	ErrUnknownTemplate  = errors.New("unknown form")
	ErrWithdrawn        = errors.New("form withdrawn")
	ErrTemplateMismatch = errors.New("template hash does not match")
	ErrTransition       = errors.New("status change not allowed")
	ErrConflict         = errors.New("conflict")
	ErrTooMany          = errors.New("too many open cases")
	ErrNoFeeAccount     = errors.New("no account for fees")
	ErrLevel            = errors.New("level of assurance too low")
)

// Actor is the session that acts.
type Actor struct {
	AccountID string
	DeviceID  string
	Level     string // the session's level of assurance: "low", "substantial" or "high"
}

// Case is what the server holds of one case.
type Case struct {
	ID           string    `json:"id"`
	OrgID        string    `json:"org_id"`
	Citizen      string    `json:"citizen"`
	SubmissionID string    `json:"submission_id"`
	TemplateID   string    `json:"template_id"`
	Version      string    `json:"version"`
	TemplateHash string    `json:"template_hash"`
	Status       string    `json:"status"`
	Assignee     string    `json:"assignee,omitempty"`
	DueDate      string    `json:"due_date"` // YYYY-MM-DD
	Seq          int       `json:"seq"`
	FeeRequest   string    `json:"fee_request,omitempty"` // the payment request of the template's fee
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Event is one change of a case.
type Event struct {
	Seq      int       `json:"seq"`
	Status   string    `json:"status"`
	Assignee string    `json:"assignee,omitempty"`
	Actor    string    `json:"actor"`
	At       time.Time `json:"at"`
}

// Template is what the catalogue says of one template version.
type Template struct {
	ID             string
	Version        string
	Hash           string // the version's hash, "sha256:" and hex (miniapps/forms)
	Title          string
	Withdrawn      bool
	ProcessingDays int    // the office's processing time, in calendar days
	FeeCents       int64  // 0: no fee
	FeePurpose     string // the fee payment's remittance text
	Level          string // the citizen's level of assurance the form needs: "", "low", "substantial" or "high"
}

// Templates looks up a template version in the catalogue, as org uses it;
// it returns ErrUnknownTemplate (wrapped) for one it does not know.
type Templates interface {
	Template(ctx context.Context, org, id, version string) (Template, error)
}

// Orgs answers from identity: which role an account holds in an
// organisation ("" for none), and whether an organisation exists and is
// verified.
type Orgs interface {
	OrgRole(ctx context.Context, orgID, accountID string) (string, error)
	OrgVerified(ctx context.Context, orgID string) (bool, error)
}

// Announcer tells the citizen and the organisation's agents of a case's
// change, in their conversation. kanald posts it as a case.status notice.
type Announcer interface {
	Announce(ctx context.Context, c Case) error
}

// Fees is the payments side of a template's fee. Charge creates the
// payment request of the fee for a new case, to the organisation's fee
// account, and returns its id; it is called again, with the same case,
// until it has succeeded once, so it must be idempotent per case. Check
// says whether an account can be paid to (creditor, IBAN and BIC as
// payments accepts them) and returns it normalised.
type Fees interface {
	Charge(ctx context.Context, c Case, t Template, to FeeAccount) (string, error)
	Check(a FeeAccount) (FeeAccount, error)
}

// FeeAccount is where an organisation's form fees are paid to.
type FeeAccount struct {
	Creditor string `json:"creditor"`
	IBAN     string `json:"iban"`
	BIC      string `json:"bic,omitempty"`
}

// Options configure a Service. Fees may be nil (then a template with a
// fee cannot be submitted); Now defaults to time.Now.
type Options struct {
	DB        *db.DB
	Logger    *slog.Logger
	Orgs      Orgs
	Templates Templates
	Announcer Announcer
	Fees      Fees
	Now       func() time.Time
}

// Service is the case inbox.
type Service struct {
	db    *db.DB
	log   *slog.Logger
	orgs  Orgs
	tpls  Templates
	ann   Announcer
	fees  Fees
	now   func() time.Time
	Limit int // undecided cases per citizen and organisation; MaxOpenPerPerson by default
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Orgs == nil || o.Templates == nil || o.Announcer == nil {
		return nil, errors.New("cases: DB, Orgs, Templates and Announcer are required")
	}
	s := &Service{db: o.DB, log: o.Logger, orgs: o.Orgs, tpls: o.Templates, ann: o.Announcer, fees: o.Fees, now: o.Now, Limit: MaxOpenPerPerson}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

var (
	idShape     = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
	semverShape = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$`)
	hashShape   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	caseIDShape = regexp.MustCompile(`^case_[a-z2-7]{26}$`)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// OpenRequest registers a submission: the body of POST
// /v1/orgs/{org}/cases, sent by the citizen's client before it sends the
// answers end to end.
type OpenRequest struct {
	SubmissionID string `json:"submission_id"`
	TemplateID   string `json:"template_id"`
	Version      string `json:"version"`
	TemplateHash string `json:"template_hash"`
}

func (r *OpenRequest) check() error {
	switch {
	case !idShape.MatchString(r.SubmissionID):
		return invalid("submission_id must be 1..64 characters of A-Z a-z 0-9 _ . : -")
	case !idShape.MatchString(r.TemplateID):
		return invalid("template_id must be 1..64 characters of A-Z a-z 0-9 _ . : -")
	case !semverShape.MatchString(r.Version):
		return invalid("version must be a semantic version MAJOR.MINOR.PATCH")
	case !hashShape.MatchString(r.TemplateHash):
		return invalid("template_hash must be sha256: and 64 lower-case hex digits")
	}
	return nil
}

// Open opens the case of a citizen's submission to org. The template must
// be in the catalogue, not withdrawn, and have the hash the citizen's
// client checked. Opening the same submission again returns the case
// (replay true); the same submission id with other parameters is a
// conflict. A template with a fee gets its payment request here.
func (s *Service) Open(ctx context.Context, a Actor, org string, r OpenRequest) (c *Case, replay bool, err error) {
	if err := r.check(); err != nil {
		return nil, false, err
	}
	if !idShape.MatchString(org) {
		return nil, false, invalid("organisation id malformed")
	}
	if ok, err := s.orgs.OrgVerified(ctx, org); err != nil {
		return nil, false, err
	} else if !ok {
		return nil, false, fmt.Errorf("%w: organisation %s", ErrNotFound, org)
	}
	t, err := s.tpls.Template(ctx, org, r.TemplateID, r.Version)
	switch {
	case err != nil:
		return nil, false, err
	case t.Withdrawn:
		return nil, false, fmt.Errorf("%w: %s %s is withdrawn", ErrWithdrawn, r.TemplateID, r.Version)
	case t.Hash != r.TemplateHash:
		return nil, false, fmt.Errorf("%w: %s %s is not the template with that hash", ErrTemplateMismatch, r.TemplateID, r.Version)
	case t.ProcessingDays < 0 || t.ProcessingDays > MaxProcessing:
		return nil, false, fmt.Errorf("cases: template %s %s: processing time %d days out of range", t.ID, t.Version, t.ProcessingDays)
	case t.FeeCents > 0 && s.fees == nil:
		return nil, false, fmt.Errorf("cases: template %s %s has a fee and no payments are wired", t.ID, t.Version)
	case levelRank(a.Level) < levelRank(t.Level):
		return nil, false, fmt.Errorf("%w: %s %s needs a session at level %s, this one is %s; step up first (kanal eid link for high)",
			ErrLevel, t.ID, t.Version, t.Level, a.Level)
	}
	var acct *FeeAccount
	if t.FeeCents > 0 {
		if acct, err = s.FeeAccountOf(ctx, org); err != nil {
			return nil, false, err
		}
	}
	now := s.now().UTC()
	nc := &Case{ID: newCaseID(), OrgID: org, Citizen: a.AccountID, SubmissionID: r.SubmissionID, TemplateID: r.TemplateID,
		Version: r.Version, TemplateHash: r.TemplateHash, Status: StatusReceived,
		DueDate: now.AddDate(0, 0, t.ProcessingDays).Format(time.DateOnly), Seq: 1,
		CreatedAt: now.Truncate(time.Millisecond), UpdatedAt: now.Truncate(time.Millisecond)}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		old, err := scanCase(tx.QueryRowContext(ctx, selectCase+` WHERE citizen = $1 AND submission_id = $2`, a.AccountID, r.SubmissionID))
		if err == nil {
			if old.OrgID != org || old.TemplateID != r.TemplateID || old.Version != r.Version || old.TemplateHash != r.TemplateHash {
				return fmt.Errorf("%w: submission %s was registered with other parameters", ErrConflict, r.SubmissionID)
			}
			c, replay = old, true
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var open int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM cases WHERE citizen = $1 AND org_id = $2 AND status <> 'decided'`,
			a.AccountID, org).Scan(&open); err != nil {
			return err
		}
		if open >= s.Limit {
			return fmt.Errorf("%w: %d undecided cases at this organisation", ErrTooMany, open)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO cases (id, org_id, citizen, submission_id, template_id, template_version, template_hash,
			status, assignee, due_date, seq, fee_request, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', $9, 1, '', $10, $10)`,
			nc.ID, org, a.AccountID, r.SubmissionID, r.TemplateID, r.Version, r.TemplateHash, StatusReceived, nc.DueDate, nc.CreatedAt.UnixMilli()); err != nil {
			return err
		}
		c = nc
		return insertEvent(ctx, tx, nc, "account:"+a.AccountID, nc.CreatedAt)
	})
	if err != nil {
		if db.IsUniqueViolation(err) {
			return nil, false, fmt.Errorf("%w: submission %s registered at the same time", ErrConflict, r.SubmissionID)
		}
		return nil, false, err
	}
	if !replay {
		s.announce(ctx, *c)
	}
	if t.FeeCents > 0 && c.FeeRequest == "" {
		id, err := s.fees.Charge(ctx, *c, t, *acct)
		if err != nil {
			return nil, false, fmt.Errorf("cases: fee of case %s: %w", c.ID, err)
		}
		if _, err := s.db.Exec(ctx, `UPDATE cases SET fee_request = $1 WHERE id = $2 AND fee_request = ''`, id, c.ID); err != nil {
			return nil, false, err
		}
		c.FeeRequest = id
	}
	return c, replay, nil
}

// announce tells the conversation of a change; a failed announcement is
// logged, not returned: the change has committed and the case's history
// holds it.
func (s *Service) announce(ctx context.Context, c Case) {
	if err := s.ann.Announce(ctx, c); err != nil {
		s.log.Warn("cases: announce", "case", c.ID, "seq", c.Seq, "err", err)
	}
}

func newCaseID() string {
	var b [16]byte
	rand.Read(b[:])
	return "case_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

const selectCase = `SELECT id, org_id, citizen, submission_id, template_id, template_version, template_hash, status, assignee,
	due_date, seq, fee_request, created_at, updated_at FROM cases`

type scanner interface{ Scan(...any) error }

func scanCase(row scanner) (*Case, error) {
	var c Case
	var created, updated int64
	if err := row.Scan(&c.ID, &c.OrgID, &c.Citizen, &c.SubmissionID, &c.TemplateID, &c.Version, &c.TemplateHash, &c.Status,
		&c.Assignee, &c.DueDate, &c.Seq, &c.FeeRequest, &created, &updated); err != nil {
		return nil, err
	}
	c.CreatedAt, c.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return &c, nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, c *Case, actor string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO cases_events (case_id, seq, status, assignee, actor, at) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.ID, c.Seq, c.Status, c.Assignee, actor, at.UnixMilli())
	return err
}

// agent checks that a is an agent of org.
func (s *Service) agent(ctx context.Context, a Actor, org string) error {
	role, err := s.orgs.OrgRole(ctx, org, a.AccountID)
	if err != nil {
		return err
	}
	if !identity.IsAgentRole(role) {
		return fmt.Errorf("%w: only the organisation's agents work its cases", ErrForbidden)
	}
	return nil
}

// Get returns a case and its history, to the organisation's agents and to
// the citizen whose case it is. To anyone else the case does not exist.
func (s *Service) Get(ctx context.Context, a Actor, id string) (*Case, []Event, error) {
	c, err := s.load(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if c.Citizen != a.AccountID {
		if err := s.agent(ctx, a, c.OrgID); errors.Is(err, ErrForbidden) {
			return nil, nil, fmt.Errorf("%w: case %s", ErrNotFound, id)
		} else if err != nil {
			return nil, nil, err
		}
	}
	rows, err := s.db.Query(ctx, `SELECT seq, status, assignee, actor, at FROM cases_events WHERE case_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var evs []Event
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.Seq, &e.Status, &e.Assignee, &e.Actor, &at); err != nil {
			return nil, nil, err
		}
		e.At = time.UnixMilli(at).UTC()
		evs = append(evs, e)
	}
	return c, evs, rows.Err()
}

func (s *Service) load(ctx context.Context, id string) (*Case, error) {
	if !caseIDShape.MatchString(id) {
		return nil, fmt.Errorf("%w: case %s", ErrNotFound, id)
	}
	c, err := scanCase(s.db.QueryRow(ctx, selectCase+` WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: case %s", ErrNotFound, id)
	}
	return c, err
}

// Filter selects cases of the inbox.
type Filter struct {
	Status   string // one status, or all
	Assignee string // an account id, "none" for unassigned, or all
	After    string // the last case id of the previous page
	Limit    int    // DefaultList when 0, at most MaxList
}

// List returns org's cases, newest first, to its agents.
func (s *Service) List(ctx context.Context, a Actor, org string, f Filter) ([]Case, error) {
	if !idShape.MatchString(org) {
		return nil, invalid("organisation id malformed")
	}
	if err := s.agent(ctx, a, org); err != nil {
		return nil, err
	}
	if f.Limit == 0 {
		f.Limit = DefaultList
	}
	if f.Limit < 1 || f.Limit > MaxList {
		return nil, invalid("limit must be 1..%d", MaxList)
	}
	q, args := selectCase+` WHERE org_id = $1`, []any{org}
	if f.Status != "" {
		if !ValidStatus(f.Status) {
			return nil, invalid("status must be received, in_progress, needs_information or decided")
		}
		args = append(args, f.Status)
		q += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	if f.Assignee != "" {
		as := f.Assignee
		if as == "none" {
			as = ""
		} else if !idShape.MatchString(as) {
			return nil, invalid("assignee must be an account id or none")
		}
		args = append(args, as)
		q += fmt.Sprintf(` AND assignee = $%d`, len(args))
	}
	if f.After != "" {
		after, err := s.load(ctx, f.After)
		if err != nil || after.OrgID != org {
			return nil, invalid("after must be a case of this organisation")
		}
		args = append(args, after.CreatedAt.UnixMilli(), after.ID)
		q += fmt.Sprintf(` AND (created_at < $%d OR (created_at = $%d AND id < $%d))`, len(args)-1, len(args)-1, len(args))
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Case{}
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// Assign gives a case to one of the organisation's agents.
func (s *Service) Assign(ctx context.Context, a Actor, id, assignee string) (*Case, error) {
	if !idShape.MatchString(assignee) {
		return nil, invalid("assignee must be an account id")
	}
	return s.change(ctx, a, id, func(c *Case) (bool, error) {
		if c.Status == StatusDecided {
			return false, fmt.Errorf("%w: case %s is decided", ErrTransition, c.ID)
		}
		if c.Assignee == assignee {
			return false, nil
		}
		role, err := s.orgs.OrgRole(ctx, c.OrgID, assignee)
		if err != nil {
			return false, err
		}
		if !identity.IsAgentRole(role) {
			return false, invalid("%s is not an agent of the organisation", assignee)
		}
		c.Assignee = assignee
		return true, nil
	})
}

// SetStatus moves a case to status, along the allowed transitions.
func (s *Service) SetStatus(ctx context.Context, a Actor, id, status string) (*Case, error) {
	if !ValidStatus(status) {
		return nil, invalid("status must be received, in_progress, needs_information or decided")
	}
	return s.change(ctx, a, id, func(c *Case) (bool, error) {
		if c.Status == status {
			return false, nil
		}
		for _, n := range next[c.Status] {
			if n == status {
				c.Status = status
				return true, nil
			}
		}
		return false, fmt.Errorf("%w: a %s case cannot become %s", ErrTransition, c.Status, status)
	})
}

// change applies f to a case as one of its organisation's agents, records
// the event and announces it. The update is conditional on the case's seq,
// so of two agents changing a case at once one gets ErrConflict.
func (s *Service) change(ctx context.Context, a Actor, id string, f func(c *Case) (bool, error)) (*Case, error) {
	c, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Citizen == a.AccountID {
		return nil, fmt.Errorf("%w: a citizen does not work their own case", ErrForbidden)
	}
	if err := s.agent(ctx, a, c.OrgID); errors.Is(err, ErrForbidden) {
		return nil, fmt.Errorf("%w: case %s", ErrNotFound, id)
	} else if err != nil {
		return nil, err
	}
	changed, err := f(c)
	if err != nil || !changed {
		return c, err
	}
	prev := c.Seq
	c.Seq++
	c.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE cases SET status = $1, assignee = $2, seq = $3, updated_at = $4 WHERE id = $5 AND seq = $6`,
			c.Status, c.Assignee, c.Seq, c.UpdatedAt.UnixMilli(), c.ID, prev)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: case %s changed meanwhile; look again", ErrConflict, c.ID)
		}
		return insertEvent(ctx, tx, c, "account:"+a.AccountID, c.UpdatedAt)
	})
	if err != nil {
		return nil, err
	}
	s.announce(ctx, *c)
	return c, nil
}

// FeeAccountOf returns the account org's fees are paid to, or
// ErrNoFeeAccount.
func (s *Service) FeeAccountOf(ctx context.Context, org string) (*FeeAccount, error) {
	var a FeeAccount
	err := s.db.QueryRow(ctx, `SELECT creditor, iban, bic FROM cases_fee_accounts WHERE org_id = $1`, org).Scan(&a.Creditor, &a.IBAN, &a.BIC)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: organisation %s has not set the account its form fees are paid to", ErrNoFeeAccount, org)
	}
	return &a, err
}

// FeeAccount returns org's fee account to its agents.
func (s *Service) FeeAccount(ctx context.Context, a Actor, org string) (*FeeAccount, error) {
	if !idShape.MatchString(org) {
		return nil, invalid("organisation id malformed")
	}
	if err := s.agent(ctx, a, org); err != nil {
		return nil, err
	}
	return s.FeeAccountOf(ctx, org)
}

// SetFeeAccount sets the account org's form fees are paid to; only the
// organisation's owners and admins may.
func (s *Service) SetFeeAccount(ctx context.Context, a Actor, org string, acct FeeAccount) (*FeeAccount, error) {
	if !idShape.MatchString(org) {
		return nil, invalid("organisation id malformed")
	}
	role, err := s.orgs.OrgRole(ctx, org, a.AccountID)
	if err != nil {
		return nil, err
	}
	if role != identity.RoleOwner && role != identity.RoleAdmin {
		return nil, fmt.Errorf("%w: only the organisation's owners and admins set its fee account", ErrForbidden)
	}
	if s.fees == nil {
		return nil, fmt.Errorf("%w: payments are not wired", ErrInvalid)
	}
	checked, err := s.fees.Check(acct)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	now := s.now().UnixMilli()
	_, err = s.db.Exec(ctx, `INSERT INTO cases_fee_accounts (org_id, creditor, iban, bic, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (org_id) DO UPDATE SET creditor = $2, iban = $3, bic = $4, updated_at = $5`, org, checked.Creditor, checked.IBAN, checked.BIC, now)
	if err != nil {
		return nil, err
	}
	return &checked, nil
}

// levelRank orders levels of assurance; "" (a template that names none)
// is below low, and an unknown name ranks as nothing.
func levelRank(l string) int {
	switch l {
	case "low":
		return 1
	case "substantial":
		return 2
	case "high":
		return 3
	}
	return 0
}
