package forms

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FormatVersion is the version of the template format this package reads.
const FormatVersion = 1

// SchemaDialect is the only JSON Schema dialect a template's schema may use.
const SchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// Template is one version of a form template. docs/forms.md describes
// every member; Decode checks every rule written there.
type Template struct {
	Format         int             `json:"format"`                // FormatVersion
	ID             string          `json:"id"`                    // lowercase letters, digits, "-"; 3 to 64
	Version        string          `json:"version"`               // MAJOR.MINOR.PATCH
	Org            OrgRef          `json:"org"`                   // the authoring organisation; must be the signer's
	Title          Text            `json:"title"`                 // shown in the catalogue and above the form
	Description    *Text           `json:"description,omitempty"` // what the form is for
	Schema         json.RawMessage `json:"schema"`                // JSON Schema 2020-12 of the answers object
	Layout         Layout          `json:"layout"`
	Attachments    []Attachment    `json:"attachments,omitempty"`
	Fee            *Fee            `json:"fee,omitempty"`
	Statuses       []Status        `json:"statuses"`        // the office's case statuses; the first is where a case starts
	ProcessingDays int             `json:"processing_days"` // the office's processing time, 1 to 366 days
	Level          string          `json:"level,omitempty"` // "", "low", "substantial" or "high": the citizen's level of assurance needed
	Parent         *Parent         `json:"parent,omitempty"`

	schema *jsonschema.Schema
	fields map[string]*Field // layout fields by name
	props  map[string]bool   // schema properties
	atts   map[string]*Attachment
	order  []string // field names in layout order
	hash   string
}

// OrgRef names an organisation as its certificate does.
type OrgRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Text is a text in German and English; both are required.
type Text struct {
	DE string `json:"de"`
	EN string `json:"en"`
}

// Layout is how a client shows the form: pages of fields, in order.
type Layout struct {
	Pages []Page `json:"pages"`
}

// Page is one step of the form.
type Page struct {
	Title  Text    `json:"title"`
	Fields []Field `json:"fields"`
}

// Field places one schema property or one attachment on a page.
type Field struct {
	Name      string     `json:"name"` // a property of the schema or an attachment's name
	Label     Text       `json:"label"`
	Help      *Text      `json:"help,omitempty"`
	ShowIf    *Condition `json:"show_if,omitempty"`    // shown (and answerable) only when it holds
	RequireIf *Condition `json:"require_if,omitempty"` // required when it holds (and the field is shown)
}

// Condition holds when the answer to Field equals Equals (JSON values
// compared in their canonical form). An unanswered field equals nothing.
type Condition struct {
	Field  string          `json:"field"`
	Equals json.RawMessage `json:"equals"`
}

// Attachment declares a file the citizen may or must add.
type Attachment struct {
	Name       string   `json:"name"`
	MediaTypes []string `json:"media_types"` // e.g. "application/pdf", "image/jpeg"
	MaxBytes   int64    `json:"max_bytes"`
	Required   bool     `json:"required,omitempty"` // required whenever its field is shown
}

// Fee is what a submission costs: a payment request for it is made on submit.
type Fee struct {
	AmountCents int64  `json:"amount_cents"`
	Purpose     string `json:"purpose"` // the payment's remittance text, at most 140 characters
}

// Status is one of the office's case statuses.
type Status struct {
	ID    string `json:"id"`
	Label Text   `json:"label"`
	Final bool   `json:"final,omitempty"` // a case in a final status is closed
}

// Parent names the template version a fork or a new version derives from.
type Parent struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Hash    string `json:"hash"`      // the parent's Hash
	CA      string `json:"ca_sha256"` // hex SHA-256 of the DER CA certificate the parent's signature chains to
}

// DefaultStatuses are the statuses of the case lifecycle kanal's case
// inbox knows: received → in progress → needs information → decided.
func DefaultStatuses() []Status {
	return []Status{
		{ID: "received", Label: Text{"Eingegangen", "Received"}},
		{ID: "in_progress", Label: Text{"In Bearbeitung", "In progress"}},
		{ID: "needs_information", Label: Text{"Rückfrage", "Needs information"}},
		{ID: "decided", Label: Text{"Entschieden", "Decided"}, Final: true},
	}
}

