package payments

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/payments/epc"
	"github.com/kanal-server/kanal/payments/jws"
	"github.com/kanal-server/kanal/payments/sepa"
)

// Roles that may create and cancel payment requests for an organisation,
// and those that may refund and read its audit log.
var (
	agentRoles = []string{"owner", "admin", "agent", "seller"}
	adminRoles = []string{"owner", "admin"}
)

// ContractInfo is what kanald keeps of a registered contract.
type ContractInfo struct {
	ContractID   string    `json:"contract_id"`
	OfferID      string    `json:"offer_id"`
	OrgID        string    `json:"org_id"`
	BuyerAccount string    `json:"buyer_account"`
	SellerDevice string    `json:"seller_device"`
	BuyerDevice  string    `json:"buyer_device"`
	TotalCents   int64     `json:"total_cents"`
	VATCents     int64     `json:"vat_cents"`
	SignedAt     time.Time `json:"signed_at"`
	RegisteredAt time.Time `json:"registered_at"`
}

// RegisterContract verifies a contract against the CA and its current
// revocation list and registers it under its hash. The caller must hold a
// substantial session and be the buyer or a member of the selling
// organisation. Registering the same contract again returns it.
func (s *Service) RegisterContract(ctx context.Context, actor Actor, key, contract string) (*ContractInfo, bool, error) {
	if actor.Level < ca.LevelSubstantial {
		return nil, false, fmt.Errorf("payments.contract: %w", ErrLevel)
	}
	if len(contract) == 0 || len(contract) > jws.MaxJWS {
		return nil, false, invalid("contract must be a compact JWS of at most %d bytes", jws.MaxJWS)
	}
	c, err := jws.VerifyContract(contract, jws.VerifyOptions{CA: s.ca, Intermediates: s.inters})
	if err != nil {
		return nil, false, fmt.Errorf("payments.contract: %w: %w", ErrContract, err)
	}
	// Offline verification accepts what was valid when it was signed;
	// kanald, which knows the time, registers a contract only for an offer
	// it registered (from a current member, dated by its own clock), from
	// a seller who is still a current member, and from devices that are
	// not revoked now.
	if err := s.offerRegistered(ctx, c.OfferJWS); err != nil {
		return nil, false, err
	}
	if err := s.checkSeller(ctx, &c.Offer); err != nil {
		return nil, false, fmt.Errorf("payments.contract: %w: %w", ErrContract, err)
	}
	if err := s.certs.CheckDeviceCertificate(ctx, c.Buyer.Serial); err != nil {
		return nil, false, fmt.Errorf("payments.contract: %w: buyer: %w", ErrContract, err)
	}
	if c.SignedAt.After(s.now().Add(MaxClockSkew)) {
		return nil, false, fmt.Errorf("payments.contract: %w: signed in the future", ErrContract)
	}
	o := c.Offer.Offer
	if actor.AccountID != c.Buyer.AccountID {
		if err := s.requireRole(ctx, actor, o.OrgID, agentRoles...); err != nil {
			return nil, false, err
		}
	}
	now := s.now().Unix()
	info := ContractInfo{ContractID: c.ID, OfferID: o.OfferID, OrgID: o.OrgID, BuyerAccount: c.Buyer.AccountID,
		SellerDevice: c.Offer.SellerDevice.DeviceID, BuyerDevice: c.Buyer.DeviceID, TotalCents: o.TotalCents, VATCents: o.VATCents,
		SignedAt: c.SignedAt.UTC(), RegisteredAt: time.Unix(now, 0).UTC()}
	out, replay, err := idempotent(ctx, s.db, "contract:"+actor.AccountID, key, struct{ ID string }{c.ID}, now,
		func(tx *sql.Tx) (ContractInfo, error) {
			if existing, err := loadContract(ctx, tx, c.ID); err == nil {
				return *existing, nil
			} else if !errors.Is(err, ErrNotFound) {
				return ContractInfo{}, err
			}
			// Above the seller's amount, only the buyer registers, from a
			// high session; a contract already registered is answered above.
			if o.HighAboveCents > 0 && o.TotalCents > o.HighAboveCents &&
				(actor.AccountID != c.Buyer.AccountID || actor.Level < ca.LevelHigh) {
				return ContractInfo{}, fmt.Errorf("%w: total %d cents is above %d", ErrLevelHigh, o.TotalCents, o.HighAboveCents)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO payments_contracts (id, offer_id, org_id, buyer_account, seller_device, buyer_device,
				total_cents, vat_cents, signed_at, registered_at, registered_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				info.ContractID, info.OfferID, info.OrgID, info.BuyerAccount, info.SellerDevice, info.BuyerDevice,
				info.TotalCents, info.VATCents, info.SignedAt.Unix(), now, actor.String())
			if db.IsUniqueViolation(err) {
				return ContractInfo{}, fmt.Errorf("%w: offer %s already has another contract", ErrDuplicate, info.OfferID)
			} else if err != nil {
				return ContractInfo{}, err
			}
			return info, audit(ctx, tx, now, actor, "contract.register", info.OrgID, info.ContractID,
				fmt.Sprintf("offer %s, buyer %s, total %d cents", info.OfferID, info.BuyerAccount, info.TotalCents))
		})
	if err != nil {
		return nil, false, wrap("payments.contract", err)
	}
	return &out, replay, nil
}

// wrap prefixes err with the operation unless it is already a domain
// error, keeping the chain for errors.Is.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func loadContract(ctx context.Context, q querier, id string) (*ContractInfo, error) {
	var c ContractInfo
	var signed, registered int64
	err := q.QueryRowContext(ctx, `SELECT id, offer_id, org_id, buyer_account, seller_device, buyer_device, total_cents, vat_cents,
		signed_at, registered_at FROM payments_contracts WHERE id = $1`, id).
		Scan(&c.ContractID, &c.OfferID, &c.OrgID, &c.BuyerAccount, &c.SellerDevice, &c.BuyerDevice, &c.TotalCents, &c.VATCents, &signed, &registered)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("contract %s: %w", id, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	c.SignedAt, c.RegisteredAt = time.Unix(signed, 0).UTC(), time.Unix(registered, 0).UTC()
	return &c, nil
}

// Contract returns a registered contract to its buyer, the selling
// organisation's members or the operator.
func (s *Service) Contract(ctx context.Context, actor Actor, id string) (*ContractInfo, error) {
	c, err := loadContract(ctx, readDB{s.db}, id)
	if err != nil {
		return nil, wrap("payments.contract", err)
	}
	if !actor.Operator && actor.AccountID != c.BuyerAccount {
		if err := s.requireRole(ctx, actor, c.OrgID, "owner", "admin", "agent", "seller", "organiser"); err != nil {
			// Not confirmed to strangers.
			return nil, fmt.Errorf("payments.contract: contract %s: %w", id, ErrNotFound)
		}
	}
	return c, nil
}

// readDB adapts db.DB's reader to querier.
type readDB struct{ d *db.DB }

func (r readDB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return r.d.QueryRow(ctx, q, args...)
}

// CreateParams are the parameters of a payment request. For a contract,
// the payer and amount come from the contract (an amount given must
// match); for an office fee they are required.
type CreateParams struct {
	ContractID   string `json:"contract_id,omitempty"`
	PayerAccount string `json:"payer_account,omitempty"`
	AmountCents  int64  `json:"amount_cents,omitempty"`
	Currency     string `json:"currency,omitempty"` // EUR; empty means EUR
	Creditor     string `json:"creditor"`
	IBAN         string `json:"iban"`
	BIC          string `json:"bic,omitempty"`
	Purpose      string `json:"purpose"`
	Reference    string `json:"reference,omitempty"` // an RF creditor reference; generated when empty
	DueDate      string `json:"due_date"`            // YYYY-MM-DD
}

// Request is a payment request as the API shows it.
type Request struct {
	RequestID     string    `json:"request_id"`
	OrgID         string    `json:"org_id"`
	PayerAccount  string    `json:"payer_account"`
	ContractID    string    `json:"contract_id,omitempty"`
	AmountCents   int64     `json:"amount_cents"`
	Currency      string    `json:"currency"`
	Creditor      string    `json:"creditor"`
	IBAN          string    `json:"iban"`
	BIC           string    `json:"bic,omitempty"`
	Reference     string    `json:"reference"`
	Purpose       string    `json:"purpose"`
	DueDate       string    `json:"due_date"`
	Status        string    `json:"status"`
	PaidCents     int64     `json:"paid_cents"`
	RefundedCents int64     `json:"refunded_cents"`
	Provider      string    `json:"provider,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`

	income          string
	providerPayment string
}

// Check applies the rules a create applies, to a copy of p, at now: a
// client (kanal pay request, the web app) refuses a mistake with the
// create's own words before it asks kanald, so nothing is sent.
func (p CreateParams) Check(now time.Time) error { return p.validate(now.Truncate(24 * time.Hour)) }

func (p *CreateParams) validate(today time.Time) error {
	if p.Currency == "" {
		p.Currency = "EUR"
	}
	if p.Currency != "EUR" {
		return invalid("currency must be EUR")
	}
	if p.AmountCents < 0 || p.AmountCents > MaxAmountCents {
		return invalid("the amount must be %s to %s", Euro(1), Euro(MaxAmountCents))
	}
	if p.ContractID == "" {
		if p.AmountCents == 0 {
			return invalid("a fee needs an amount")
		}
		if !ca.ValidID(p.PayerAccount) {
			return invalid("payer_account is required for a fee")
		}
	} else if len(p.ContractID) != 64 || strings.Trim(p.ContractID, "0123456789abcdef") != "" {
		return invalid("contract_id must be the contract's SHA-256 in lower-case hex")
	}
	if err := checkText("creditor", p.Creditor, MaxCreditor, true); err != nil {
		return err
	}
	if err := checkText("purpose", p.Purpose, MaxPurpose, true); err != nil {
		return err
	}
	iban, err := sepa.NormalizeIBAN(p.IBAN)
	if err != nil {
		return invalid("iban: %v", err)
	}
	p.IBAN = iban
	if p.BIC != "" && !sepa.ValidBIC(p.BIC) {
		return invalid("bic must be 8 or 11 upper-case letters and digits, 6 letters first")
	}
	if p.BIC == "" && sepa.BICRequired(p.IBAN) {
		return invalid("bic is required for an IBAN of %s, a SEPA country outside the EEA (EPC069-12)", p.IBAN[:2])
	}
	if p.Reference != "" {
		ref, err := sepa.NormalizeReference(p.Reference)
		if err != nil {
			return invalid("reference: %v", err)
		}
		p.Reference = ref
	}
	due, err := time.Parse(time.DateOnly, p.DueDate)
	if err != nil {
		return invalid("due_date must be YYYY-MM-DD")
	}
	if due.Before(today) || due.After(today.AddDate(0, 0, MaxDueDays)) {
		return invalid("due_date must be between today and %d days ahead", MaxDueDays)
	}
	return nil
}

func checkText(field, v string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return invalid("%s is required", field)
	case !utf8.ValidString(v) || utf8.RuneCountInString(v) > max:
		return invalid("%s must be UTF-8 of at most %d characters", field, max)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return invalid("%s contains a control character", field)
		}
	}
	return nil
}

