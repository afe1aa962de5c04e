package kind

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind names a message kind.
type Kind string

// The kinds.
const (
	Text           Kind = "text"
	Attachment     Kind = "attachment"
	Receipt        Kind = "receipt"
	Poll           Kind = "poll"
	SurveyInvite   Kind = "survey.invite"
	Offer          Kind = "offer"
	Contract       Kind = "contract"
	PaymentRequest Kind = "payment.request"
	PaymentStatus  Kind = "payment.status"
	FormRequest    Kind = "form.request"
	FormSubmission Kind = "form.submission"
	DocumentShare  Kind = "document.share"
	// DocumentWithdrawn is written by the server: the owner of a vault
	// document withdrew its share with the recipient.
	DocumentWithdrawn Kind = "document.withdrawn"
	// CaseStatus is written by the server: a case opened by a form
	// submission changed its status.
	CaseStatus Kind = "case.status"
	// CaseNote is an organisation's internal note on a case, sent by an
	// agent to the organisation's agents only.
	CaseNote Kind = "case.note"
	// AppPost is written by the server: a message a mini-app's backend
	// posted into the conversation it was opened from (miniapps' bridge),
	// shown as coming from the app, never as an agent's message.
	AppPost Kind = "app.post"
	// GroupChange is written by the server, not by a member: it announces
	// a change of a group's membership to every member's devices.
	GroupChange Kind = "group.change"
	// DeviceChange is written by the server, not by a member: it tells an
	// account's devices that one of them changed its key.
	DeviceChange Kind = "device.change"
	// OrgChange is written by the server: it tells an organisation's
	// agents that a member left it without an admin removing them (the
	// member's account was erased).
	OrgChange Kind = "org.change"
)

// Class is what the server may know of a kind.
type Class string

const (
	ClassMessage     Class = "message"     // wakes the device, normal retention
	ClassReceipt     Class = "receipt"     // never wakes a device on its own
	ClassTransaction Class = "transaction" // offers, contracts, payments: high push urgency
)

// Body is the payload of one kind. Validate checks everything that can be
// checked without keys or network.
type Body interface {
	Kind() Kind
	Validate() error
}

// entry is one registered kind.
type entry struct {
	class Class
	new   func() Body
}

var registry = map[Kind]entry{
	Text:              {ClassMessage, func() Body { return new(TextBody) }},
	Attachment:        {ClassMessage, func() Body { return new(AttachmentBody) }},
	Receipt:           {ClassReceipt, func() Body { return new(ReceiptBody) }},
	Poll:              {ClassMessage, func() Body { return new(PollBody) }},
	SurveyInvite:      {ClassMessage, func() Body { return new(SurveyInviteBody) }},
	Offer:             {ClassTransaction, func() Body { return new(OfferBody) }},
	Contract:          {ClassTransaction, func() Body { return new(ContractBody) }},
	PaymentRequest:    {ClassTransaction, func() Body { return new(PaymentRequestBody) }},
	PaymentStatus:     {ClassTransaction, func() Body { return new(PaymentStatusBody) }},
	FormRequest:       {ClassMessage, func() Body { return new(FormRequestBody) }},
	FormSubmission:    {ClassMessage, func() Body { return new(FormSubmissionBody) }},
	DocumentShare:     {ClassMessage, func() Body { return new(DocumentShareBody) }},
	DocumentWithdrawn: {ClassMessage, func() Body { return new(DocumentWithdrawnBody) }},
	CaseStatus:        {ClassMessage, func() Body { return new(CaseStatusBody) }},
	AppPost:           {ClassMessage, func() Body { return new(AppPostBody) }},
	CaseNote:          {ClassMessage, func() Body { return new(CaseNoteBody) }},
	GroupChange:       {ClassMessage, func() Body { return new(GroupChangeBody) }},
	GroupName:         {ClassMessage, func() Body { return new(GroupNameBody) }},
	DeviceChange:      {ClassMessage, func() Body { return new(DeviceChangeBody) }},
	OrgChange:         {ClassMessage, func() Body { return new(OrgChangeBody) }},
	// A profile wakes nobody: it matters when the next message is shown.
	Profile: {ClassReceipt, func() Body { return new(ProfileBody) }},
	// Nor does a verified name; and the server cannot tell it from a
	// receipt.
	VerifiedName: {ClassReceipt, func() Body { return new(VerifiedNameBody) }},
}

// Kinds lists every registered kind.
func Kinds() []Kind {
	out := make([]Kind, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	return out
}

// ClassOf returns the class of k, or an error for an unknown kind.
func ClassOf(k Kind) (Class, error) {
	e, ok := registry[k]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownKind, k)
	}
	return e.class, nil
}