// Decode reads a template strictly — one JSON object, no unknown or
// duplicate members, at most MaxTemplate bytes — checks every rule of the
// format and compiles its schema.
func Decode(b []byte) (*Template, error) {
	if len(b) > MaxTemplate {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMalformed, len(b), MaxTemplate)
	}
	// decodeValue refuses duplicate members, invalid UTF-8 and deep
	// nesting, which encoding/json would let through.
	if _, err := decodeValue(b, MaxSchemaDepth+8); err != nil {
		return nil, err
	}
	var t Template
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	return &t, nil
}

// JSON returns the template's canonical JSON (RFC 8785): the bytes that
// are signed and hashed.
func (t *Template) JSON() []byte {
	b, err := t.canonical()
	if err != nil {
		panic("forms: a checked template has no canonical form: " + err.Error()) // Decode made sure it has
	}
	return b
}

func (t *Template) canonical() ([]byte, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return Canonical(raw)
}

// Hash is the template version's identity: "sha256:" and the hex SHA-256
// of its canonical JSON.
func (t *Template) Hash() string { return t.hash }

// HashOf returns "sha256:" and the hex SHA-256 of b.
func HashOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// Fields returns the names of the layout's fields in order.
func (t *Template) Fields() []string { return append([]string(nil), t.order...) }

// Field returns the layout field called name.
func (t *Template) Field(name string) (*Field, bool) { f, ok := t.fields[name]; return f, ok }

// Attachment returns the attachment called name.
func (t *Template) Attachment(name string) (*Attachment, bool) { a, ok := t.atts[name]; return a, ok }

// IsAttachment reports whether the field called name is an attachment.
func (t *Template) IsAttachment(name string) bool { return t.atts[name] != nil }

// Status returns the case status called id.
func (t *Template) Status(id string) (Status, bool) {
	for _, s := range t.Statuses {
		if s.ID == id {
			return s, true
		}
	}
	return Status{}, false
}

// PropertySchema returns the schema of the answer to field name as JSON,
// for a client that renders it (type, enum, format, limits).
func (t *Template) PropertySchema(name string) json.RawMessage {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(t.Schema, &s)
	return s.Properties[name]
}

// check enforces the format's rules; it fills the unexported indexes.
func (t *Template) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if t.Format != FormatVersion {
		return bad("format %d, this kanal reads %d", t.Format, FormatVersion)
	}
	if !validSlug(t.ID, 3) {
		return bad("id %q: 3 to %d lowercase letters, digits and '-'", t.ID, MaxIDLength)
	}
	if _, err := ParseVersion(t.Version); err != nil {
		return err
	}
	if !validOrgID(t.Org.ID) {
		return bad("org.id %q", t.Org.ID)
	}
	if err := checkText("org.name", t.Org.Name, MaxLabel, true); err != nil {
		return bad("%v", err)
	}
	if err := t.Title.check("title", MaxLabel, true); err != nil {
		return bad("%v", err)
	}
	if t.Description != nil {
		if err := t.Description.check("description", MaxHelp, true); err != nil {
			return bad("%v", err)
		}
	}
	if t.ProcessingDays < 1 || t.ProcessingDays > MaxProcessingDays {
		return bad("processing_days %d: 1 to %d", t.ProcessingDays, MaxProcessingDays)
	}
	switch t.Level {
	case "", "low", "substantial", "high":
	default:
		return bad("level %q: \"\", low, substantial or high", t.Level)
	}
	if t.Fee != nil {
		if t.Fee.AmountCents < 1 || t.Fee.AmountCents > MaxFeeCents {
			return bad("fee.amount_cents %d: 1 to %d", t.Fee.AmountCents, MaxFeeCents)
		}
		if err := checkText("fee.purpose", t.Fee.Purpose, MaxPurpose, true); err != nil {
			return bad("%v", err)
		}
		if strings.Contains(t.Fee.Purpose, "\n") {
			return bad("fee.purpose is one line")
		}
	}
	if err := t.checkStatuses(); err != nil {
		return err
	}
	if p := t.Parent; p != nil {
		if !validSlug(p.ID, 3) {
			return bad("parent.id %q", p.ID)
		}
		if _, err := ParseVersion(p.Version); err != nil {
			return bad("parent.version: %v", err)
		}
		if !validHash(p.Hash) {
			return bad("parent.hash %q is not sha256: and 64 lowercase hex digits", p.Hash)
		}
		if len(p.CA) != 64 || strings.Trim(p.CA, "0123456789abcdef") != "" {
			return bad("parent.ca_sha256 is not 64 lowercase hex digits")
		}
		if p.ID == t.ID && p.Version == t.Version {
			return bad("a template is not its own parent")
		}
	}
	if err := t.compileSchema(); err != nil {
		return err
	}
	if err := t.checkAttachments(); err != nil {
		return err
	}
	if err := t.checkLayout(); err != nil {
		return err
	}
	c, err := t.canonical()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	t.hash = HashOf(c)
	return nil
}