// CreateRequest creates a payment request for an organisation. The caller
// must hold a substantial session and a role of owner, admin, agent or
// seller. key is the Idempotency-Key.
func (s *Service) CreateRequest(ctx context.Context, actor Actor, org, key string, p CreateParams) (*Request, bool, error) {
	if actor.Level < ca.LevelSubstantial {
		return nil, false, fmt.Errorf("payments.create: %w", ErrLevel)
	}
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := s.requireRole(ctx, actor, org, agentRoles...); err != nil {
		return nil, false, err
	}
	return s.createRequest(ctx, actor, org, key, p)
}

// CreateFee creates the payment request of a fee that kanal itself charges
// in org's name — a form's fee when a citizen's submission opens a case
// (cmd/kanald wires it to the case inbox). No session stands behind it,
// so no role is checked: by names the part of kanal that asks, and is
// recorded as the request's creator. key makes it idempotent, as for
// CreateRequest.
func (s *Service) CreateFee(ctx context.Context, by, org, key string, p CreateParams) (*Request, bool, error) {
	if by == "" || p.ContractID != "" {
		return nil, false, invalid("a fee names who charges it and no contract")
	}
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	return s.createRequest(ctx, Actor{AccountID: "system:" + by}, org, key, p)
}

// CheckAccount checks a creditor, IBAN and BIC as a payment request's
// would be checked and returns the IBAN normalised.
func CheckAccount(creditor, iban, bic string) (string, error) {
	p := CreateParams{PayerAccount: "acc_check", AmountCents: 1, Creditor: creditor, IBAN: iban, BIC: bic, Purpose: "check",
		DueDate: time.Now().UTC().Format(time.DateOnly)}
	if err := p.validate(time.Now().UTC().Truncate(24 * time.Hour)); err != nil {
		return "", err
	}
	return p.IBAN, nil
}

