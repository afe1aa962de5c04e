package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
)

// encoding/json matches an object's keys to a struct's fields without
// regard to case and keeps the last of duplicate keys. Either lets one
// body mean two things — to kanal, and to a proxy, a log or another
// implementation that reads it after us — so strict decoding refuses both:
// checkKeys walks the value once more, with the type it was decoded into,
// and refuses a key that names a field only in another case, and a key
// that appears twice in one object, at any depth. Where the type says
// nothing about keys (a map, an interface, a json.RawMessage, a type with
// its own UnmarshalJSON) only duplicates are refused.
//
// The walk runs only on a body encoding/json has already decoded whole
// (one value, valid UTF-8), so it reads the bytes directly: strings and
// numbers are skipped, not decoded, and a key is compared as the bytes
// between its quotes unless it holds an escape, which is decoded by
// encoding/json itself so that two spellings of one key are one key.
// Anything the walk does not expect is reported as invalid JSON, never
// passed over.

func checkKeys(data []byte, t reflect.Type) error {
	w := walker{data: data}
	if err := w.value(t, 0); err != nil {
		return err
	}
	w.space()
	if w.i != len(w.data) {
		return w.malformed()
	}
	return nil
}

type walker struct {
	data []byte
	i    int
}

// maxDepth bounds the walk's recursion as encoding/json bounds its own.
const maxDepth = 10000

func (w *walker) malformed() error {
	return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "syntax error at byte %d", w.i)
}

func (w *walker) space() {
	for w.i < len(w.data) {
		switch w.data[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// value walks the value at w.i, which must match t.
func (w *walker) value(t reflect.Type, depth int) error {
	if depth > maxDepth {
		return w.malformed()
	}
	w.space()
	if w.i >= len(w.data) {
		return w.malformed()
	}
	switch w.data[w.i] {
	case '{':
		return w.object(keyed(t), depth)
	case '[':
		return w.array(keyed(t), depth)
	case '"':
		_, _, err := w.str()
		return err
	default:
		// A number, true, false or null: up to the next delimiter.
		start := w.i
		for w.i < len(w.data) {
			c := w.data[w.i]
			if c == ',' || c == ']' || c == '}' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			if c == '{' || c == '[' || c == '"' || c == ':' {
				return w.malformed()
			}
			w.i++
		}
		if w.i == start {
			return w.malformed()
		}
		return nil
	}
}

// str reads the string at w.i and returns the bytes between its quotes
// and whether they hold an escape.
func (w *walker) str() (raw []byte, escaped bool, err error) {
	w.i++ // the opening quote
	start := w.i
	for w.i < len(w.data) {
		switch w.data[w.i] {
		case '"':
			raw = w.data[start:w.i]
			w.i++
			return raw, escaped, nil
		case '\\':
			escaped = true
			w.i += 2
		default:
			w.i++
		}
	}
	return nil, false, w.malformed()
}

// seenKeys holds the keys of one object so far: a short list compared in
// place while an object is small, a set once it is not.
type seenKeys struct {
	few  [16][]byte
	n    int
	many map[string]struct{}
}

// add records k and reports whether it was there already.
func (s *seenKeys) add(k []byte) bool {
	if s.many != nil {
		if _, ok := s.many[string(k)]; ok {
			return true
		}
		s.many[string(k)] = struct{}{}
		return false
	}
	for _, o := range s.few[:s.n] {
		if bytes.Equal(o, k) {
			return true
		}
	}
	if s.n < len(s.few) {
		s.few[s.n] = k
		s.n++
		return false
	}
	s.many = make(map[string]struct{}, 2*len(s.few))
	for _, o := range s.few {
		s.many[string(o)] = struct{}{}
	}
	s.many[string(k)] = struct{}{}
	return false
}

func (w *walker) object(t reflect.Type, depth int) error {
	fields, elem := members(t)
	if w.open('}') {
		return nil
	}
	var seen seenKeys
	for {
		w.space()
		if w.i >= len(w.data) || w.data[w.i] != '"' {
			return w.malformed()
		}
		key, escaped, err := w.str()
		if err != nil {
			return err
		}
		if escaped {
			var s string
			if err := json.Unmarshal(w.data[w.i-len(key)-2:w.i], &s); err != nil {
				return w.malformed()
			}
			key = []byte(s)
		}
		if seen.add(key) {
			return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "key %q appears twice in one object", shortKey(string(key)))
		}
		vt := elem
		if fields != nil {
			ft, ok := fields[string(key)]
			if !ok {
				if err := otherCase(fields, string(key)); err != nil {
					return err
				}
			}
			vt = ft
		}
		w.space()
		if w.i >= len(w.data) || w.data[w.i] != ':' {
			return w.malformed()
		}
		w.i++
		if err := w.value(vt, depth+1); err != nil {
			return err
		}
		if more, err := w.next('}'); !more {
			return err
		}
	}
}

func (w *walker) array(t reflect.Type, depth int) error {
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	if w.open(']') {
		return nil
	}
	for {
		if err := w.value(elem, depth+1); err != nil {
			return err
		}
		if more, err := w.next(']'); !more {
			return err
		}
	}
}

// open steps over the bracket at w.i and reports whether the object or
// array it opens is empty (then its closing bracket is stepped over too).
func (w *walker) open(closing byte) (empty bool) {
	w.i++
	w.space()
	if w.i < len(w.data) && w.data[w.i] == closing {
		w.i++
		return true
	}
	return false
}

// next steps over what follows a member or element: a comma (more) or
// the closing bracket.
func (w *walker) next(closing byte) (more bool, err error) {
	w.space()
	switch {
	case w.i >= len(w.data):
		return false, w.malformed()
	case w.data[w.i] == ',':
		w.i++
		return true, nil
	case w.data[w.i] == closing:
		w.i++
		return false, nil
	}
	return false, w.malformed()
}

// members returns what an object's keys must match for t: a struct's
// fields, or the type of a map's values.
func members(t reflect.Type) (fields map[string]reflect.Type, elem reflect.Type) {
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = fieldsOf(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	return fields, elem
}

// otherCase refuses key, which names none of fields, if it names one in
// another case: encoding/json would have filled that field with its value.
func otherCase(fields map[string]reflect.Type, key string) error {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON",
				"unknown field %q (keys are case-sensitive: the field is %q)", shortKey(key), name)
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// keyed returns the type whose keys an object for t must match — t
// without pointers — or nil if t does its own decoding or has no fields.
func keyed(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
			return nil
		}
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
			return t
		default:
			return nil
		}
	}
	return nil
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// fieldsOf returns the JSON names of t's fields and their types, by
// encoding/json's rules: the tag's name or else the field's, "-" skipped,
// unexported fields skipped, fields of an untagged embedded struct
// promoted unless a shallower field has their name.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	var embedded []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	for _, et := range embedded {
		for name, ft := range fieldsOf(et) {
			if _, ok := m[name]; !ok {
				m[name] = ft
			}
		}
	}
	fieldCache.Store(t, m)
	return m
}

// shortKey bounds a key from the request before it goes into a message.
func shortKey(k string) string {
	if len(k) > 64 {
		return k[:64] + "…"
	}
	return k
}
