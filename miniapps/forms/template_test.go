package forms

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func dog(t *testing.T) *Template {
	t.Helper()
	tpl, _, err := Builtin("hundeanmeldung")
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

const goodDog = `{"family_name":"Muster","given_name":"Erika","birth_date":"1980-02-03","street":"Hauptstr. 1","postcode":"64283",
"city":"Darmstadt","dog_name":"Bello","breed":"Labrador","sex":"male","dog_birth_date":"2024-05-01","keeping_since":"2026-11-20",
"dangerous":false,"insured":true,"insurer":"HUK","policy_number":"A-123","reduction":false,"moved_here":false}`

func TestCheckAcceptsGoodAnswers(t *testing.T) {
	if errs := dog(t).Check([]byte(goodDog), nil); errs != nil {
		t.Fatal(errs)
	}
}

// TestCheckRefusesBadAnswers: each bad answer names its field and says why
// in German and English.
func TestCheckRefusesBadAnswers(t *testing.T) {
	tpl := dog(t)
	set := func(kv ...any) []byte {
		var m map[string]any
		_ = json.Unmarshal([]byte(goodDog), &m)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		b, _ := json.Marshal(m)
		return b
	}
	for _, c := range []struct {
		name    string
		answers []byte
		atts    []AttachmentInfo
		field   string
		en      string
	}{
		{"postcode pattern", set("postcode", "6428"), nil, "postcode", "required format"},
		{"missing", set("dog_name", nil), nil, "dog_name", "required"},
		{"wrong type", set("dangerous", "ja"), nil, "dangerous", "yes or no"},
		{"bad date", set("birth_date", "03.02.1980"), nil, "birth_date", "YYYY-MM-DD"},
		{"enum", set("sex", "other"), nil, "sex", "given values"},
		{"unknown field", set("shoe_size", 42), nil, "shoe_size", "no such field"},
		{"hidden answered", set("previous_municipality", "Mainz"), nil, "previous_municipality", "not asked"},
		{"require_if", set("moved_here", true), nil, "previous_municipality", "required"},
		{"require_if insurer", set("insurer", nil), nil, "insurer", "required"},
		{"attachment required", set("dangerous", true), nil, "competence_proof", "add this attachment"},
		{"attachment type", set("dangerous", true), []AttachmentInfo{{"competence_proof", "text/html", 10}}, "competence_proof", "not allowed"},
		{"attachment size", set("dangerous", true), []AttachmentInfo{{"competence_proof", "application/pdf", 6 << 20}}, "competence_proof", "between 1 and"},
		{"attachment unknown", []byte(goodDog), []AttachmentInfo{{"selfie", "image/jpeg", 10}}, "selfie", "no such attachment"},
		{"attachment hidden", []byte(goodDog), []AttachmentInfo{{"reduction_proof", "image/jpeg", 10}}, "reduction_proof", "not asked for"},
		{"not an object", []byte(`[1]`), nil, "", "not a valid JSON object"},
		{"duplicate member", []byte(`{"city":"a","city":"b"}`), nil, "", "not a valid JSON object"},
		{"too large", bytes.Repeat([]byte(" "), MaxAnswers+1), nil, "", "too large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			errs := tpl.Check(c.answers, c.atts)
			if errs == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(errs, ErrAnswers) {
				t.Fatalf("%v does not wrap ErrAnswers", errs)
			}
			var hit bool
			for _, fe := range errs.Fields {
				if fe.Field == c.field && strings.Contains(fe.EN, c.en) {
					hit = true
					if fe.DE == "" || fe.DE == fe.EN {
						t.Errorf("no German reason: %+v", fe)
					}
				}
			}
			if !hit {
				t.Fatalf("want %s: %q, got %+v", c.field, c.en, errs.Fields)
			}
		})
	}
}

func TestVisibleAndRequired(t *testing.T) {
	tpl := dog(t)
	v := strings.Join(tpl.Visible([]byte(`{"moved_here":true}`)), ",")
	if !strings.Contains(v, "previous_municipality") || strings.Contains(v, "insurer") {
		t.Fatalf("visible: %s", v)
	}
	if !tpl.Required("previous_municipality", []byte(`{"moved_here":true}`)) || tpl.Required("phone", nil) || !tpl.Required("city", nil) {
		t.Fatal("required")
	}
}

func TestHashIsCanonical(t *testing.T) {
	_, raw, _ := Builtin("hundeanmeldung")
	a, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	// The same template with other whitespace and member order has the same hash.
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	again, _ := json.MarshalIndent(m, "", "\t")
	b, err := Decode(again)
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash() != b.Hash() || !validHash(a.Hash()) {
		t.Fatalf("%s != %s", a.Hash(), b.Hash())
	}
	if !bytes.Equal(a.JSON(), b.JSON()) || HashOf(a.JSON()) != a.Hash() {
		t.Fatal("canonical JSON differs")
	}
	c, _ := Decode(bytes.Replace(raw, []byte(`"processing_days": 14`), []byte(`"processing_days": 15`), 1))
	if c == nil || c.Hash() == a.Hash() {
		t.Fatal("a changed template keeps its hash")
	}
}