func (t *Template) checkStatuses() error {
	if len(t.Statuses) < 2 || len(t.Statuses) > MaxStatuses {
		return fmt.Errorf("%w: statuses: 2 to %d", ErrInvalid, MaxStatuses)
	}
	seen := map[string]bool{}
	final := false
	for i, s := range t.Statuses {
		if !validName(s.ID) || seen[s.ID] {
			return fmt.Errorf("%w: status %d: id %q missing, malformed or repeated", ErrInvalid, i+1, s.ID)
		}
		seen[s.ID] = true
		if err := s.Label.check("status "+s.ID+" label", MaxLabel, true); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if s.Final && i == 0 {
			return fmt.Errorf("%w: the first status, where a case starts, cannot be final", ErrInvalid)
		}
		final = final || s.Final
	}
	if !final {
		return fmt.Errorf("%w: statuses: at least one must be final", ErrInvalid)
	}
	return nil
}

// refuseLoader refuses every reference outside the template: a schema
// cannot make the validator read a file or the network.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("a template's schema refers only to itself, not %s", url)
}

const schemaURL = "urn:kanal:form-template:schema"

func (t *Template) compileSchema() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schema: "+format, append([]any{ErrInvalid}, args...)...)
	}
	var top struct {
		Dialect              string                     `json:"$schema"`
		Type                 string                     `json:"type"`
		AdditionalProperties *bool                      `json:"additionalProperties"`
		Properties           map[string]json.RawMessage `json:"properties"`
		Required             []string                   `json:"required"`
	}
	if len(t.Schema) == 0 {
		return bad("missing")
	}
	if err := json.Unmarshal(t.Schema, &top); err != nil {
		return bad("the top level must be an object with $schema, type, properties: %v", err)
	}
	switch {
	case top.Dialect != SchemaDialect:
		return bad("$schema must be %q", SchemaDialect)
	case top.Type != "object":
		return bad("type must be \"object\"")
	case top.AdditionalProperties == nil || *top.AdditionalProperties:
		return bad("additionalProperties must be false: an answer to a question not asked is refused")
	case len(top.Properties) == 0 || len(top.Properties) > MaxFields:
		return bad("1 to %d properties", MaxFields)
	}
	t.props = map[string]bool{}
	for name := range top.Properties {
		if !validName(name) {
			return bad("property %q: 1 to %d lowercase letters, digits and '_', starting with a letter", name, MaxIDLength)
		}
		t.props[name] = true
	}
	for _, r := range top.Required {
		if !t.props[r] {
			return bad("required names %q, which is not a property", r)
		}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(t.Schema))
	if err != nil {
		return bad("%v", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(refuseLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return bad("%v", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return bad("%v", err)
	}
	t.schema = s
	return nil
}

func (t *Template) checkAttachments() error {
	if len(t.Attachments) > MaxAttachments {
		return fmt.Errorf("%w: at most %d attachments", ErrInvalid, MaxAttachments)
	}
	t.atts = map[string]*Attachment{}
	for i := range t.Attachments {
		a := &t.Attachments[i]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: attachment %q: "+format, append([]any{ErrInvalid, a.Name}, args...)...)
		}
		if !validName(a.Name) || t.atts[a.Name] != nil || t.props[a.Name] {
			return bad("name missing, malformed, repeated or also a schema property")
		}
		if a.MaxBytes < 1 || a.MaxBytes > MaxAttachmentBytes {
			return bad("max_bytes %d: 1 to %d", a.MaxBytes, MaxAttachmentBytes)
		}
		if len(a.MediaTypes) == 0 || len(a.MediaTypes) > MaxMediaTypes {
			return bad("1 to %d media_types", MaxMediaTypes)
		}
		for _, m := range a.MediaTypes {
			if !validMediaType(m) {
				return bad("media type %q: type/subtype in lowercase, no parameters", m)
			}
		}
		t.atts[a.Name] = a
	}
	return nil
}

func (t *Template) checkLayout() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: layout: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if len(t.Layout.Pages) == 0 || len(t.Layout.Pages) > MaxPages {
		return bad("1 to %d pages", MaxPages)
	}
	var required []string
	var top struct {
		Required []string `json:"required"`
	}
	_ = json.Unmarshal(t.Schema, &top)
	required = top.Required
	t.fields = map[string]*Field{}
	t.order = nil
	for pi := range t.Layout.Pages {
		p := &t.Layout.Pages[pi]
		if err := p.Title.check(fmt.Sprintf("page %d title", pi+1), MaxLabel, true); err != nil {
			return bad("%v", err)
		}
		if len(p.Fields) == 0 {
			return bad("page %d has no fields", pi+1)
		}
		for fi := range p.Fields {
			f := &p.Fields[fi]
			if !t.props[f.Name] && t.atts[f.Name] == nil {
				return bad("field %q is neither a schema property nor an attachment", f.Name)
			}
			if t.fields[f.Name] != nil {
				return bad("field %q placed twice", f.Name)
			}
			if err := f.Label.check("field "+f.Name+" label", MaxLabel, true); err != nil {
				return bad("%v", err)
			}
			if f.Help != nil {
				if err := f.Help.check("field "+f.Name+" help", MaxHelp, true); err != nil {
					return bad("%v", err)
				}
			}
			t.fields[f.Name] = f
			t.order = append(t.order, f.Name)
		}
	}
	if len(t.order) != len(t.props)+len(t.atts) {
		for name := range t.props {
			if t.fields[name] == nil {
				return bad("schema property %q is on no page", name)
			}
		}
		for name := range t.atts {
			if t.fields[name] == nil {
				return bad("attachment %q is on no page", name)
			}
		}
	}
	for _, name := range t.order {
		f := t.fields[name]
		for _, c := range []struct {
			kw   string
			cond *Condition
		}{{"show_if", f.ShowIf}, {"require_if", f.RequireIf}} {
			if c.cond == nil {
				continue
			}
			if !t.props[c.cond.Field] || c.cond.Field == name {
				return bad("field %q: %s names %q, which is not another schema property", name, c.kw, c.cond.Field)
			}
			if _, err := Canonical(c.cond.Equals); err != nil || len(c.cond.Equals) == 0 {
				return bad("field %q: %s.equals is not one JSON value", name, c.kw)
			}
		}
		if f.ShowIf != nil {
			for _, r := range required {
				if r == name {
					return bad("field %q is shown only sometimes but the schema always requires it; use require_if", name)
				}
			}
		}
	}
	return nil
}

