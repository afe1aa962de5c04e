package surveys

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/ca"
)

// Question kinds.
const (
	KindSingle   = "single"   // one option
	KindMultiple = "multiple" // Min..Max distinct options
	KindRanking  = "ranking"  // every option, in order of preference
	KindScale    = "scale"    // 1..5
	KindText     = "text"     // free text of at most Max bytes
)

// Modes.
const (
	ModeAnonymous = "anonymous"
	ModeNamed     = "named"
)

// Result visibility.
const (
	ResultsPublic       = "public"       // anyone, without a session
	ResultsOrganisation = "organisation" // the organisation's members
)

// Audience kinds.
const (
	AudienceLevel        = "level"        // every account at Level or above
	AudienceOrganisation = "organisation" // the members of OrgID
	AudienceConversation = "conversation" // the members of a group conversation
)

// ScaleMax is the top of a scale question; answers are 1..ScaleMax.
const ScaleMax = 5

// Definition is what an organiser signs: the whole survey. Once the survey
// has opened the server refuses any change to it.
type Definition struct {
	Version     int        `json:"version"` // 1
	SurveyID    string     `json:"survey_id"`
	OrgID       string     `json:"org_id"`
	Title       string     `json:"title"`
	Description string     `json:"description,omitempty"`
	Questions   []Question `json:"questions"`
	Audience    Audience   `json:"audience"`
	OpensAt     time.Time  `json:"opens_at"`
	ClosesAt    time.Time  `json:"closes_at"`
	Mode        string     `json:"mode"`
	Results     string     `json:"results"`
	// TokenKey is the survey's blind-signature public key (PKIX DER), made
	// by the server; anonymous surveys only.
	TokenKey []byte `json:"token_key,omitempty"`
	// TallyKey is the HPKE (X25519) public key ballots are encrypted to; its
	// private key stays with the organiser until the survey has closed.
	TallyKey []byte    `json:"tally_key"`
	SignedAt time.Time `json:"signed_at"`
}

// Question is one question of a survey.
type Question struct {
	Kind     string   `json:"kind"`
	Prompt   string   `json:"prompt"`
	Options  []string `json:"options,omitempty"`
	Min      int      `json:"min,omitempty"` // multiple: fewest choices
	Max      int      `json:"max,omitempty"` // multiple: most choices; text: most bytes
	Optional bool     `json:"optional,omitempty"`
}

// Audience says who may answer.
type Audience struct {
	Kind           string   `json:"kind"`
	Level          ca.Level `json:"level,omitempty"`
	OrgID          string   `json:"org_id,omitempty"`
	ConversationID string   `json:"conversation_id,omitempty"`
}

// Validate checks a definition's shape: texts, questions, audience, dates
// and keys. It does not check the signature (see Verify).
func (d *Definition) Validate() error { return d.validate(true) }

// ValidateDraft checks what an organiser's file decides — texts,
// questions, audience, dates, mode, results — before the survey exists:
// everything Validate checks except the survey id, the keys and the
// signing time, which come with the draft. A client runs it (and checks
// that closes_at is in the future) before it creates the server's draft,
// so that a bad file leaves nothing behind.
func (d *Definition) ValidateDraft() error { return d.validate(false) }

func (d *Definition) validate(full bool) error {
	if d.Version != 1 {
		return invalidf("version must be 1")
	}
	if (full && !ca.ValidID(d.SurveyID)) || !ca.ValidID(d.OrgID) {
		return invalidf("survey_id and org_id must be kanal ids")
	}
	if err := checkText("title", d.Title, MaxTitle, true); err != nil {
		return err
	}
	if err := checkText("description", d.Description, MaxDescription, false); err != nil {
		return err
	}
	if len(d.Questions) == 0 || len(d.Questions) > MaxQuestions {
		return invalidf("a survey has 1..%d questions", MaxQuestions)
	}
	for i := range d.Questions {
		if err := d.Questions[i].validate(); err != nil {
			return fmt.Errorf("question %d: %w", i+1, err)
		}
	}
	if err := d.Audience.validate(); err != nil {
		return err
	}
	if d.OpensAt.IsZero() || d.ClosesAt.IsZero() || !d.ClosesAt.After(d.OpensAt) {
		return invalidf("closes_at must be after opens_at")
	}
	if d.ClosesAt.Sub(d.OpensAt) > MaxDuration {
		return invalidf("a survey is open for at most %v", MaxDuration)
	}
	if full && d.SignedAt.IsZero() {
		return invalidf("signed_at is required")
	}
	switch d.Mode {
	case ModeAnonymous:
		if !full {
			break
		}
		if _, err := ParseTokenKey(d.TokenKey); err != nil {
			return err
		}
	case ModeNamed:
		if len(d.TokenKey) != 0 {
			return invalidf("a named survey has no token_key")
		}
	default:
		return invalidf("mode must be anonymous or named")
	}
	if d.Results != ResultsPublic && d.Results != ResultsOrganisation {
		return invalidf("results must be public or organisation")
	}
	if !full {
		return nil
	}
	if _, err := ecdh.X25519().NewPublicKey(d.TallyKey); err != nil {
		return invalidf("tally_key must be an X25519 public key")
	}
	return nil
}

