package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// refCheckKeys is the key check as first written, on encoding/json's
// token stream: slower, but with nothing of its own to get wrong in
// reading JSON. FuzzCheckKeys holds checkKeys to its answers. Numbers are
// read as json.Number: as float64 the token stream refuses one past
// float64's range, which a json.RawMessage field holds without complaint.
func refCheckKeys(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return refWalk(dec, t)
}

func refWalk(dec *json.Decoder, t reflect.Type) error {
	t = keyed(t)
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		fields, elem := members(t)
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			if seen[key] {
				return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "key %q appears twice in one object", shortKey(key))
			}
			seen[key] = true
			vt := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					if err := otherCase(fields, key); err != nil {
						return err
					}
				}
				vt = ft
			}
			if err := refWalk(dec, vt); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := refWalk(dec, elem); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

type fuzzInner struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

type FuzzEmbedded struct {
	Kind string `json:"kind"`
	Ünï  string `json:"ünï"`
}

type fuzzOuter struct {
	FuzzEmbedded
	Inner  fuzzInner            `json:"inner"`
	Ptr    *fuzzInner           `json:"ptr"`
	List   []fuzzInner          `json:"list"`
	Arr    [2]fuzzInner         `json:"arr"`
	ByName map[string]fuzzInner `json:"by_name"`
	Raw    json.RawMessage      `json:"raw"`
	Any    any                  `json:"any"`
	Bytes  []byte               `json:"bytes"`
	Plain  string
}

// The types the fuzzer checks every input against: fields at every depth,
// maps, slices, a value with no type at all.
var fuzzTypes = []reflect.Type{
	reflect.TypeFor[*fuzzOuter](),
	reflect.TypeFor[*[]fuzzOuter](),
	reflect.TypeFor[*map[string]fuzzOuter](),
	reflect.TypeFor[*any](),
}

func detailOf(err error) string {
	var p *Problem
	if errors.As(err, &p) {
		return p.Detail
	}
	return ""
}

// FuzzCheckKeys compares checkKeys with refCheckKeys on every valid JSON
// value the fuzzer makes, for several types: both accept it, or both
// refuse it with the same words. (Their words differ only where the input
// is not JSON at all, which strict decoding has refused before the walk.)
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{
		`{"kind":"k","inner":{"id":"1"},"ptr":{"id":"2"},"list":[{"id":"3"}],"by_name":{"ID":{"id":"4"}},"raw":{"A":1,"a":2},"any":{"X":1,"x":2},"Plain":"u"}`,
		`{"Kind":"k"}`, `{"inner":{"ID":"1"}}`, `{"list":[{"id":"3"},{"iD":"4"}]}`,
		`{"inner":{"id":"1","id":"2"}}`, `{"raw":[{"a":{"b":1,"b":2}}]}`,
		`{"kind":"k","k\u0069nd":"k"}`, `{"\u006b\u0069nd":1}`, `{"KİND":1}`, `{"ÜNÏ":"x"}`,
		`{"a\ud800":1,"a\udc00":2}`, `{"a\"b":1,"a\"b":2}`, `{"a\\":1,"a\\\\":2}`,
		`[{"kind":"a"},{"kind":"b","kind":"c"}]`, `{"x":{"kind":1},"x":2}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"a":18}`,
		`{"arr":[{"id":"1"},{"Id":"2"}]}`, ` [ 1 , -2.5e3 , true , null , "x" ] `, `"\u00fc"`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		for _, typ := range fuzzTypes {
			got, want := checkKeys(data, typ), refCheckKeys(data, typ)
			if (got == nil) != (want == nil) || detailOf(got) != detailOf(want) {
				t.Fatalf("%s as %v: checkKeys %v, reference %v", data, typ, got, want)
			}
		}
	})
}

// Past the fuzzer's reach: an object with more keys than the short list
// holds, a duplicate among them, and nesting as deep as encoding/json
// allows.
func TestCheckKeysLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 200 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i) + `":1`)
	}
	ok := b.String() + "}"
	dup := b.String() + `,"kxxx":2}`
	typ := reflect.TypeFor[*map[string]int]()
	if err := checkKeys([]byte(ok), typ); err != nil {
		t.Fatalf("200 distinct keys: %v", err)
	}
	if d := detailOf(checkKeys([]byte(dup), typ)); d != `key "kxxx" appears twice in one object` {
		t.Fatalf("a duplicate past the short list: %q", d)
	}
	deep := strings.Repeat("[", 9999) + `{"a":1,"a":2}` + strings.Repeat("]", 9999)
	if !json.Valid([]byte(deep)) {
		t.Fatal("the deep value is not JSON")
	}
	if d := detailOf(checkKeys([]byte(deep), reflect.TypeFor[*any]())); d != `key "a" appears twice in one object` {
		t.Fatalf("a duplicate 10,000 levels deep: %q", d)
	}
}
