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

func checkKeys(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	return walkValue(dec, t)
}

func walkValue(dec *json.Decoder, t reflect.Type) error {
	t = keyed(t)
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = fieldsOf(t)
		} else if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
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
					for name := range fields {
						if strings.EqualFold(name, key) {
							return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON",
								"unknown field %q (keys are case-sensitive: the field is %q)", shortKey(key), name)
						}
					}
				}
				vt = ft
			}
			if err := walkValue(dec, vt); err != nil {
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
			if err := walkValue(dec, elem); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
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
