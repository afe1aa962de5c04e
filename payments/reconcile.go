package payments

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kanal-server/kanal/payments/camt"
	"github.com/kanal-server/kanal/payments/sepa"
)

// Statuses of an imported bank entry.
const (
	EntryMatched   = "matched"
	EntryUnmatched = "unmatched"
	EntryResolved  = "resolved"
)

// BankEntry is an imported credit from a bank statement.
type BankEntry struct {
	ID          string     `json:"entry_id"`
	StatementID string     `json:"statement_id"`
	IBAN        string     `json:"iban"`
	BankRef     string     `json:"bank_ref"`
	AmountCents int64      `json:"amount_cents"`
	Currency    string     `json:"currency"`
	Reference   string     `json:"reference,omitempty"`
	Remittance  string     `json:"remittance,omitempty"`
	Debtor      string     `json:"debtor,omitempty"`
	BookingDate string     `json:"booking_date,omitempty"`
	Status      string     `json:"status"`
	RequestID   string     `json:"request_id,omitempty"`
	Note        string     `json:"note,omitempty"` // why it is unmatched, or how it was resolved
	ImportedAt  time.Time  `json:"imported_at"`
	ResolvedAt  *time.Time `json:"resolved_at,omitempty"`
}

// ImportResult summarises an import.
type ImportResult struct {
	Matched    []BankEntry `json:"matched"`
	Unmatched  []BankEntry `json:"unmatched"`
	Duplicates int         `json:"duplicates"` // entries imported before
	Skipped    int         `json:"skipped"`    // debits and entries not yet booked
}

// ImportStatement reads a camt.053 statement (operator only) and books its
// credits: an entry whose RF reference names an open request of the same
// amount pays it (bank ← receivable); any other credit is booked to the
// unallocated account and listed until a person resolves it. A statement
// that does not parse changes nothing; one imported twice books nothing
// twice. Everything happens in one transaction.
func (s *Service) ImportStatement(ctx context.Context, actor Actor, xml []byte) (*ImportResult, error) {
	if !actor.Operator {
		return nil, fmt.Errorf("payments.import: %w", ErrForbidden)
	}
	sts, err := camt.Parse(bytes.NewReader(xml))
	if err != nil {
		return nil, fmt.Errorf("payments.import: %w: %w", ErrStatement, err)
	}
	now := s.now().Unix()
	var res *ImportResult
	var paid []*Request
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, paid = &ImportResult{Matched: []BankEntry{}, Unmatched: []BankEntry{}}, nil
		for _, st := range sts {
			for _, e := range st.Entries {
				if !e.Credit || !e.Booked {
					res.Skipped++
					continue
				}
				be, r, dup, err := s.importEntry(ctx, tx, actor, st, e, now)
				if err != nil {
					return err
				}
				switch {
				case dup:
					res.Duplicates++
				case be.Status == EntryMatched:
					res.Matched = append(res.Matched, *be)
					paid = append(paid, r)
				default:
					res.Unmatched = append(res.Unmatched, *be)
				}
			}
		}
		return audit(ctx, tx, now, actor, "statement.import", "", statementName(sts),
			fmt.Sprintf("%d matched, %d unmatched, %d duplicates, %d skipped", len(res.Matched), len(res.Unmatched), res.Duplicates, res.Skipped))
	})
	if err != nil {
		return nil, wrap("payments.import", err)
	}
	for _, r := range paid {
		s.announce(ctx, r)
	}
	return res, nil
}

func statementName(sts []camt.Statement) string {
	ids := make([]string, len(sts))
	for i, s := range sts {
		ids[i] = s.ID
	}
	return strings.Join(ids, ",")
}

// entryID identifies a bank entry across imports: the account and the
// bank's own reference, or the statement and position without one.
func entryID(st camt.Statement, e camt.Entry) string {
	key := st.IBAN + "|ref|" + e.BankRef
	if e.BankRef == "" {
		key = fmt.Sprintf("%s|stmt|%s|%d", st.IBAN, st.ID, e.Index)
	}
	h := sha256.Sum256([]byte(key))
	return "be_" + hex.EncodeToString(h[:12])
}

