// Package epc builds the EPC QR code ("GiroCode") of a SEPA credit
// transfer: the payload of EPC069-12 (Quick Response Code: Guidelines to
// Enable Data Capture for the Initiation of a SEPA Credit Transfer),
// version 002, and a PNG or an SVG of it.
package epc

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/kanal-server/kanal/internal/qr"
	"github.com/kanal-server/kanal/payments/sepa"
)

// Limits of EPC069-12.
const (
	MaxName        = 70
	MaxAmountCents = 99999999999 // EUR 999999999.99
	MaxRemittance  = 140         // unstructured remittance information
	MaxInformation = 70          // beneficiary to originator information
	MaxPayload     = 331         // bytes, the whole payload
)

// ErrInvalid is wrapped by every validation error of Payload.
var ErrInvalid = errors.New("epc: invalid transfer")

// Transfer is one SEPA credit transfer as the QR code carries it.
type Transfer struct {
	BIC         string // optional in version 002 inside the EEA; required for other SEPA countries (sepa.BICRequired)
	Name        string // beneficiary, at most 70 characters
	IBAN        string
	AmountCents int64  // 1 .. 99999999999
	Purpose     string // optional four-letter ISO 20022 purpose code, e.g. "GDDS"
	// Exactly one of Reference (ISO 11649 RF creditor reference) and Text
	// (unstructured remittance, at most 140 characters) may be set.
	Reference   string
	Text        string
	Information string // optional note to the payer, at most 70 characters
}

// Payload returns the EPC069-12 payload of t, lines separated by LF:
//
//	BCD          service tag
//	002          version
//	1            character set: UTF-8
//	SCT          identification: SEPA credit transfer
//	BIC          optional in version 002 for EEA IBANs, required for other SEPA countries
//	name         beneficiary, ≤ 70
//	IBAN
//	EUR12.34     amount, "EUR" and at most two decimals; empty is allowed, not used here
//	purpose      optional, 4 characters
//	reference    structured (RF), ≤ 35; or empty
//	text         unstructured, ≤ 140; or empty
//	information  optional, ≤ 70
//
// Trailing empty fields are left out, as the guideline allows.
func Payload(t Transfer) (string, error) {
	if err := t.check(); err != nil {
		return "", err
	}
	lines := []string{
		"BCD", "002", "1", "SCT",
		t.BIC, t.Name, t.IBAN,
		fmt.Sprintf("EUR%d.%02d", t.AmountCents/100, t.AmountCents%100),
		t.Purpose, t.Reference, t.Text, t.Information,
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	p := strings.Join(lines, "\n")
	if len(p) > MaxPayload {
		return "", fmt.Errorf("%w: payload is %d bytes, more than %d", ErrInvalid, len(p), MaxPayload)
	}
	return p, nil
}

func (t Transfer) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if t.BIC != "" && !sepa.ValidBIC(t.BIC) {
		return bad("BIC %q is not 8 or 11 upper-case letters and digits (6 letters first)", t.BIC)
	}
	if t.BIC == "" && sepa.BICRequired(t.IBAN) {
		return bad("the BIC is required for an IBAN of %.2s, a SEPA country outside the EEA", t.IBAN)
	}
	if err := text("name", t.Name, MaxName, true); err != nil {
		return err
	}
	if iban, err := sepa.NormalizeIBAN(t.IBAN); err != nil || iban != t.IBAN {
		return bad("IBAN must be a valid IBAN without spaces")
	}
	if t.AmountCents < 1 || t.AmountCents > MaxAmountCents {
		return bad("amount must be 0.01 to 999999999.99 EUR")
	}
	if t.Purpose != "" && (len(t.Purpose) != 4 || strings.ToUpper(t.Purpose) != t.Purpose || !alnum(t.Purpose)) {
		return bad("purpose must be a four-letter code")
	}
	switch {
	case t.Reference != "" && t.Text != "":
		return bad("a reference and a text cannot both be set")
	case t.Reference != "":
		if ref, err := sepa.NormalizeReference(t.Reference); err != nil || ref != t.Reference {
			return bad("reference must be an RF creditor reference without spaces")
		}
	}
	if err := text("text", t.Text, MaxRemittance, false); err != nil {
		return err
	}
	return text("information", t.Information, MaxInformation, false)
}

// text checks a free-text field: valid UTF-8, within max characters, and
// no control characters (a line break would shift every later field).
func text(field, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, field)
	case utf8.RuneCountInString(s) > max:
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, field, max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s contains a control character", ErrInvalid, field)
		}
	}
	return nil
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// PNG renders the payload of t as a QR code image of at most size×size
// pixels (quiet zone included), with error correction level M as
// EPC069-12 requires. Every module is a whole number of pixels: a module
// stretched over a fraction of a pixel makes uneven lines that scanners
// misread.
func PNG(t Transfer, size int) ([]byte, error) {
	if size < 100 || size > 2000 {
		return nil, fmt.Errorf("%w: image size %d is not 100..2000", ErrInvalid, size)
	}
	bits, err := symbol(t)
	if err != nil {
		return nil, err
	}
	png, err := qr.PNG(bits, max(size/(len(bits)+2*QuietZone), 1))
	if err != nil {
		return nil, fmt.Errorf("epc: encode QR code: %w", err)
	}
	return png, nil
}

// symbol is the QR code of t's payload, its modules without quiet zone.
func symbol(t Transfer) ([][]bool, error) {
	p, err := Payload(t)
	if err != nil {
		return nil, err
	}
	bits, err := qr.Modules(p)
	if err != nil {
		return nil, fmt.Errorf("epc: encode QR code: %w", err)
	}
	return bits, nil
}

// QuietZone is the light border around the code, in modules: the four
// that ISO/IEC 18004 asks for.
const QuietZone = qr.QuietZone

// SVG renders the payload of t as a QR code in SVG, level M as PNG's, one
// user unit per module and a quiet zone of QuietZone modules, and returns
// the number of modules across (quiet zone included), so that a page can
// scale it by a whole number of pixels per module. The SVG is the same
// symbol as the PNG's; the web app shows it (docs/web.md). The dark
// modules are one path, a row's runs as rectangles.
func SVG(t Transfer) (svg string, modules int, err error) {
	bits, err := symbol(t)
	if err != nil {
		return "", 0, err
	}
	n := len(bits) + 2*QuietZone
	var path strings.Builder
	for y, row := range bits {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			run := 0
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&path, "M%d %dh%dv1h-%dz", x+QuietZone, y+QuietZone, run, run)
			x += run
		}
	}
	svg = fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges">`+
		`<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="%s"/></svg>`, n, n, n, n, path.String())
	return svg, n, nil
}
