package identity

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/ca"
)

// Verified names. At the end of an eID login at level high the server,
// which sees the released attributes only then, as the relying party,
// states with the deployment notary's key: "the holder of this account
// proved with an eID at level high that they are called this". The
// statement goes to the device sealed with the attributes (eid.go) and is
// stored nowhere on the server. With the citizen's consent for an
// organisation, the device sends it end to end into the conversation with
// that organisation (messaging/client), whose agents' devices check the
// signature, that the statement is about the account of the device that
// sent it, and that it has not expired — offline, holding only the
// deployment CA. docs/levels.md specifies the bytes.
//
// The statement names no eID subject and no issuer: an office learns the
// name, not which card or provider proved it. It carries no date of birth
// and no address either: an office that needs them asks in a form.

// VerifiedNamePurpose is the notary purpose of a verified name.
const VerifiedNamePurpose = "identity.verified-name"

// VerifiedNameLifetime is how long a verified name is good for after the
// eID login that proved it. A new login (kanal eid link) makes a new one.
const VerifiedNameLifetime = 90 * 24 * time.Hour

// MaxVerifiedNameField is the longest name field, in bytes.
const MaxVerifiedNameField = 256

// maxVerifiedNameStatement bounds a statement: the header and three
// fields of MaxVerifiedNameField bytes.
const maxVerifiedNameStatement = 1024

// Errors of verified names.
var (
	ErrVerifiedNameMalformed = errors.New("identity: malformed verified-name statement")
	ErrVerifiedNameInvalid   = errors.New("identity: verified name not valid")
)

// VerifiedName is what the notary states about an account.
type VerifiedName struct {
	Account    string
	GivenName  string // may be empty when the provider released only Name
	FamilyName string
	Name       string // the full name as shown; never empty
	IssuedAt   time.Time
	ExpiresAt  time.Time
}

// VerifiedNameAttestation is a signed VerifiedName as it travels: in the
// sealed result of an eID login and, end to end, in a message of kind
// identity.verified-name. JSON members are standard base64.
type VerifiedNameAttestation struct {
	// Statement is the VerifiedName in its text form, the signed bytes.
	Statement []byte `json:"statement"`
	// Signature is the notary's Ed25519 signature of the statement for
	// VerifiedNamePurpose (identity/ca's Notary.Sign).
	Signature []byte `json:"signature"`
	// Notary is the notary certificate (DER), issued by the deployment CA.
	Notary []byte `json:"notary_certificate"`
}

const (
	verifiedNameMagic = "kanal verified-name v1"
	verifiedNameTime  = "2006-01-02T15:04:05.000Z"
)

var verifiedNameLabels = []string{"", "account", "level", "issued", "expires", "given-name", "family-name", "name"}

// Marshal returns the statement's text form, every line ending in "\n":
//
//	kanal verified-name v1
//	account <Account>
//	level high
//	issued <IssuedAt>
//	expires <ExpiresAt>
//	given-name <GivenName>
//	family-name <FamilyName>
//	name <Name>
func (v *VerifiedName) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(verifiedNameMagic + "\n")
	b.WriteString("account " + v.Account + "\n")
	b.WriteString("level high\n")
	b.WriteString("issued " + v.IssuedAt.UTC().Format(verifiedNameTime) + "\n")
	b.WriteString("expires " + v.ExpiresAt.UTC().Format(verifiedNameTime) + "\n")
	b.WriteString("given-name " + v.GivenName + "\n")
	b.WriteString("family-name " + v.FamilyName + "\n")
	b.WriteString("name " + v.Name + "\n")
	return b.Bytes()
}