func (q *Question) validate() error {
	if err := checkText("prompt", q.Prompt, MaxPrompt, true); err != nil {
		return err
	}
	switch q.Kind {
	case KindSingle, KindMultiple, KindRanking:
		if len(q.Options) < 2 || len(q.Options) > MaxOptions {
			return invalidf("%s has 2..%d options", q.Kind, MaxOptions)
		}
		seen := map[string]bool{}
		for _, o := range q.Options {
			if err := checkText("option", o, MaxOptionLabel, true); err != nil {
				return err
			}
			if seen[o] {
				return invalidf("option %q given twice", o)
			}
			seen[o] = true
		}
	case KindScale, KindText:
		if len(q.Options) != 0 {
			return invalidf("%s has no options", q.Kind)
		}
	default:
		return invalidf("kind must be single, multiple, ranking, scale or text")
	}
	switch q.Kind {
	case KindMultiple:
		if q.Min < 0 || q.Max < 1 || q.Min > q.Max || q.Max > len(q.Options) {
			return invalidf("multiple needs 0 <= min <= max <= options, max >= 1")
		}
	case KindText:
		if q.Min != 0 || q.Max < 1 || q.Max > MaxTextAnswer {
			return invalidf("text needs max 1..%d and no min", MaxTextAnswer)
		}
	default:
		if q.Min != 0 || q.Max != 0 {
			return invalidf("%s takes no min or max", q.Kind)
		}
	}
	return nil
}

func (a *Audience) validate() error {
	switch a.Kind {
	case AudienceLevel:
		if a.Level < ca.LevelLow || a.Level > ca.LevelHigh || a.OrgID != "" || a.ConversationID != "" {
			return invalidf("a level audience names only a level (low, substantial, high)")
		}
	case AudienceOrganisation:
		if !ca.ValidID(a.OrgID) || a.Level != 0 || a.ConversationID != "" {
			return invalidf("an organisation audience names only org_id")
		}
	case AudienceConversation:
		if !ca.ValidID(a.ConversationID) || a.Level != 0 || a.OrgID != "" {
			return invalidf("a conversation audience names only conversation_id")
		}
	default:
		return invalidf("audience kind must be level, organisation or conversation")
	}
	return nil
}

func checkText(field, s string, max int, required bool) error {
	if required && strings.TrimSpace(s) == "" {
		return invalidf("%s is required", field)
	}
	if len(s) > max || !utf8.ValidString(s) {
		return invalidf("%s must be valid UTF-8 of at most %d bytes", field, max)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r < 0xa0 {
			return invalidf("%s must not contain control characters", field)
		}
	}
	return nil
}

// Roles that may organise a survey for their organisation.
var organiserRoles = map[string]bool{"owner": true, "admin": true, "organiser": true}

// MayOrganise reports whether a member with role may create surveys.
func MayOrganise(role string) bool { return organiserRoles[role] }

// Signed is a signed survey definition as it is stored, served and kept in
// a file: the exact definition bytes, the organiser's signature over them,
// and the certificates that chain the signing device to the organisation
// and the deployment CA.
type Signed struct {
	Definition   json.RawMessage `json:"definition"`
	Signature    []byte          `json:"signature"`
	Device       []byte          `json:"device_certificate"`
	Membership   []byte          `json:"membership_certificate"`
	Organisation []byte          `json:"organisation_certificate"`
}

