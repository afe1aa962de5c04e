// Package sepa checks the identifiers of SEPA credit transfers: IBANs
// (ISO 13616, MOD 97-10) and structured creditor references (ISO 11649 RF).
package sepa

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidIBAN and ErrInvalidReference are wrapped by the checks below.
var (
	ErrInvalidIBAN      = errors.New("invalid IBAN")
	ErrInvalidReference = errors.New("invalid RF creditor reference")
)

// ibanLengths are the lengths of the IBANs of the SEPA countries (ECBS /
// SWIFT IBAN registry). A payment request's creditor account must be one
// of them, since the EPC QR code only carries SEPA credit transfers.
var ibanLengths = map[string]int{
	"AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
	"EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28,
	"IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
	"NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
	"VA": 22,
}

// nonEEA are the SEPA countries outside the European Economic Area, by
// the EPC's list of SEPA scheme countries (EPC409-09) as far as their
// IBANs are accepted here (Jersey, Guernsey and the Isle of Man use GB
// IBANs). For them EPC069-12 and the SEPA rulebooks keep the BIC
// mandatory.
var nonEEA = map[string]bool{"AD": true, "CH": true, "GB": true, "GI": true, "MC": true, "SM": true, "VA": true}

// BICRequired reports whether a transfer to iban (normalised) must name
// the creditor's BIC: its country is a SEPA country outside the EEA.
func BICRequired(iban string) bool {
	return len(iban) >= 2 && nonEEA[iban[:2]]
}

// ValidBIC reports whether s has the shape of a BIC (ISO 9362): four
// letters (institution), two letters (country), two letters or digits
// (location), optionally three letters or digits (branch), upper case.
func ValidBIC(s string) bool {
	if len(s) != 8 && len(s) != 11 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter, digit := c >= 'A' && c <= 'Z', c >= '0' && c <= '9'
		if !letter && (i < 6 || !digit) {
			return false
		}
	}
	return true
}

// NormalizeIBAN removes spaces and upper-cases s, then checks it: a SEPA
// country code, that country's length, alphanumerics only, and the ISO
// 13616 checksum (the number formed by moving the first four characters to
// the end and replacing letters by 10..35 is 1 modulo 97).
func NormalizeIBAN(s string) (string, error) {
	iban := strings.ToUpper(strings.ReplaceAll(s, " ", ""))
	if len(iban) < 5 || len(iban) > 34 {
		return "", fmt.Errorf("%w: length %d", ErrInvalidIBAN, len(iban))
	}
	want, ok := ibanLengths[iban[:2]]
	if !ok {
		return "", fmt.Errorf("%w: country %q is not a SEPA country", ErrInvalidIBAN, iban[:2])
	}
	if len(iban) != want {
		return "", fmt.Errorf("%w: a %s IBAN has %d characters, not %d", ErrInvalidIBAN, iban[:2], want, len(iban))
	}
	if iban[2] < '0' || iban[2] > '9' || iban[3] < '0' || iban[3] > '9' {
		return "", fmt.Errorf("%w: check digits", ErrInvalidIBAN)
	}
	r, ok := mod97(iban[4:] + iban[:4])
	if !ok {
		return "", fmt.Errorf("%w: only letters and digits are allowed", ErrInvalidIBAN)
	}
	if r != 1 {
		return "", fmt.Errorf("%w: checksum does not match", ErrInvalidIBAN)
	}
	return iban, nil
}

// mod97 computes the ISO 7064 MOD 97-10 remainder of s with letters
// replaced by 10..35, digit by digit so that no big integers are needed.
// It reports false for a character that is neither a digit nor A-Z.
func mod97(s string) (int, bool) {
	r := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			r = (r*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			r = (r*100 + int(c-'A') + 10) % 97
		default:
			return 0, false
		}
	}
	return r, true
}

// NewReference makes an ISO 11649 creditor reference from body (1 to 21
// letters and digits): "RF", two check digits, body. The check digits make
// body + "RF" + digits equal 1 modulo 97, as for an IBAN.
func NewReference(body string) (string, error) {
	body = strings.ToUpper(body)
	if len(body) < 1 || len(body) > 21 {
		return "", fmt.Errorf("%w: body must be 1 to 21 characters", ErrInvalidReference)
	}
	r, ok := mod97(body + "RF00")
	if !ok {
		return "", fmt.Errorf("%w: only letters and digits are allowed", ErrInvalidReference)
	}
	return fmt.Sprintf("RF%02d%s", 98-r, body), nil
}

// NormalizeReference removes spaces, upper-cases s and checks it as an ISO
// 11649 creditor reference.
func NormalizeReference(s string) (string, error) {
	ref := strings.ToUpper(strings.ReplaceAll(s, " ", ""))
	if len(ref) < 5 || len(ref) > 25 || !strings.HasPrefix(ref, "RF") {
		return "", fmt.Errorf("%w: must be RF, two check digits and 1 to 21 characters", ErrInvalidReference)
	}
	if ref[2] < '0' || ref[2] > '9' || ref[3] < '0' || ref[3] > '9' {
		return "", fmt.Errorf("%w: check digits", ErrInvalidReference)
	}
	r, ok := mod97(ref[4:] + ref[:4])
	if !ok {
		return "", fmt.Errorf("%w: only letters and digits are allowed", ErrInvalidReference)
	}
	if r != 1 {
		return "", fmt.Errorf("%w: checksum does not match", ErrInvalidReference)
	}
	return ref, nil
}
