package forms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical returns the RFC 8785 (JSON Canonicalization Scheme) form of
// the JSON value b: object members sorted by their names' UTF-16 code
// units, no insignificant whitespace, numbers as ECMAScript prints them,
// strings with only the escapes JCS demands. A member named twice, a
// number outside IEEE 754 double range, invalid UTF-8 or trailing data is
// refused: a value that has no single canonical form has no hash.
func Canonical(b []byte) ([]byte, error) {
	v, err := decodeValue(b, MaxSchemaDepth+8)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := writeCanonical(&out, v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// member is one object member in received order (duplicates are refused
// while decoding).
type member struct {
	name  string
	value any
}

// decodeValue reads exactly one JSON value into nil, bool, json.Number,
// string, []any or []member, refusing duplicate names and nesting deeper
// than depth.
func decodeValue(b []byte, depth int) (any, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrMalformed)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	v, err := readValue(d, depth)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the JSON value", ErrMalformed)
	}
	return v, nil
}

func readValue(d *json.Decoder, depth int) (any, error) {
	if depth < 0 {
		return nil, fmt.Errorf("%w: nested too deeply", ErrMalformed)
	}
	t, err := d.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			var obj []member
			seen := map[string]bool{}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
				}
				name := k.(string)
				if seen[name] {
					return nil, fmt.Errorf("%w: member %q named twice", ErrMalformed, name)
				}
				seen[name] = true
				v, err := readValue(d, depth-1)
				if err != nil {
					return nil, err
				}
				obj = append(obj, member{name, v})
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			if obj == nil {
				obj = []member{}
			}
			return obj, nil
		case '[':
			arr := []any{}
			for d.More() {
				v, err := readValue(d, depth-1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			return arr, nil
		}
		return nil, fmt.Errorf("%w: unexpected %v", ErrMalformed, t)
	default:
		return t, nil
	}
}

func writeCanonical(out *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		out.WriteString("null")
	case bool:
		out.WriteString(strconv.FormatBool(v))
	case json.Number:
		s, err := canonicalNumber(string(v))
		if err != nil {
			return err
		}
		out.WriteString(s)
	case string:
		writeString(out, v)
	case []any:
		out.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				out.WriteByte(',')
			}
			if err := writeCanonical(out, e); err != nil {
				return err
			}
		}
		out.WriteByte(']')
	case []member:
		sorted := slices.Clone(v)
		slices.SortFunc(sorted, func(a, b member) int {
			return slices.Compare(utf16.Encode([]rune(a.name)), utf16.Encode([]rune(b.name)))
		})
		out.WriteByte('{')
		for i, m := range sorted {
			if i > 0 {
				out.WriteByte(',')
			}
			writeString(out, m.name)
			out.WriteByte(':')
			if err := writeCanonical(out, m.value); err != nil {
				return err
			}
		}
		out.WriteByte('}')
	default:
		return fmt.Errorf("%w: value of type %T", ErrMalformed, v)
	}
	return nil
}

// canonicalNumber prints a JSON number as ECMAScript's Number.prototype
// .toString does (RFC 8785 §3.2.2.3): the shortest digits that round-trip,
// fixed notation for 1e-6 ≤ |x| < 1e21, exponent notation otherwise.
func canonicalNumber(s string) (string, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("%w: number %s is not an IEEE 754 double", ErrMalformed, s)
	}
	if f == 0 {
		return "0", nil // also -0
	}
	if a := math.Abs(f); a >= 1e-6 && a < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	// Go writes a two-digit exponent ("1e-07"), ECMAScript the shortest ("1e-7").
	if i := len(e) - 2; e[i] == '0' && (e[i-1] == '-' || e[i-1] == '+') {
		e = e[:i] + e[i+1:]
	}
	return e, nil
}

func writeString(out *bytes.Buffer, s string) {
	out.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\b':
			out.WriteString(`\b`)
		case '\f':
			out.WriteString(`\f`)
		case '\n':
			out.WriteString(`\n`)
		case '\r':
			out.WriteString(`\r`)
		case '\t':
			out.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(out, `\u%04x`, r)
			} else {
				out.WriteRune(r)
			}
		}
	}
	out.WriteByte('"')
}