func (s *Service) createRequest(ctx context.Context, actor Actor, org, key string, p CreateParams) (*Request, bool, error) {
	now := s.now().UTC()
	if err := p.validate(now.Truncate(24 * time.Hour)); err != nil {
		return nil, false, fmt.Errorf("payments.create: %w", err)
	}
	params := struct {
		Org string
		P   CreateParams
	}{org, p}
	out, replay, err := idempotent(ctx, s.db, "request:"+org, key, params, now.Unix(), func(tx *sql.Tx) (Request, error) {
		return s.create(ctx, tx, actor, org, p, now)
	})
	if err != nil {
		return nil, false, wrap("payments.create", err)
	}
	if !replay {
		s.announce(ctx, &out)
	}
	return &out, replay, nil
}

func (s *Service) create(ctx context.Context, tx *sql.Tx, actor Actor, org string, p CreateParams, now time.Time) (Request, error) {
	r := Request{OrgID: org, PayerAccount: p.PayerAccount, ContractID: p.ContractID, AmountCents: p.AmountCents, Currency: p.Currency,
		Creditor: p.Creditor, IBAN: p.IBAN, BIC: p.BIC, Reference: p.Reference, Purpose: p.Purpose, DueDate: p.DueDate,
		Status: StatusOpen, CreatedAt: now.Truncate(time.Second), UpdatedAt: now.Truncate(time.Second), income: AccFees}
	if p.ContractID != "" {
		c, err := loadContract(ctx, tx, p.ContractID)
		if err != nil {
			return Request{}, err
		}
		switch {
		case c.OrgID != org:
			return Request{}, fmt.Errorf("%w: contract %s", ErrNotFound, p.ContractID)
		case p.PayerAccount != "" && p.PayerAccount != c.BuyerAccount:
			return Request{}, invalid("payer_account must be the contract's buyer")
		case p.AmountCents != 0 && p.AmountCents != c.TotalCents:
			return Request{}, invalid("the amount %s differs from the contract's total %s", Euro(p.AmountCents), Euro(c.TotalCents))
		}
		r.PayerAccount, r.AmountCents, r.income = c.BuyerAccount, c.TotalCents, AccSales
	}
	id, err := newID("pr_")
	if err != nil {
		return Request{}, err
	}
	r.RequestID = id
	if r.Reference == "" {
		if r.Reference, err = sepa.NewReference(strings.ToUpper(strings.TrimPrefix(id, "pr_"))); err != nil {
			return Request{}, err
		}
	}
	// The request must always have a QR code: its EPC069-12 payload
	// (UTF-8, at most 331 bytes) is checked here, before anything is
	// stored; the transaction rolls back on error.
	if _, err := epc.Payload(r.Transfer()); err != nil {
		return Request{}, invalid("the EPC QR payload of this request would not be valid (at most %d bytes of UTF-8; creditor and purpose in multi-byte characters count more): %v",
			epc.MaxPayload, err)
	}
	var contract any
	if r.ContractID != "" {
		contract = r.ContractID
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO payments_requests (id, org_id, payer_account, contract_id, income_account, amount_cents,
		currency, creditor, iban, bic, reference, purpose, due_date, status, created_at, created_by, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $15)`,
		r.RequestID, org, r.PayerAccount, contract, r.income, r.AmountCents, r.Currency, r.Creditor, r.IBAN, r.BIC, r.Reference,
		r.Purpose, r.DueDate, StatusOpen, now.Unix(), actor.String())
	if db.IsUniqueViolation(err) {
		return Request{}, fmt.Errorf("%w: reference %s is already in use", ErrDuplicate, r.Reference)
	} else if err != nil {
		return Request{}, err
	}
	if err := transition(ctx, tx, r.RequestID, "", StatusOpen, r.AmountCents, "api", actor.String(), now.Unix()); err != nil {
		return Request{}, err
	}
	if err := post(ctx, tx, r.RequestID, "request.open", now.Unix(), transfer(org, AccReceivable, r.income, r.AmountCents)); err != nil {
		return Request{}, err
	}
	return r, audit(ctx, tx, now.Unix(), actor, "request.create", org, r.RequestID,
		fmt.Sprintf("%d cents from %s, reference %s", r.AmountCents, r.PayerAccount, r.Reference))
}

func transition(ctx context.Context, tx *sql.Tx, id, from, to string, cents int64, source, actor string, at int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO payments_transitions (request_id, from_status, to_status, amount_cents, source, actor, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, from, to, cents, source, actor, at)
	if err != nil {
		return fmt.Errorf("payments: transition: %w", err)
	}
	return nil
}

const requestColumns = `id, org_id, payer_account, COALESCE(contract_id, ''), income_account, amount_cents, currency, creditor, iban, bic,
	reference, purpose, due_date, status, paid_cents, refunded_cents, provider, provider_payment, created_at, updated_at`

func scanRequest(row *sql.Row) (*Request, error) {
	var r Request
	var created, updated int64
	err := row.Scan(&r.RequestID, &r.OrgID, &r.PayerAccount, &r.ContractID, &r.income, &r.AmountCents, &r.Currency, &r.Creditor,
		&r.IBAN, &r.BIC, &r.Reference, &r.Purpose, &r.DueDate, &r.Status, &r.PaidCents, &r.RefundedCents, &r.Provider,
		&r.providerPayment, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	r.CreatedAt, r.UpdatedAt = time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC()
	return &r, nil
}

func loadRequest(ctx context.Context, q querier, id string) (*Request, error) {
	r, err := scanRequest(q.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM payments_requests WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", id, err)
	}
	return r, nil
}

// Request returns a payment request to its payer, the organisation's
// members or the operator; to anyone else it does not exist.
func (s *Service) Request(ctx context.Context, actor Actor, id string) (*Request, error) {
	r, err := loadRequest(ctx, readDB{s.db}, id)
	if err != nil {
		return nil, wrap("payments.request", err)
	}
	if !actor.Operator && actor.AccountID != r.PayerAccount {
		if err := s.requireRole(ctx, actor, r.OrgID, "owner", "admin", "agent", "seller", "organiser"); err != nil {
			return nil, fmt.Errorf("payments.request: request %s: %w", id, ErrNotFound)
		}
	}
	return r, nil
}

// Transition is one recorded state change.
type Transition struct {
	From        string    `json:"from"`
	To          string    `json:"to"`
	AmountCents int64     `json:"amount_cents"`
	Source      string    `json:"source"`
	Actor       string    `json:"actor"`
	At          time.Time `json:"at"`
}

// History lists a request's transitions, oldest first, to those who may
// see the request.
func (s *Service) History(ctx context.Context, actor Actor, id string) ([]Transition, error) {
	if _, err := s.Request(ctx, actor, id); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT from_status, to_status, amount_cents, source, actor, at FROM payments_transitions
		WHERE request_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("payments.history: %w", err)
	}
	defer rows.Close()
	out := []Transition{}
	for rows.Next() {
		var t Transition
		var at int64
		if err := rows.Scan(&t.From, &t.To, &t.AmountCents, &t.Source, &t.Actor, &at); err != nil {
			return nil, fmt.Errorf("payments.history: %w", err)
		}
		t.At = time.Unix(at, 0).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

// Cancel cancels an open request: the receivable is reversed.
func (s *Service) Cancel(ctx context.Context, actor Actor, id string) (*Request, error) {
	if actor.Level < ca.LevelSubstantial {
		return nil, fmt.Errorf("payments.cancel: %w", ErrLevel)
	}
	r, err := s.Request(ctx, actor, id)
	if err != nil {
		return nil, err
	}
	if err := s.requireRole(ctx, actor, r.OrgID, agentRoles...); err != nil {
		return nil, err
	}
	out, err := s.close(ctx, actor, id, StatusCancelled, "api")
	if err != nil {
		return nil, wrap("payments.cancel", err)
	}
	return out, nil
}

// close moves an open request to cancelled or expired and reverses its
// receivable, in one transaction.
func (s *Service) close(ctx context.Context, actor Actor, id, to, source string) (*Request, error) {
	now := s.now().Unix()
	var r *Request
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE payments_requests SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4`,
			to, now, id, StatusOpen)
		if err != nil {
			return err
		}
		if r, err = loadRequest(ctx, tx, id); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: request %s is %s", ErrState, id, r.Status)
		}
		if err := transition(ctx, tx, id, StatusOpen, to, r.AmountCents, source, actor.String(), now); err != nil {
			return err
		}
		if err := post(ctx, tx, id, "request."+to, now, transfer(r.OrgID, r.income, AccReceivable, r.AmountCents)); err != nil {
			return err
		}
		return audit(ctx, tx, now, actor, "request."+to, r.OrgID, id, "")
	})
	if err != nil {
		return nil, err
	}
	s.announce(ctx, r)
	return r, nil
}

