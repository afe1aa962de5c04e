// Package camt reads ISO 20022 bank-to-customer statements (camt.053,
// versions 001.02 to 001.08) far enough to reconcile incoming SEPA credit
// transfers: per entry the amount, currency, direction, booking date, the
// bank's reference and the remittance information (structured RF creditor
// reference, or unstructured text).
//
// Parsing is strict where it matters for money: a document that is not a
// camt.053, an amount that is not a plain decimal with at most two
// fraction digits, an unknown credit/debit indicator or a statement over
// MaxSize is refused as a whole, so an import either reads every entry or
// none.
package camt

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Limits.
const (
	MaxSize    = 8 << 20 // bytes of XML
	MaxEntries = 20000
	namespace  = "urn:iso:std:iso:20022:tech:xsd:camt.053.001."
)

// Versions are the camt.053 message versions read: the document's
// namespace must be namespace + one of these, exactly.
var Versions = []string{"02", "03", "04", "05", "06", "07", "08"}

func knownNamespace(ns string) bool {
	v, ok := strings.CutPrefix(ns, namespace)
	if !ok {
		return false
	}
	for _, w := range Versions {
		if v == w {
			return true
		}
	}
	return false
}

// noDirectives reads the whole document as XML tokens and refuses any
// directive (<!DOCTYPE …>, <!ENTITY …>, in any letter case, anywhere):
// the rule is decided by the parser, not by matching bytes.
func noDirectives(data []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if d, ok := tok.(xml.Directive); ok {
			name, _, _ := strings.Cut(strings.TrimSpace(string(d)), " ")
			return fmt.Errorf("%w: document type declarations are not accepted (<!%.20s)", ErrInvalid, name)
		}
	}
}

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("camt: invalid statement")

// Statement is one account statement.
type Statement struct {
	MessageID string
	ID        string
	IBAN      string
	Entries   []Entry
}

// Entry is one booked or pending movement on the account.
type Entry struct {
	Index       int    // position in the statement, from 0
	BankRef     string // AcctSvcrRef, the bank's unique reference, if any
	AmountCents int64  // always positive
	Currency    string
	Credit      bool   // CRDT: money in; DBIT: money out
	Booked      bool   // status BOOK
	BookingDate string // YYYY-MM-DD, if given
	Reference   string // structured creditor reference (RF…), if given
	Text        string // unstructured remittance information, joined
	Debtor      string // name of the paying party, if given
	EndToEndID  string
}

// xml shapes; only the elements kanal reads are declared.
type document struct {
	XMLName    xml.Name
	Statements []struct {
		GrpHdr struct {
			MsgId string
		}
		Stmt []struct {
			Id   string
			Acct struct {
				Id struct {
					IBAN string
				}
			}
			Ntry []entry
		}
	} `xml:"BkToCstmrStmt"`
}

type entry struct {
	Amt struct {
		Value string `xml:",chardata"`
		Ccy   string `xml:"Ccy,attr"`
	}
	CdtDbtInd string
	Sts       struct {
		Value string `xml:",chardata"`
		Cd    string
	}
	BookgDt struct {
		Dt   string
		DtTm string
	}
	AcctSvcrRef string
	NtryDtls    []struct {
		TxDtls []struct {
			Refs struct {
				EndToEndId string
			}
			RltdPties struct {
				Dbtr struct {
					Nm  string
					Pty struct {
						Nm string
					}
				}
			}
			RmtInf struct {
				Ustrd []string
				Strd  []struct {
					CdtrRefInf struct {
						Ref string
					}
				}
			}
		}
	}
}