// Errors.
var (
	ErrUnknownKind = errors.New("kind: unknown kind")
	ErrInvalid     = errors.New("kind: invalid message")
)

func invalid(k Kind, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, k, fmt.Sprintf(format, args...))
}

// Message is the plaintext inside an envelope.
type Message struct {
	Version int       `json:"v"`
	Kind    Kind      `json:"kind"`
	ID      string    `json:"id"`      // the sender's message id, unique per sender
	SentAt  time.Time `json:"sent_at"` // the sender's clock
	Body    Body      `json:"-"`
}

type wire struct {
	Version int             `json:"v"`
	Kind    Kind            `json:"kind"`
	ID      string          `json:"id"`
	SentAt  time.Time       `json:"sent_at"`
	Body    json.RawMessage `json:"body"`
}

// New returns a message carrying body, validated.
func New(id string, sentAt time.Time, body Body) (*Message, error) {
	m := &Message{Version: CurrentVersion, Kind: body.Kind(), ID: id, SentAt: sentAt.UTC(), Body: body}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks the envelope fields and the body.
func (m *Message) Validate() error {
	if m.Version != CurrentVersion {
		return fmt.Errorf("%w: version %d not supported", ErrInvalid, m.Version)
	}
	if _, err := ClassOf(m.Kind); err != nil {
		return err
	}
	if m.Body == nil || m.Body.Kind() != m.Kind {
		return invalid(m.Kind, "body does not match the kind")
	}
	if err := checkID("id", m.ID); err != nil {
		return invalid(m.Kind, "%v", err)
	}
	if m.SentAt.IsZero() {
		return invalid(m.Kind, "sent_at missing")
	}
	return m.Body.Validate()
}

// Class returns the class of the message's kind.
func (m *Message) Class() Class { return registry[m.Kind].class }

// Marshal validates m and encodes it. The SDK refuses to send what does
// not validate.
func (m *Message) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(m.Body)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(wire{Version: m.Version, Kind: m.Kind, ID: m.ID, SentAt: m.SentAt, Body: body})
	if err != nil {
		return nil, err
	}
	if len(out) > MaxMessage {
		return nil, invalid(m.Kind, "encoded message is %d bytes, over %d", len(out), MaxMessage)
	}
	return out, nil
}

// Unmarshal decodes and validates a message strictly: unknown fields,
// trailing data, unknown kinds and invalid bodies are refused. The SDK
// refuses to accept what does not decode here.
func Unmarshal(data []byte) (*Message, error) {
	if len(data) > MaxMessage {
		return nil, fmt.Errorf("%w: message over %d bytes", ErrInvalid, MaxMessage)
	}
	var w wire
	if err := strict(data, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	e, ok := registry[w.Kind]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, w.Kind)
	}
	body := e.new()
	if len(w.Body) == 0 {
		return nil, invalid(w.Kind, "body missing")
	}
	if err := strict(w.Body, body); err != nil {
		return nil, invalid(w.Kind, "%v", err)
	}
	m := &Message{Version: w.Version, Kind: w.Kind, ID: w.ID, SentAt: w.SentAt, Body: body}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func strict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the value")
	}
	return nil
}

// Field checks shared by the kinds.

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

func checkID(field, v string) error {
	if !idPattern.MatchString(v) {
		return fmt.Errorf("%s must be 1..%d characters of A-Z a-z 0-9 _ . : -", field, MaxID)
	}
	return nil
}

func checkText(field, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return fmt.Errorf("%s is required", field)
	}
	if len(v) > max {
		return fmt.Errorf("%s is over %d bytes", field, max)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s is not UTF-8", field)
	}
	for _, r := range v {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return fmt.Errorf("%s contains control characters", field)
		}
	}
	return nil
}

// checkChars checks a one-line text limited in characters (Unicode code
// points), not bytes, with no control characters at all: the rule of
// EPC069-12 for a transfer's name and remittance text, which payments
// applies to the same fields when a request is created.
func checkChars(field, v string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return fmt.Errorf("%s is required", field)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not UTF-8", field)
	case utf8.RuneCountInString(v) > max:
		return fmt.Errorf("%s is over %d characters", field, max)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s contains control characters", field)
		}
	}
	return nil
}

func checkBase64(field, v string, n int) error {
	b, err := base64.StdEncoding.Strict().DecodeString(v)
	if err != nil || len(b) != n {
		return fmt.Errorf("%s must be %d bytes in standard base64", field, n)
	}
	return nil
}

func checkSHA256(field, v string) error {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != 32 || strings.ToLower(v) != v {
		return fmt.Errorf("%s must be a lower-case hex SHA-256", field)
	}
	return nil
}