// TestCanonicalVectors: RFC 8785's number and string rules.
func TestCanonicalVectors(t *testing.T) {
	for in, want := range map[string]string{
		`{"b":1,"a":[1.0,1e21,1e-7,-0,0.000001,"\u20ac\n\u0001"]}`:          `{"a":[1,1e+21,1e-7,0,0.000001,"€\n\u0001"],"b":1}`,
		`{"\u20ac":1,"\r":2,"1":3,"\u00e4":4}`:                              `{"\r":2,"1":3,"ä":4,"€":1}`,
		`[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001]`: `[333333333.3333333,1e+30,4.5,0.002,1e-27]`,
		`"<>&"`: `"<>&"`,
	} {
		got, err := Canonical([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("%s: got %s (%v), want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `1e400`, `{} {}`, "\"\xff\""} {
		if _, err := Canonical([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// TestDecodeRefusesBadTemplates: each rule of the format bites.
func TestDecodeRefusesBadTemplates(t *testing.T) {
	_, raw, _ := Builtin("hundeanmeldung")
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	schema := func(m map[string]any) map[string]any { return m["schema"].(map[string]any) }
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"unknown member": {edit(func(m map[string]any) { m["colour"] = "red" }), ErrMalformed},
		"trailing":       {append(append([]byte{}, raw...), []byte(" {}")...), ErrMalformed},
		"duplicate":      {bytes.Replace(raw, []byte(`"format": 1,`), []byte(`"format": 1, "format": 1,`), 1), ErrMalformed},
		"too large":      {append(bytes.Repeat([]byte(" "), MaxTemplate), raw...), ErrMalformed},
		"format":         {edit(func(m map[string]any) { m["format"] = 2 }), ErrInvalid},
		"id":             {edit(func(m map[string]any) { m["id"] = "Hund!" }), ErrInvalid},
		"version":        {edit(func(m map[string]any) { m["version"] = "1.0" }), ErrInvalid},
		"version zero":   {edit(func(m map[string]any) { m["version"] = "01.0.0" }), ErrInvalid},
		"no english":     {edit(func(m map[string]any) { m["title"] = map[string]any{"de": "Hund", "en": ""} }), ErrInvalid},
		"control":        {edit(func(m map[string]any) { m["title"] = map[string]any{"de": "Hund\u202e", "en": "dog"} }), ErrInvalid},
		"dialect":        {edit(func(m map[string]any) { schema(m)["$schema"] = "http://json-schema.org/draft-07/schema#" }), ErrInvalid},
		"open schema":    {edit(func(m map[string]any) { delete(schema(m), "additionalProperties") }), ErrInvalid},
		"remote ref": {edit(func(m map[string]any) {
			schema(m)["properties"].(map[string]any)["city"] = map[string]any{"$ref": "file:///etc/passwd"}
		}), ErrInvalid},
		"bad pattern": {edit(func(m map[string]any) {
			schema(m)["properties"].(map[string]any)["city"] = map[string]any{"pattern": "("}
		}), ErrInvalid},
		"field not placed":   {edit(func(m map[string]any) { schema(m)["properties"].(map[string]any)["extra"] = map[string]any{} }), ErrInvalid},
		"unknown required":   {edit(func(m map[string]any) { schema(m)["required"] = []any{"nope"} }), ErrInvalid},
		"shown but required": {edit(func(m map[string]any) { schema(m)["required"] = []any{"insurer"} }), ErrInvalid},
		"fee":                {edit(func(m map[string]any) { m["fee"] = map[string]any{"amount_cents": 0, "purpose": "x"} }), ErrInvalid},
		"fee purpose": {edit(func(m map[string]any) {
			m["fee"] = map[string]any{"amount_cents": 1, "purpose": strings.Repeat("x", 141)}
		}), ErrInvalid},
		"statuses":        {edit(func(m map[string]any) { m["statuses"] = m["statuses"].([]any)[:1] }), ErrInvalid},
		"no final":        {edit(func(m map[string]any) { m["statuses"].([]any)[3].(map[string]any)["final"] = false }), ErrInvalid},
		"processing days": {edit(func(m map[string]any) { m["processing_days"] = 0 }), ErrInvalid},
		"level":           {edit(func(m map[string]any) { m["level"] = "medium" }), ErrInvalid},
		"attachment size": {edit(func(m map[string]any) {
			m["attachments"].([]any)[0].(map[string]any)["max_bytes"] = MaxAttachmentBytes + 1
		}), ErrInvalid},
		"media type": {edit(func(m map[string]any) { m["attachments"].([]any)[0].(map[string]any)["media_types"] = []any{"PDF"} }), ErrInvalid},
		"self condition": {edit(func(m map[string]any) {
			f := m["layout"].(map[string]any)["pages"].([]any)[1].(map[string]any)["fields"].([]any)[8].(map[string]any)
			f["show_if"] = map[string]any{"field": "previous_municipality", "equals": true}
		}), ErrInvalid},
		"parent hash": {edit(func(m map[string]any) {
			m["parent"] = map[string]any{"id": "hund", "version": "1.0.0", "hash": "md5:00", "ca_sha256": strings.Repeat("0", 64)}
		}), ErrInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(c.b); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestVersionOrder(t *testing.T) {
	a, _ := ParseVersion("1.2.10")
	b, _ := ParseVersion("1.10.0")
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 || a.String() != "1.2.10" {
		t.Fatal("order")
	}
	for _, bad := range []string{"", "1", "1.2", "1.2.3-rc1", "v1.2.3", "1.02.3", "1.2.-3", "1.2.99999999999"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzDecodeTemplate: Decode never panics, and what it accepts has a
// canonical form that decodes to the same hash.
func FuzzDecodeTemplate(f *testing.F) {
	for _, name := range BuiltinNames() {
		_, raw, _ := Builtin(name)
		f.Add(raw)
	}
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"schema":{"$ref":"#"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tpl, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(tpl.JSON())
		if err != nil {
			t.Fatalf("canonical form refused: %v", err)
		}
		if again.Hash() != tpl.Hash() {
			t.Fatal("hash changes through the canonical form")
		}
		_ = tpl.Check(b, nil)
	})
}

// TestBuiltinTemplates: each shipped municipal template decodes, and a
// good and a bad submission for it come out as they should.
func TestBuiltinTemplates(t *testing.T) {
	cases := map[string]struct {
		good string
		atts []AttachmentInfo
		bad  string
		want string // the field the bad answers are refused for
	}{
		"hundeanmeldung": {goodDog, nil, strings.Replace(goodDog, `"64283"`, `"6428"`, 1), "postcode"},
		"bewohnerparkausweis": {`{"family_name":"Muster","given_name":"Max","birth_date":"1990-01-01","street":"Am Markt 2","postcode":"64283","city":"Darmstadt",
"zone":"B3","main_residence":true,"plate":"DA-AB 123","vehicle_kind":"car","keeper":"employer","keeper_name":"Firma GmbH","duration_months":12}`,
			[]AttachmentInfo{{"registration", "application/pdf", 2000}, {"use_proof", "application/pdf", 1000}},
			`{"family_name":"Muster","given_name":"Max","birth_date":"1990-01-01","street":"Am Markt 2","postcode":"64283","city":"Darmstadt",
"zone":"B3","main_residence":false,"plate":"DA-AB 123","vehicle_kind":"car","keeper":"self","duration_months":12}`, "main_residence"},
		"sperrmuell": {`{"family_name":"Muster","given_name":"Max","street":"Am Markt 2","postcode":"64283","city":"Darmstadt","phone":"06151 123456",
"items":[{"item":"Sofa","count":1},{"item":"Matratze","count":2}],"volume_m3":2.5,"appliances":false,"kerbside":true}`, nil,
			`{"family_name":"Muster","given_name":"Max","street":"Am Markt 2","postcode":"64283","city":"Darmstadt","phone":"06151 123456",
"items":[{"item":"Sofa","count":0}],"volume_m3":2.5,"appliances":false,"kerbside":true}`, "items"},
	}
	if got := strings.Join(BuiltinNames(), ","); got != "bewohnerparkausweis,hundeanmeldung,sperrmuell" {
		t.Fatalf("shipped: %s", got)
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tpl, _, err := Builtin(name)
			if err != nil {
				t.Fatal(err)
			}
			if errs := tpl.Check([]byte(c.good), c.atts); errs != nil {
				t.Fatalf("good answers refused: %v", errs)
			}
			errs := tpl.Check([]byte(c.bad), c.atts)
			if errs == nil || len(errs.For(c.want)) == 0 {
				t.Fatalf("bad answers: %v, want an error for %s", errs, c.want)
			}
		})
	}
	if tpl, _, _ := Builtin("bewohnerparkausweis"); tpl.Check([]byte(cases["bewohnerparkausweis"].good), nil).For("registration") == nil {
		t.Fatal("the required registration certificate may be left out")
	}
}

// FuzzCanonical: what Canonical accepts is valid JSON meaning the same
// value, and canonical already (applying it twice changes nothing).
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":[1,2.50,"x\u0000"],"a":{"c":null}}`, `1e-7`, `"€"`, `[{},[]]`, `-0.0`, `{"\ud83d\ude00":1,"z":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Canonical(b)
		if err != nil {
			return
		}
		again, err := Canonical(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("not idempotent: %s → %s (%v)", c, again, err)
		}
		var x, y any
		if json.Unmarshal(b, &x) != nil || json.Unmarshal(c, &y) != nil {
			t.Fatalf("not JSON: %q → %q", b, c)
		}
		if !reflect.DeepEqual(x, y) { // floats compare with ==: -0 is 0, as in JCS
			t.Fatalf("meaning changed: %s → %s", b, c)
		}
	})
}
