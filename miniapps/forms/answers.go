package forms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// AttachmentInfo describes a file a citizen adds: which attachment it is,
// its media type and its size in bytes (of the plaintext).
type AttachmentInfo struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
}

// FieldError is why one field's answer is refused, in German and in
// English. Field is the layout field's name ("" for the form as a whole),
// Path the JSON pointer into the answers when the error is inside a
// field's value.
type FieldError struct {
	Field string `json:"field"`
	Path  string `json:"path,omitempty"`
	DE    string `json:"de"`
	EN    string `json:"en"`
}

// AnswerErrors lists every refused field, in layout order. It wraps
// ErrAnswers.
type AnswerErrors struct {
	Fields []FieldError `json:"fields"`
}

func (e *AnswerErrors) Error() string {
	var b strings.Builder
	b.WriteString(ErrAnswers.Error())
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if f.Field != "" {
			b.WriteString(f.Field + ": ")
		}
		b.WriteString(f.EN)
	}
	return b.String()
}

func (e *AnswerErrors) Unwrap() error { return ErrAnswers }

// For returns the errors about field name.
func (e *AnswerErrors) For(name string) []FieldError {
	var out []FieldError
	for _, f := range e.Fields {
		if f.Field == name {
			out = append(out, f)
		}
	}
	return out
}

// Check validates a submission's answers (a JSON object, one member per
// answered field) and the attachments added to it. It returns nil when
// they fit the form, or an *AnswerErrors naming each refused field with
// the reason in German and English: the schema's rules, fields answered
// though hidden by their show_if, fields required by require_if and left
// out, attachments of a wrong type or size, missing or not declared.
func (t *Template) Check(answers []byte, attachments []AttachmentInfo) *AnswerErrors {
	var errs []FieldError
	add := func(field, path, de, en string) {
		fe := FieldError{Field: field, Path: path, DE: de, EN: en}
		if !slices.Contains(errs, fe) {
			errs = append(errs, fe)
		}
	}
	if len(answers) > MaxAnswers {
		add("", "", fmt.Sprintf("Die Antworten sind zu groß (höchstens %d Bytes).", MaxAnswers),
			fmt.Sprintf("The answers are too large (at most %d bytes).", MaxAnswers))
		return &AnswerErrors{errs}
	}
	if _, err := decodeValue(answers, MaxSchemaDepth); err != nil {
		add("", "", "Die Antworten sind kein gültiges JSON-Objekt.", "The answers are not a valid JSON object.")
		return &AnswerErrors{errs}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(answers))
	obj, isObj := inst.(map[string]any)
	if err != nil || !isObj {
		add("", "", "Die Antworten sind kein gültiges JSON-Objekt.", "The answers are not a valid JSON object.")
		return &AnswerErrors{errs}
	}
	if err := t.schema.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			for _, leaf := range leaves(ve) {
				schemaError(leaf, add)
			}
		} else {
			add("", "", "Die Antworten konnten nicht geprüft werden.", "The answers could not be checked.")
		}
	}
	for _, name := range t.order {
		f := t.fields[name]
		if t.atts[name] != nil {
			continue
		}
		_, answered := obj[name]
		shown := f.ShowIf == nil || f.ShowIf.holds(obj)
		if answered && !shown {
			add(name, "", "Dieses Feld wird bei Ihren Angaben nicht abgefragt; bitte leer lassen.",
				"This field is not asked given your other answers; leave it empty.")
		}
		if !answered && shown && f.RequireIf != nil && f.RequireIf.holds(obj) {
			add(name, "", "Bitte ausfüllen: bei Ihren Angaben ist dieses Feld Pflicht.",
				"Please fill in: given your other answers this field is required.")
		}
	}
	t.checkAttachmentInfos(obj, attachments, add)
	if len(errs) == 0 {
		return nil
	}
	// Layout order, the form-wide errors first.
	pos := map[string]int{"": -1}
	for i, n := range t.order {
		pos[n] = i
	}
	slices.SortStableFunc(errs, func(a, b FieldError) int {
		pa, oka := pos[a.Field]
		pb, okb := pos[b.Field]
		if !oka {
			pa = len(t.order)
		}
		if !okb {
			pb = len(t.order)
		}
		return pa - pb
	})
	return &AnswerErrors{errs}
}

