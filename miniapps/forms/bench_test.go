package forms

import (
	"encoding/json"
	"fmt"
	"testing"
)

// form40 is a 40-field template (four pages of ten: text with limits and
// patterns, whole numbers, dates, choices, yes/no, one shown only on a
// condition) and a full set of answers for it.
func form40(tb testing.TB) (*Template, []byte) {
	tb.Helper()
	props := map[string]any{}
	answers := map[string]any{}
	var required []string
	var pages []any
	for p := 0; p < 4; p++ {
		var fields []any
		for f := 0; f < 10; f++ {
			name := fmt.Sprintf("field_%d_%d", p, f)
			field := map[string]any{"name": name, "label": map[string]any{"de": "Feld " + name, "en": "Field " + name},
				"help": map[string]any{"de": "Hilfe", "en": "Help"}}
			switch f % 5 {
			case 0:
				props[name] = map[string]any{"type": "string", "minLength": 1, "maxLength": 100}
				answers[name] = "Musterstraße 12"
			case 1:
				props[name] = map[string]any{"type": "string", "pattern": "^[0-9]{5}$"}
				answers[name] = "64283"
			case 2:
				props[name] = map[string]any{"type": "string", "format": "date"}
				answers[name] = "2026-11-20"
			case 3:
				props[name] = map[string]any{"enum": []any{"a", "b", "c", "d"}}
				answers[name] = "c"
			case 4:
				props[name] = map[string]any{"type": "integer", "minimum": 0, "maximum": 1000}
				answers[name] = 42
			}
			if p == 3 && f == 9 {
				props[name] = map[string]any{"type": "string", "minLength": 1}
				field["show_if"] = map[string]any{"field": "field_3_3", "equals": "c"}
				field["require_if"] = map[string]any{"field": "field_3_3", "equals": "c"}
				answers[name] = "weil"
			} else {
				required = append(required, name)
			}
			fields = append(fields, field)
		}
		pages = append(pages, map[string]any{"title": map[string]any{"de": fmt.Sprintf("Seite %d", p+1), "en": fmt.Sprintf("Page %d", p+1)}, "fields": fields})
	}
	tpl := map[string]any{"format": 1, "id": "form-40", "version": "1.0.0", "org": map[string]any{"id": "amt", "name": "Amt"},
		"title":  map[string]any{"de": "Vierzig Felder", "en": "Forty fields"},
		"schema": map[string]any{"$schema": SchemaDialect, "type": "object", "additionalProperties": false, "properties": props, "required": required},
		"layout": map[string]any{"pages": pages}, "statuses": DefaultStatuses(), "processing_days": 30}
	raw, _ := json.Marshal(tpl)
	t, err := Decode(raw)
	if err != nil {
		tb.Fatal(err)
	}
	a, _ := json.Marshal(answers)
	if errs := t.Check(a, nil); errs != nil {
		tb.Fatal(errs)
	}
	return t, a
}

// BenchmarkCheck40: checking a 40-field submission's answers, as the
// citizen's device does before sending and the agent's on receipt.
func BenchmarkCheck40(b *testing.B) {
	t, answers := form40(b)
	b.ReportAllocs()
	for b.Loop() {
		if errs := t.Check(answers, nil); errs != nil {
			b.Fatal(errs)
		}
	}
}

// BenchmarkDecodeTemplate40: reading, checking and compiling a 40-field
// template, as a client does once per template version.
func BenchmarkDecodeTemplate40(b *testing.B) {
	t, _ := form40(b)
	raw := t.JSON()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandoff40: the agent's device checks a 40-field submission with
// one 100 KiB attachment and encrypts it for the specialist system
// (three JWE, RSA-OAEP-256 with a 4096-bit key, A256GCM).
func BenchmarkHandoff40(b *testing.B) {
	t, answers := form40(b)
	raw := t.JSON()
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	m["attachments"] = []any{map[string]any{"name": "scan", "media_types": []string{"application/pdf"}, "max_bytes": 1 << 20}}
	pages := m["layout"].(map[string]any)["pages"].([]any)
	page := pages[0].(map[string]any)
	page["fields"] = append(page["fields"].([]any), map[string]any{"name": "scan", "label": map[string]any{"de": "Scan", "en": "Scan"}})
	raw, _ = json.Marshal(m)
	t, err := Decode(raw)
	if err != nil {
		b.Fatal(err)
	}
	s := newSpecialist(b)
	key, err := ParseHandoffKey(jwkOf(&s.key.PublicKey, nil, s.cert), s.roots, t0)
	if err != nil {
		b.Fatal(err)
	}
	files := []HandoffFile{{Name: "scan", Filename: "scan.pdf", MediaType: "application/pdf", Content: make([]byte, 100<<10)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Handoff(key, answers, files, nil); err != nil {
			b.Fatal(err)
		}
	}
}