// ParseVerifiedName parses a statement's text form. It accepts only the
// one form Marshal writes, so the bytes signed are the bytes read; it
// checks the form, not the signature.
func ParseVerifiedName(b []byte) (*VerifiedName, error) {
	if len(b) > maxVerifiedNameStatement {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrVerifiedNameMalformed, maxVerifiedNameStatement)
	}
	body, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no newline at the end", ErrVerifiedNameMalformed)
	}
	lines := strings.Split(string(body), "\n")
	if len(lines) != len(verifiedNameLabels) || lines[0] != verifiedNameMagic {
		return nil, fmt.Errorf("%w: want %q and %d lines", ErrVerifiedNameMalformed, verifiedNameMagic, len(verifiedNameLabels)-1)
	}
	vals := make([]string, len(lines))
	for i := 1; i < len(lines); i++ {
		v, ok := strings.CutPrefix(lines[i], verifiedNameLabels[i]+" ")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: want %q and a value", ErrVerifiedNameMalformed, i+1, verifiedNameLabels[i])
		}
		vals[i] = v
	}
	if !ca.ValidID(vals[1]) {
		return nil, fmt.Errorf("%w: account", ErrVerifiedNameMalformed)
	}
	if vals[2] != "high" {
		return nil, fmt.Errorf("%w: level %q", ErrVerifiedNameMalformed, vals[2])
	}
	issued, err := time.Parse(verifiedNameTime, vals[3])
	if err != nil {
		return nil, fmt.Errorf("%w: issued: %v", ErrVerifiedNameMalformed, err)
	}
	expires, err := time.Parse(verifiedNameTime, vals[4])
	if err != nil {
		return nil, fmt.Errorf("%w: expires: %v", ErrVerifiedNameMalformed, err)
	}
	if !expires.After(issued) {
		return nil, fmt.Errorf("%w: expires before it is issued", ErrVerifiedNameMalformed)
	}
	v := &VerifiedName{Account: vals[1], IssuedAt: issued, ExpiresAt: expires, GivenName: vals[5], FamilyName: vals[6], Name: vals[7]}
	if err := v.check(); err != nil {
		return nil, err
	}
	if !bytes.Equal(v.Marshal(), b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrVerifiedNameMalformed)
	}
	return v, nil
}

func (v *VerifiedName) check() error {
	if v.Name == "" {
		return fmt.Errorf("%w: name is empty", ErrVerifiedNameMalformed)
	}
	for _, f := range []struct{ label, v string }{{"given-name", v.GivenName}, {"family-name", v.FamilyName}, {"name", v.Name}} {
		if !verifiedNameField(f.v) {
			return fmt.Errorf("%w: %s must be at most %d bytes of UTF-8 without control or invisible characters", ErrVerifiedNameMalformed, f.label, MaxVerifiedNameField)
		}
	}
	return nil
}

// verifiedNameField reports whether s may be a name field: valid UTF-8,
// at most MaxVerifiedNameField bytes, no control, format (bidirectional
// overrides, zero-width), line or paragraph separator, private-use or
// surrogate characters, and no space at either end.
func verifiedNameField(s string) bool {
	if len(s) > MaxVerifiedNameField || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs) {
			return false
		}
	}
	return true
}

// cleanNameField brings a released name to the form a statement holds:
// runs of white space one space, none at either end; "" if anything else
// in it is not allowed.
func cleanNameField(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if !verifiedNameField(s) {
		return ""
	}
	return s
}

// attestName makes the verified name of account from the attributes an
// eID login at level high released, nil when there is no notary or no
// usable name.
func (s *Service) attestName(account string, a EIDAttributes) *VerifiedNameAttestation {
	if s.notary == nil {
		return nil
	}
	v := &VerifiedName{Account: account, GivenName: cleanNameField(a.GivenName), FamilyName: cleanNameField(a.FamilyName), Name: cleanNameField(a.Name)}
	if v.Name == "" {
		v.Name = strings.TrimSpace(v.GivenName + " " + v.FamilyName)
	}
	if v.Name == "" {
		return nil
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	v.IssuedAt, v.ExpiresAt = now, now.Add(VerifiedNameLifetime)
	st := v.Marshal()
	if _, err := ParseVerifiedName(st); err != nil {
		return nil
	}
	return &VerifiedNameAttestation{Statement: st, Signature: s.notary.Sign(VerifiedNamePurpose, st), Notary: s.notary.Certificate().Raw}
}

// Verify checks a verified name offline: the notary certificate is issued
// by one of roots (the deployment CA the verifier holds) and valid when
// the statement was issued; the signature verifies for
// VerifiedNamePurpose; the statement is about account (the account of the
// device that sent it); and it has not expired at now.
func (a *VerifiedNameAttestation) Verify(roots *x509.CertPool, account string, now time.Time) (*VerifiedName, error) {
	v, err := ParseVerifiedName(a.Statement)
	if err != nil {
		return nil, err
	}
	if err := ca.VerifyNotarized(a.Notary, roots, v.IssuedAt, VerifiedNamePurpose, a.Statement, a.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerifiedNameInvalid, err)
	}
	if v.Account != account {
		return nil, fmt.Errorf("%w: the name of account %s, sent by account %s", ErrVerifiedNameInvalid, v.Account, account)
	}
	if !now.Before(v.ExpiresAt) {
		return nil, fmt.Errorf("%w: expired at %s", ErrVerifiedNameInvalid, v.ExpiresAt.Format(time.RFC3339))
	}
	if now.Before(v.IssuedAt.Add(-5 * time.Minute)) {
		return nil, fmt.Errorf("%w: issued in the future (%s)", ErrVerifiedNameInvalid, v.IssuedAt.Format(time.RFC3339))
	}
	return v, nil
}