// definitionContext separates definition signatures from anything else a
// device key signs (login challenges, identity bindings).
const definitionContext = "kanal survey definition v1\x00"

// Sign encodes d and signs it with the organiser's device key, attaching
// the device, membership and organisation certificates (DER).
func Sign(d *Definition, key crypto.Signer, device, membership, organisation []byte) (*Signed, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("surveys.sign: %w", err)
	}
	body, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("surveys.sign: %w", err)
	}
	sig, err := signDevice(key, append([]byte(definitionContext), body...))
	if err != nil {
		return nil, fmt.Errorf("surveys.sign: %w", err)
	}
	return &Signed{Definition: body, Signature: sig, Device: device, Membership: membership, Organisation: organisation}, nil
}

func signDevice(key crypto.Signer, msg []byte) ([]byte, error) {
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		digest := sha256.Sum256(msg)
		return key.Sign(rand.Reader, digest[:], crypto.SHA256)
	default:
		return nil, errors.New("device key must be ECDSA P-256 or Ed25519")
	}
}

func verifyDevice(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		digest := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, digest[:], sig)
	}
	return false
}

// Signer is who signed a definition, as its certificates say.
type Signer struct {
	AccountID string
	DeviceID  string
	OrgID     string
	OrgName   string
	Role      string
}

// Verify checks a signed definition offline against the deployment CA:
// the device and membership certificates chain to roots and were valid
// when the definition says it was signed, name the same device, the
// membership is that of a council member allowed to organise, of the
// organisation the definition names, and the signature verifies. It
// returns the definition and its signer. Revocation is not checked here:
// the server checks the signer's current role when it accepts the
// definition, and a client may check the CRLs.
func Verify(s *Signed, roots *x509.CertPool) (*Definition, Signer, error) {
	// The signature covers the compact encoding; a file that was
	// pretty-printed since verifies the same.
	var compact bytes.Buffer
	if err := json.Compact(&compact, s.Definition); err != nil {
		return nil, Signer{}, fmt.Errorf("surveys.verify: definition: %w", err)
	}
	body := compact.Bytes()
	var d Definition
	if err := strictJSON(body, &d); err != nil {
		return nil, Signer{}, fmt.Errorf("surveys.verify: definition: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, Signer{}, fmt.Errorf("surveys.verify: %w", err)
	}
	dev, err := ca.VerifyDevice(s.Device, roots, d.SignedAt)
	if err != nil {
		return nil, Signer{}, fmt.Errorf("surveys.verify: device certificate: %w: %w", ErrBadSignature, err)
	}
	m, err := ca.VerifyMembership(s.Membership, s.Organisation, roots, d.SignedAt)
	if err != nil {
		return nil, Signer{}, fmt.Errorf("surveys.verify: membership certificate: %w: %w", ErrBadSignature, err)
	}
	if err := ca.CheckSameDevice(dev, m); err != nil {
		return nil, Signer{}, fmt.Errorf("surveys.verify: %w: %w", ErrBadSignature, err)
	}
	if m.OrgKind != ca.OrgCouncil || !MayOrganise(m.Role) {
		return nil, Signer{}, fmt.Errorf("surveys.verify: %w: signed by a %s of a %s, not a council's organiser", ErrBadSignature, m.Role, m.OrgKind)
	}
	if m.OrgID != d.OrgID {
		return nil, Signer{}, fmt.Errorf("surveys.verify: %w: signed for organisation %s, names %s", ErrBadSignature, m.OrgID, d.OrgID)
	}
	if !verifyDevice(dev.PublicKey, append([]byte(definitionContext), body...), s.Signature) {
		return nil, Signer{}, fmt.Errorf("surveys.verify: %w", ErrBadSignature)
	}
	return &d, Signer{AccountID: m.AccountID, DeviceID: m.DeviceID, OrgID: m.OrgID, OrgName: m.OrgName, Role: m.Role}, nil
}

// strictJSON decodes exactly one value with unknown fields rejected.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// ParseTokenKey parses a survey's blind-signature public key.
func ParseTokenKey(der []byte) (*rsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, invalidf("token_key must be a PKIX RSA public key")
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != TokenKeyBits {
		return nil, invalidf("token_key must be a %d-bit RSA key", TokenKeyBits)
	}
	return pub, nil
}