func (t *Template) checkAttachmentInfos(obj map[string]any, infos []AttachmentInfo, add func(field, path, de, en string)) {
	given := map[string]bool{}
	var total int64
	for _, in := range infos {
		a := t.atts[in.Name]
		if a == nil {
			add(in.Name, "", "Dieses Formular sieht keine solche Anlage vor.", "This form has no such attachment.")
			continue
		}
		if given[in.Name] {
			add(in.Name, "", "Diese Anlage wurde mehrfach beigefügt.", "This attachment was added more than once.")
			continue
		}
		given[in.Name] = true
		f := t.fields[in.Name]
		if f.ShowIf != nil && !f.ShowIf.holds(obj) {
			add(in.Name, "", "Diese Anlage wird bei Ihren Angaben nicht verlangt; bitte weglassen.",
				"This attachment is not asked for given your answers; leave it out.")
		}
		if !slices.Contains(a.MediaTypes, in.MediaType) {
			add(in.Name, "", fmt.Sprintf("Dateityp %s ist nicht erlaubt; erlaubt: %s.", in.MediaType, strings.Join(a.MediaTypes, ", ")),
				fmt.Sprintf("File type %s is not allowed; allowed: %s.", in.MediaType, strings.Join(a.MediaTypes, ", ")))
		}
		if in.Size < 1 || in.Size > a.MaxBytes {
			add(in.Name, "", fmt.Sprintf("Die Datei muss zwischen 1 und %d Bytes groß sein.", a.MaxBytes),
				fmt.Sprintf("The file must be between 1 and %d bytes.", a.MaxBytes))
		}
		total += max(in.Size, 0)
	}
	if total > MaxHandoffTotal {
		add("", "", "Die Anlagen sind zusammen zu groß.", "The attachments are too large together.")
	}
	for _, name := range t.order {
		a := t.atts[name]
		if a == nil || given[name] {
			continue
		}
		f := t.fields[name]
		shown := f.ShowIf == nil || f.ShowIf.holds(obj)
		if shown && (a.Required || f.RequireIf != nil && f.RequireIf.holds(obj)) {
			add(name, "", "Bitte diese Anlage beifügen.", "Please add this attachment.")
		}
	}
}

// Visible returns the names of the fields shown for the answers given so
// far (a JSON object), in layout order: what a client asks next.
func (t *Template) Visible(answers []byte) []string {
	var obj map[string]any
	if inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(answers)); err == nil {
		obj, _ = inst.(map[string]any)
	}
	var out []string
	for _, name := range t.order {
		if f := t.fields[name]; f.ShowIf == nil || f.ShowIf.holds(obj) {
			out = append(out, name)
		}
	}
	return out
}

// Required reports whether field name must be answered given the answers
// so far: the schema always requires it, or its require_if holds, or it
// is a required attachment — each only while it is shown.
func (t *Template) Required(name string, answers []byte) bool {
	f := t.fields[name]
	if f == nil {
		return false
	}
	var obj map[string]any
	if inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(answers)); err == nil {
		obj, _ = inst.(map[string]any)
	}
	if f.ShowIf != nil && !f.ShowIf.holds(obj) {
		return false
	}
	if f.RequireIf != nil && f.RequireIf.holds(obj) {
		return true
	}
	if a := t.atts[name]; a != nil {
		return a.Required
	}
	var top struct {
		Required []string `json:"required"`
	}
	_ = json.Unmarshal(t.Schema, &top)
	return slices.Contains(top.Required, name)
}