// ExpireDue expires every open request whose due date has passed and
// returns how many it expired. kanald runs it periodically on every node;
// expiring twice is impossible (the update is conditional).
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	today := s.now().UTC().Format(time.DateOnly)
	rows, err := s.db.Query(ctx, `SELECT id FROM payments_requests WHERE status = $1 AND due_date < $2 ORDER BY due_date LIMIT 1000`,
		StatusOpen, today)
	if err != nil {
		return 0, fmt.Errorf("payments.expire: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("payments.expire: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	n := 0
	for _, id := range ids {
		if _, err := s.close(ctx, Actor{AccountID: "system"}, id, StatusExpired, "expiry"); errors.Is(err, ErrState) {
			continue
		} else if err != nil {
			return n, fmt.Errorf("payments.expire: %w", err)
		}
		n++
	}
	return n, nil
}

// announce tells the payer and the organisation about r's state. It runs
// after the commit; a failure is logged, never undoes the transition, and
// the state is always readable with GET.
func (s *Service) announce(ctx context.Context, r *Request) {
	if s.announcer == nil || r == nil {
		return
	}
	a := Announcement{RequestID: r.RequestID, OrgID: r.OrgID, PayerAccount: r.PayerAccount, Status: r.Status}
	switch r.Status {
	case StatusPaid:
		a.AmountCents = r.PaidCents
	case StatusRefunded:
		a.AmountCents = r.RefundedCents
	default:
		a.AmountCents = r.AmountCents
	}
	if err := s.announcer.Announce(ctx, a); err != nil {
		s.log.WarnContext(ctx, "payments: announce", "request", r.RequestID, "status", r.Status, "err", err)
	}
}

// CreateAppRequest creates a payment request for an organisation on
// behalf of one of its mini-apps (by names it, such as "app:bakery"). The
// mini-app registry has checked the app's client credentials and the
// citizen's consent; the payer is p.PayerAccount. key is the app's
// idempotency key.
func (s *Service) CreateAppRequest(ctx context.Context, by, org, key string, p CreateParams) (*Request, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if p.ContractID != "" || p.PayerAccount == "" {
		return nil, false, invalid("a mini-app's request names its payer and no contract")
	}
	now := s.now().UTC()
	if err := p.validate(now.Truncate(24 * time.Hour)); err != nil {
		return nil, false, fmt.Errorf("payments.create: %w", err)
	}
	params := struct {
		Org string
		P   CreateParams
	}{org, p}
	out, replay, err := idempotent(ctx, s.db, "app-request:"+org, key, params, now.Unix(), func(tx *sql.Tx) (Request, error) {
		return s.create(ctx, tx, Actor{AccountID: by}, org, p, now)
	})
	if err != nil {
		return nil, false, wrap("payments.create", err)
	}
	if !replay {
		s.announce(ctx, &out)
	}
	return &out, replay, nil
}
