package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kanal-server/kanal/internal/apiclient"
)

// BlankType is RFC 9457's problem type for an answer that names none: the
// status code says all there is. The client uses it for error answers that
// are not problem+json, such as a proxy's error page.
const BlankType = "about:blank"

// Problem is an RFC 9457 problem detail returned by the server, as an
// error. Branch on Type: it is stable, unlike Title and Detail, which are for
// people.
type Problem struct {
	Type     string
	Title    string
	Status   int
	Detail   string
	Instance string
	// Extra holds the problem's extension members, undecoded.
	Extra map[string]json.RawMessage
}

// Error reads as one line: "invalid credentials: detail (urn:kanal:problem:…)".
func (p *Problem) Error() string {
	var b strings.Builder
	title := p.Title
	if title == "" {
		title = strings.ToLower(http.StatusText(p.Status))
	}
	if title == "" {
		title = fmt.Sprintf("status %d", p.Status)
	}
	b.WriteString(lowerFirst(title))
	if p.Detail != "" && !strings.EqualFold(p.Detail, title) {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	if p.Type != "" && p.Type != BlankType {
		fmt.Fprintf(&b, " (%s)", p.Type)
	} else {
		fmt.Fprintf(&b, " (HTTP %d)", p.Status)
	}
	return oneLine(b.String())
}

// The other API clients decode an error answer into an apiclient.Problem
// and convert it to a *Problem; this keeps the two types convertible.
var _ = (*Problem)((*apiclient.Problem)(nil))

// IsProblem reports whether err is or wraps a *Problem of type typ.
func IsProblem(err error, typ string) bool {
	var p *Problem
	return errors.As(err, &p) && p.Type == typ
}

// StatusOf returns the HTTP status of the *Problem in err's chain, or 0.
func StatusOf(err error) int {
	var p *Problem
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}

// lowerFirst makes "Invalid credentials" read well after "login: ", but
// leaves an initialism such as "CSR rejected" alone.
func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == len(s) {
		return s
	}
	next, _ := utf8.DecodeRuneInString(s[n:])
	if unicode.IsUpper(r) && !unicode.IsUpper(next) {
		return string(unicode.ToLower(r)) + s[n:]
	}
	return s
}

// oneLine keeps a server-supplied string from spreading over several lines
// of a terminal or a log.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// readProblem turns an error answer into a *Problem. A problem+json body is
// decoded; its standard members must have their standard types. Anything
// else becomes an about:blank problem with the status, since RFC 9457 says
// that is what an answer without a type means.
func readProblem(resp *http.Response) error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/problem+json" {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyBytes))
		return &Problem{Type: BlankType, Title: strings.ToLower(http.StatusText(resp.StatusCode)), Status: resp.StatusCode}
	}
	body, err := readCapped(resp.Body, MaxResponseBytes)
	if err != nil {
		return fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil || members == nil {
		return fmt.Errorf("HTTP %d: %w: problem is not a JSON object", resp.StatusCode, ErrBadResponse)
	}
	p := &Problem{Type: BlankType, Status: resp.StatusCode}
	str := func(name string, dst *string) error {
		raw, ok := members[name]
		if !ok {
			return nil
		}
		delete(members, name)
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("HTTP %d: %w: problem member %q is not a string", resp.StatusCode, ErrBadResponse, name)
		}
		return nil
	}
	for name, dst := range map[string]*string{"type": &p.Type, "title": &p.Title, "detail": &p.Detail, "instance": &p.Instance} {
		if err := str(name, dst); err != nil {
			return err
		}
	}
	// Status is taken from the status line, which every intermediary acted
	// on; the body's copy is only checked for its type.
	if raw, ok := members["status"]; ok {
		delete(members, "status")
		var status int
		if err := json.Unmarshal(raw, &status); err != nil {
			return fmt.Errorf("HTTP %d: %w: problem member \"status\" is not a number", resp.StatusCode, ErrBadResponse)
		}
	}
	if len(members) > 0 {
		p.Extra = members
	}
	return p
}

// ErrBadResponse is wrapped by every error about an answer the client could
// not accept: too large, wrong content type, not the expected JSON.
var ErrBadResponse = errors.New("identity client: bad response")

func readCapped(r io.Reader, max int) ([]byte, error) {
	body, err := apiclient.ReadCapped(r, max)
	if errors.Is(err, apiclient.ErrTooLarge) {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrBadResponse, max)
	}
	return body, err
}

// decodeStrict decodes exactly one JSON value into v, rejecting unknown
// fields and trailing data.
func decodeStrict(body []byte, v any) error {
	if err := apiclient.DecodeStrict(body, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	return nil
}