// holds compares the answer to c.Field with c.Equals in canonical form.
func (c *Condition) holds(obj map[string]any) bool {
	v, ok := obj[c.Field]
	if !ok {
		return false
	}
	got, err := json.Marshal(v)
	if err != nil {
		return false
	}
	a, err1 := Canonical(got)
	b, err2 := Canonical(c.Equals)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// leaves returns the innermost errors: each says one thing about one value.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// schemaError says one schema error in German and English.
func schemaError(e *jsonschema.ValidationError, add func(field, path, de, en string)) {
	field, path := "", ""
	if len(e.InstanceLocation) > 0 {
		field = e.InstanceLocation[0]
		if len(e.InstanceLocation) > 1 {
			path = "/" + strings.Join(e.InstanceLocation, "/")
		}
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			if field == "" {
				add(m, "", "Bitte ausfüllen: Pflichtangabe.", "Please fill in: this field is required.")
			} else {
				add(field, path+"/"+m, fmt.Sprintf("Angabe %q fehlt.", m), fmt.Sprintf("%q is missing.", m))
			}
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			if field == "" {
				add(p, "", "Dieses Feld gibt es im Formular nicht.", "This form has no such field.")
			} else {
				add(field, path+"/"+p, fmt.Sprintf("Angabe %q ist nicht vorgesehen.", p), fmt.Sprintf("%q is not expected.", p))
			}
		}
	case *kind.Type:
		var de, en []string
		for _, w := range k.Want {
			d, n := typeName(w)
			de, en = append(de, d), append(en, n)
		}
		add(field, path, "Erwartet: "+strings.Join(de, " oder ")+".", "Expected: "+strings.Join(en, " or ")+".")
	case *kind.Enum, *kind.Const:
		add(field, path, "Bitte einen der vorgegebenen Werte wählen.", "Please choose one of the given values.")
	case *kind.MinLength:
		add(field, path, fmt.Sprintf("Mindestens %d Zeichen.", k.Want), fmt.Sprintf("At least %d characters.", k.Want))
	case *kind.MaxLength:
		add(field, path, fmt.Sprintf("Höchstens %d Zeichen.", k.Want), fmt.Sprintf("At most %d characters.", k.Want))
	case *kind.Pattern:
		add(field, path, "Die Angabe hat nicht das verlangte Format.", "The answer does not have the required format.")
	case *kind.Format:
		switch k.Want {
		case "date":
			add(field, path, "Bitte ein Datum als JJJJ-MM-TT angeben.", "Please give a date as YYYY-MM-DD.")
		case "email":
			add(field, path, "Bitte eine gültige E-Mail-Adresse angeben.", "Please give a valid e-mail address.")
		default:
			add(field, path, fmt.Sprintf("Die Angabe ist kein gültiges %s.", k.Want), fmt.Sprintf("The answer is not a valid %s.", k.Want))
		}
	case *kind.Minimum:
		add(field, path, fmt.Sprintf("Mindestens %s.", rat(k.Want)), fmt.Sprintf("At least %s.", rat(k.Want)))
	case *kind.ExclusiveMinimum:
		add(field, path, fmt.Sprintf("Mehr als %s.", rat(k.Want)), fmt.Sprintf("More than %s.", rat(k.Want)))
	case *kind.Maximum:
		add(field, path, fmt.Sprintf("Höchstens %s.", rat(k.Want)), fmt.Sprintf("At most %s.", rat(k.Want)))
	case *kind.ExclusiveMaximum:
		add(field, path, fmt.Sprintf("Weniger als %s.", rat(k.Want)), fmt.Sprintf("Less than %s.", rat(k.Want)))
	case *kind.MultipleOf:
		add(field, path, fmt.Sprintf("Muss ein Vielfaches von %s sein.", rat(k.Want)), fmt.Sprintf("Must be a multiple of %s.", rat(k.Want)))
	case *kind.MinItems:
		add(field, path, fmt.Sprintf("Mindestens %d Einträge.", k.Want), fmt.Sprintf("At least %d entries.", k.Want))
	case *kind.MaxItems:
		add(field, path, fmt.Sprintf("Höchstens %d Einträge.", k.Want), fmt.Sprintf("At most %d entries.", k.Want))
	case *kind.UniqueItems:
		add(field, path, "Einträge dürfen sich nicht wiederholen.", "Entries must not repeat.")
	default:
		add(field, path, "Die Angabe ist ungültig.", "The answer is not valid.")
	}
}

func typeName(t string) (de, en string) {
	switch t {
	case "string":
		return "Text", "text"
	case "integer":
		return "ganze Zahl", "a whole number"
	case "number":
		return "Zahl", "a number"
	case "boolean":
		return "Ja oder Nein", "yes or no"
	case "array":
		return "Liste", "a list"
	case "object":
		return "Gruppe von Angaben", "a group of answers"
	case "null":
		return "keine Angabe", "no answer"
	}
	return t, t
}

func rat(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	return r.FloatString(2)
}