// Parse reads a camt.053 document from r, at most MaxSize bytes.
func Parse(r io.Reader) ([]Statement, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("camt: read: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxSize)
	}
	if err := noDirectives(data); err != nil {
		return nil, err
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var doc document
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// Nothing but whitespace and comments may follow the document.
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: after the document: %v", ErrInvalid, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, fmt.Errorf("%w: text after the document", ErrInvalid)
			}
		case xml.Comment, xml.ProcInst:
		default:
			return nil, fmt.Errorf("%w: content after the document", ErrInvalid)
		}
	}
	if doc.XMLName.Local != "Document" || !knownNamespace(doc.XMLName.Space) {
		return nil, fmt.Errorf("%w: not a camt.053 document of version 001.%s to 001.%s (%s %s)", ErrInvalid,
			Versions[0], Versions[len(Versions)-1], doc.XMLName.Space, doc.XMLName.Local)
	}
	if len(doc.Statements) != 1 {
		return nil, fmt.Errorf("%w: %d BkToCstmrStmt elements", ErrInvalid, len(doc.Statements))
	}
	var out []Statement
	n := 0
	for si, st := range doc.Statements[0].Stmt {
		s := Statement{MessageID: strings.TrimSpace(doc.Statements[0].GrpHdr.MsgId), ID: strings.TrimSpace(st.Id),
			IBAN: strings.ReplaceAll(strings.TrimSpace(st.Acct.Id.IBAN), " ", "")}
		if s.ID == "" || s.IBAN == "" {
			return nil, fmt.Errorf("%w: statement %d has no Id or account IBAN", ErrInvalid, si+1)
		}
		for i, e := range st.Ntry {
			if n++; n > MaxEntries {
				return nil, fmt.Errorf("%w: more than %d entries", ErrInvalid, MaxEntries)
			}
			ent, err := convert(e, i)
			if err != nil {
				return nil, fmt.Errorf("%w: statement %s entry %d: %v", ErrInvalid, s.ID, i+1, err)
			}
			s.Entries = append(s.Entries, ent)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no statement", ErrInvalid)
	}
	return out, nil
}

func convert(e entry, i int) (Entry, error) {
	out := Entry{Index: i, BankRef: strings.TrimSpace(e.AcctSvcrRef), Currency: e.Amt.Ccy}
	cents, err := ParseAmount(strings.TrimSpace(e.Amt.Value))
	if err != nil {
		return Entry{}, err
	}
	out.AmountCents = cents
	if len(out.Currency) != 3 || strings.ToUpper(out.Currency) != out.Currency {
		return Entry{}, fmt.Errorf("currency %q", out.Currency)
	}
	switch e.CdtDbtInd {
	case "CRDT":
		out.Credit = true
	case "DBIT":
	default:
		return Entry{}, fmt.Errorf("credit/debit indicator %q", e.CdtDbtInd)
	}
	// Version 02 has <Sts>BOOK</Sts>, version 08 <Sts><Cd>BOOK</Cd></Sts>.
	sts := strings.TrimSpace(e.Sts.Value)
	if e.Sts.Cd != "" {
		sts = strings.TrimSpace(e.Sts.Cd)
	}
	out.Booked = sts == "BOOK"
	switch d := strings.TrimSpace(e.BookgDt.Dt); {
	case d != "":
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			return Entry{}, fmt.Errorf("booking date %q", d)
		}
		out.BookingDate = d
	case strings.TrimSpace(e.BookgDt.DtTm) != "":
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(e.BookgDt.DtTm))
		if err != nil {
			return Entry{}, fmt.Errorf("booking time %q", e.BookgDt.DtTm)
		}
		out.BookingDate = t.Format(time.DateOnly)
	}
	var texts []string
	for _, d := range e.NtryDtls {
		for _, tx := range d.TxDtls {
			for _, s := range tx.RmtInf.Strd {
				if ref := strings.TrimSpace(s.CdtrRefInf.Ref); ref != "" && out.Reference == "" {
					out.Reference = ref
				}
			}
			for _, u := range tx.RmtInf.Ustrd {
				if u = strings.TrimSpace(u); u != "" {
					texts = append(texts, u)
				}
			}
			if out.Debtor == "" {
				out.Debtor = strings.TrimSpace(tx.RltdPties.Dbtr.Nm + tx.RltdPties.Dbtr.Pty.Nm)
			}
			if out.EndToEndID == "" && tx.Refs.EndToEndId != "NOTPROVIDED" {
				out.EndToEndID = strings.TrimSpace(tx.Refs.EndToEndId)
			}
		}
	}
	out.Text = strings.Join(texts, " ")
	return out, nil
}

// ParseAmount reads an ISO 20022 amount: digits, optionally a point and
// one or two fraction digits; no sign, no exponent, no thousands
// separators. It returns cents.
func ParseAmount(s string) (int64, error) {
	whole, frac, hasPoint := strings.Cut(s, ".")
	if whole == "" || len(whole) > 15 || hasPoint && (len(frac) == 0 || len(frac) > 2) {
		return 0, fmt.Errorf("amount %q", s)
	}
	var cents int64
	for _, c := range whole + frac {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("amount %q", s)
		}
	}
	for _, c := range whole {
		cents = cents*10 + int64(c-'0')
	}
	cents *= 100
	switch len(frac) {
	case 1:
		cents += int64(frac[0]-'0') * 10
	case 2:
		cents += int64(frac[0]-'0')*10 + int64(frac[1]-'0')
	}
	if cents == 0 {
		return 0, fmt.Errorf("amount %q is zero", s)
	}
	return cents, nil
}
