// Package apiclient is the HTTP plumbing that the Go clients of kanal's
// APIs (identity, messaging, surveys, payments) share: a JSON request with
// a bearer token, a capped read and a strict decode of the answer, and the
// problem detail of an application/problem+json error answer.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
)

// BlankType is RFC 9457's problem type for an answer that names none.
const BlankType = "about:blank"

// CheckBase reports a server address that is not http(s)://host[:port].
func CheckBase(base string) error {
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server address %q: want http(s)://host[:port]", base)
	}
	return nil
}

// NewRequest returns a request for url that carries in, when not nil, as
// its JSON body, and token, when not empty, as its bearer token.
func NewRequest(ctx context.Context, method, url string, in any, token string) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// Do sends req with hc. A transport error names the server (base) and its
// cause, without the method and URL that *url.Error repeats.
func Do(hc *http.Client, req *http.Request, base string) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("%s: %w", base, ue.Err)
		}
		return nil, err
	}
	return resp, nil
}

// ErrTooLarge is wrapped by ReadCapped's error for an answer over its cap.
var ErrTooLarge = errors.New("answer too large")

// ReadCapped reads r to its end, but no more than max bytes: a longer
// answer is an error wrapping ErrTooLarge.
func ReadCapped(r io.Reader, max int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

// DecodeStrict decodes exactly one JSON value from b into v, refusing
// unknown fields and trailing data.
func DecodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// Problem is an RFC 9457 problem detail. Its fields are those of
// identity/client.Problem, in the same order, so that a client converts
// one with (*idclient.Problem)(p); a field added there must be added here.
type Problem struct {
	Type     string
	Title    string
	Status   int
	Detail   string
	Instance string
	Extra    map[string]json.RawMessage
}

// ProblemOf is the problem detail of an error answer whose body is b. A
// problem+json body gives its type (about:blank when it names none),
// title, detail and instance; a body that is not, or does not decode, gives
// an about:blank problem with the answer's status alone. The status is
// always the status line's.
func ProblemOf(resp *http.Response, b []byte) *Problem {
	p := &Problem{Type: BlankType, Status: resp.StatusCode}
	var j struct{ Type, Title, Detail, Instance string }
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/problem+json" && json.Unmarshal(b, &j) == nil {
		if j.Type != "" {
			p.Type = j.Type
		}
		p.Title, p.Detail, p.Instance = j.Title, j.Detail, j.Instance
	}
	return p
}