func (x Text) check(what string, max int, required bool) error {
	if err := checkText(what+".de", x.DE, max, required); err != nil {
		return err
	}
	return checkText(what+".en", x.EN, max, required)
}

func checkText(field, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fmt.Errorf("%s is required", field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", field)
	case utf8.RuneCountInString(s) > max:
		return fmt.Errorf("%s is longer than %d characters", field, max)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x202e || r == 0x202d {
			return fmt.Errorf("%s contains a control character", field)
		}
	}
	return nil
}

// validSlug: lowercase letters, digits and '-', not at the ends.
func validSlug(s string, min int) bool {
	if len(s) < min || len(s) > MaxIDLength || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validName: a field, attachment or status name — a lowercase letter, then
// lowercase letters, digits and '_'.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength || !('a' <= s[0] && s[0] <= 'z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validOrgID is identity's rule for ids (ca.ValidID): letters, digits,
// '-', '_' and '.'.
func validOrgID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validHash(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	return ok && len(h) == 64 && strings.Trim(h, "0123456789abcdef") == ""
}

func validMediaType(m string) bool {
	typ, sub, ok := strings.Cut(m, "/")
	if !ok || typ == "" || sub == "" || len(m) > 100 {
		return false
	}
	for _, c := range []byte(typ + sub) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&-^_.+", c) >= 0) {
			return false
		}
	}
	return true
}

// Recheck returns t decoded again from its JSON, after a caller edited
// its exported members (an adapted label, a new version, a parent): every
// rule is checked again and the hash recomputed.
func (t *Template) Recheck() (*Template, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return Decode(raw)
}