func (s *Service) importEntry(ctx context.Context, tx *sql.Tx, actor Actor, st camt.Statement, e camt.Entry, now int64) (*BankEntry, *Request, bool, error) {
	be := &BankEntry{ID: entryID(st, e), StatementID: st.ID, IBAN: st.IBAN, BankRef: e.BankRef, AmountCents: e.AmountCents,
		Currency: e.Currency, Remittance: clip(e.Text, 500), Debtor: clip(e.Debtor, 140), BookingDate: e.BookingDate,
		ImportedAt: time.Unix(now, 0).UTC()}
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM payments_bank_entries WHERE id = $1`, be.ID).Scan(&one)
	if err == nil {
		return be, nil, true, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, false, err
	}
	be.Reference = findReference(e.Reference, e.Text)
	org := ""
	var r *Request
	switch {
	case e.Currency != "EUR":
		be.Note = "currency " + e.Currency + " is not EUR"
	case be.Reference == "":
		be.Note = "no RF creditor reference"
	default:
		r, err = scanRequest(tx.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM payments_requests WHERE reference = $1`, be.Reference))
		switch {
		case errors.Is(err, ErrNotFound):
			be.Note = "no request has reference " + be.Reference
			r = nil
		case err != nil:
			return nil, nil, false, err
		case r.IBAN != st.IBAN:
			be.Note = fmt.Sprintf("request %s is payable to another account", r.RequestID)
			r = nil
		case r.Status != StatusOpen:
			be.Note = fmt.Sprintf("request %s is %s", r.RequestID, r.Status)
			org, be.RequestID, r = r.OrgID, r.RequestID, nil
		case r.AmountCents != e.AmountCents:
			be.Note = fmt.Sprintf("amount %s differs from the %s request %s asks for", cents(e.AmountCents), cents(r.AmountCents), r.RequestID)
			org, be.RequestID, r = r.OrgID, r.RequestID, nil
		}
	}
	if r != nil {
		be.Status, be.RequestID, org = EntryMatched, r.RequestID, r.OrgID
		res, err := tx.ExecContext(ctx, `UPDATE payments_requests SET status = $1, paid_cents = amount_cents, provider = $2, provider_payment = $3,
			updated_at = $4 WHERE id = $5 AND status = $6`, StatusPaid, ProviderBank, be.ID, now, r.RequestID, StatusOpen)
		if err != nil {
			return nil, nil, false, err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil, nil, false, fmt.Errorf("%w: request %s changed during the import", ErrState, r.RequestID)
		}
		if err := transition(ctx, tx, r.RequestID, StatusOpen, StatusPaid, e.AmountCents, ProviderBank, actor.String(), now); err != nil {
			return nil, nil, false, err
		}
		if err := post(ctx, tx, r.RequestID, "payment.bank", now, transfer(org, AccBank, AccReceivable, e.AmountCents)); err != nil {
			return nil, nil, false, err
		}
		r.Status, r.PaidCents, r.Provider = StatusPaid, r.AmountCents, ProviderBank
	} else {
		be.Status = EntryUnmatched
		// The money is in the bank either way: booked, and owed to no one
		// yet. The books are in euro cents: a credit in another currency
		// is listed for the operator but never enters them.
		if e.Currency == "EUR" {
			if err := post(ctx, tx, "", "bank.unallocated", now, transfer(org, AccBank, AccUnmatched, e.AmountCents)); err != nil {
				return nil, nil, false, err
			}
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO payments_bank_entries (id, statement_id, iban, bank_ref, amount_cents, currency, reference,
		remittance, debtor, booking_date, status, org_id, request_id, note, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		be.ID, be.StatementID, be.IBAN, be.BankRef, be.AmountCents, be.Currency, be.Reference, be.Remittance, be.Debtor, be.BookingDate,
		be.Status, org, be.RequestID, be.Note, now)
	if err != nil {
		return nil, nil, false, err
	}
	return be, r, false, nil
}

// findReference returns the structured reference if it checks, or else
// the first valid RF reference written in the free text (payers type it
// there, often with spaces).
func findReference(structured, text string) string {
	if ref, err := sepa.NormalizeReference(structured); err == nil {
		return ref
	}
	t := strings.ToUpper(text)
	for i := strings.Index(t, "RF"); i >= 0; {
		// Collect letters and digits after "RF", across single spaces,
		// and take the longest prefix that is a valid reference.
		var b strings.Builder
		for j := i; j < len(t) && b.Len() < 25; j++ {
			c := t[j]
			if c == ' ' {
				continue
			}
			if (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
				break
			}
			b.WriteByte(c)
		}
		cand := b.String()
		for n := len(cand); n >= 5; n-- {
			if ref, err := sepa.NormalizeReference(cand[:n]); err == nil {
				return ref
			}
		}
		next := strings.Index(t[i+2:], "RF")
		if next < 0 {
			break
		}
		i += 2 + next
	}
	return ""
}

func cents(c int64) string { return fmt.Sprintf("EUR %d.%02d", c/100, c%100) }

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

// BankEntries lists imported entries with the given status (operator only).
func (s *Service) BankEntries(ctx context.Context, actor Actor, status string) ([]BankEntry, error) {
	if !actor.Operator {
		return nil, fmt.Errorf("payments.entries: %w", ErrForbidden)
	}
	switch status {
	case EntryMatched, EntryUnmatched, EntryResolved:
	default:
		return nil, fmt.Errorf("payments.entries: %w", invalid("status must be matched, unmatched or resolved"))
	}
	rows, err := s.db.Query(ctx, `SELECT id, statement_id, iban, bank_ref, amount_cents, currency, reference, remittance, debtor,
		booking_date, status, request_id, note, imported_at, resolved_at FROM payments_bank_entries WHERE status = $1
		ORDER BY imported_at, id LIMIT $2`, status, MaxListLimit)
	if err != nil {
		return nil, fmt.Errorf("payments.entries: %w", err)
	}
	defer rows.Close()
	out := []BankEntry{}
	for rows.Next() {
		var e BankEntry
		var imported int64
		var resolved sql.NullInt64
		if err := rows.Scan(&e.ID, &e.StatementID, &e.IBAN, &e.BankRef, &e.AmountCents, &e.Currency, &e.Reference, &e.Remittance,
			&e.Debtor, &e.BookingDate, &e.Status, &e.RequestID, &e.Note, &imported, &resolved); err != nil {
			return nil, fmt.Errorf("payments.entries: %w", err)
		}
		e.ImportedAt = time.Unix(imported, 0).UTC()
		if resolved.Valid {
			t := time.Unix(resolved.Int64, 0).UTC()
			e.ResolvedAt = &t
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Resolve settles an unmatched entry (operator only): with a request id,
// the money pays that open request of the same amount (unallocated ←
// receivable); without, it was sent back to the payer (bank →), with note
// saying how.
func (s *Service) Resolve(ctx context.Context, actor Actor, entryID, requestID, note string) (*BankEntry, error) {
	if !actor.Operator {
		return nil, fmt.Errorf("payments.resolve: %w", ErrForbidden)
	}
	if err := checkText("note", note, 500, requestID == ""); err != nil {
		return nil, fmt.Errorf("payments.resolve: %w", err)
	}
	now := s.now().Unix()
	var r *Request
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		r = nil
		var amount int64
		var org, status, currency string
		err := tx.QueryRowContext(ctx, `SELECT amount_cents, status, org_id, currency FROM payments_bank_entries WHERE id = $1`, entryID).
			Scan(&amount, &status, &org, &currency)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("entry %s: %w", entryID, ErrNotFound)
		} else if err != nil {
			return err
		}
		if status != EntryUnmatched {
			return fmt.Errorf("%w: entry %s is %s", ErrState, entryID, status)
		}
		if requestID != "" {
			// Only a credit in the request's currency can pay it.
			res, err := tx.ExecContext(ctx, `UPDATE payments_requests SET status = $1, paid_cents = amount_cents, provider = $2, provider_payment = $3,
				updated_at = $4 WHERE id = $5 AND status = $6 AND amount_cents = $7 AND currency = $8`,
				StatusPaid, ProviderBank, entryID, now, requestID, StatusOpen, amount, currency)
			if err != nil {
				return err
			}
			if r, err = loadRequest(ctx, tx, requestID); err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("%w: request %s is %s and asks for %s %d.%02d; the entry is %s %d.%02d", ErrState, requestID, r.Status,
					r.Currency, r.AmountCents/100, r.AmountCents%100, currency, amount/100, amount%100)
			}
			if err := transition(ctx, tx, requestID, StatusOpen, StatusPaid, amount, "bank.resolve", actor.String(), now); err != nil {
				return err
			}
			if err := post(ctx, tx, requestID, "bank.resolve", now, []line{{org, AccUnmatched, amount}, {r.OrgID, AccReceivable, -amount}}); err != nil {
				return err
			}
			if note == "" {
				note = "paid request " + requestID
			}
		} else if currency == "EUR" {
			if err := post(ctx, tx, "", "bank.returned", now, transfer(org, AccUnmatched, AccBank, amount)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE payments_bank_entries SET status = $1, request_id = $2, note = $3, resolved_at = $4, resolved_by = $5
			WHERE id = $6`, EntryResolved, requestID, note, now, actor.String(), entryID); err != nil {
			return err
		}
		return audit(ctx, tx, now, actor, "entry.resolve", org, entryID, note)
	})
	if err != nil {
		return nil, wrap("payments.resolve", err)
	}
	s.announce(ctx, r)
	entries, err := s.BankEntries(ctx, actor, EntryResolved)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.ID == entryID {
			return &e, nil
		}
	}
	return nil, fmt.Errorf("payments.resolve: entry %s: %w", entryID, ErrNotFound)
}
