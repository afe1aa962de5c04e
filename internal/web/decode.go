package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// DecodeJSON reads exactly one JSON value from r's body into v. It rejects
// a content type other than application/json (in UTF-8), a body over
// maxBytes (0 means MaxBodyBytes), a body that is not UTF-8, unknown
// fields, keys that match a field only in another case, duplicate keys,
// and anything after the value. The returned
// error is a *Problem ready for WriteError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any, maxBytes int64) error {
	if maxBytes <= 0 {
		maxBytes = MaxBodyBytes
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return Errorf(http.StatusUnsupportedMediaType, TypeUnsupportedMedia,
				"Unsupported media type", "the body must be application/json")
		}
		// JSON is UTF-8 (RFC 8259 §8.1); a body declared as anything else
		// would be read as something its sender did not mean.
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return Errorf(http.StatusUnsupportedMediaType, TypeUnsupportedMedia,
				"Unsupported media type", "the body must be application/json in UTF-8, not charset %q", shortKey(cs))
		}
	}
	body := http.MaxBytesReader(w, r.Body, maxBytes)
	return decodeStrict(body, v, maxBytes)
}

// DecodeStrict decodes exactly one JSON value from data into v with the same
// rules as DecodeJSON. It is for JSON that arrives other than as an HTTP
// body, such as a websocket frame.
func DecodeStrict(data []byte, v any, maxBytes int64) error {
	if maxBytes > 0 && int64(len(data)) > maxBytes {
		return tooLarge(maxBytes)
	}
	return decodeStrict(bytes.NewReader(data), v, maxBytes)
}

func decodeStrict(rd io.Reader, v any, maxBytes int64) error {
	data, err := io.ReadAll(rd)
	if err != nil {
		return jsonProblem(err, maxBytes)
	}
	// encoding/json would turn invalid UTF-8 into U+FFFD and go on: the
	// value would no longer be what was sent.
	if !utf8.Valid(data) {
		return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err, maxBytes)
	}
	// A second value, or trailing garbage, is an error: a body means one thing.
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err == nil {
			return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "the body must hold a single JSON value")
		}
		return jsonProblem(err, maxBytes)
	}
	if err := checkKeys(data, reflect.TypeOf(v)); err != nil {
		return jsonProblem(err, maxBytes)
	}
	return nil
}

func jsonProblem(err error, maxBytes int64) *Problem {
	if p, ok := err.(*Problem); ok {
		return p
	}
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return tooLarge(maxBytes)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "the body ends in the middle of a value")
	case errors.As(err, &syntaxErr):
		return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "syntax error at byte %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "field %q must be %s", typeErr.Field, typeErr.Type)
	default:
		// encoding/json reports unknown fields only as text.
		return Errorf(http.StatusBadRequest, TypeInvalidJSON, "Invalid JSON", "%s", sanitize(err.Error()))
	}
}

func tooLarge(maxBytes int64) *Problem {
	return Errorf(http.StatusRequestEntityTooLarge, TypeTooLarge, "Request too large",
		"the body must be at most %d bytes", maxBytes)
}

// sanitize strips the "json: " prefix; the rest of encoding/json's messages
// name fields and types only, never values.
func sanitize(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		s = s[len(p):]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return fmt.Sprint(s)
}
