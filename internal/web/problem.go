package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/kanal-server/kanal/internal/problem"
)

// ProblemType is the stable "type" URI of a problem (package problem, which
// the SDK's wire packages import without this one).
type ProblemType = problem.Type

// Problem types used by the HTTP edge itself. Domains declare their own
// with NewType.
var (
	TypeBadRequest        = NewType("bad-request")
	TypeInvalidJSON       = NewType("invalid-json")
	TypeTooLarge          = NewType("too-large")
	TypeUnsupportedMedia  = NewType("unsupported-media-type")
	TypeNotFound          = NewType("not-found")
	TypeMethodNotAllowed  = NewType("method-not-allowed")
	TypeUnauthorized      = NewType("unauthorized")
	TypeForbidden         = NewType("forbidden")
	TypeConflict          = NewType("conflict")
	TypeRateLimited       = NewType("rate-limited")
	TypeInternal          = NewType("internal")
	TypeUnavailable       = NewType("unavailable")
	TypeValidation        = NewType("validation")
	TypeInsufficientLevel = NewType("insufficient-level-of-assurance")
)

// NewType returns the problem type for a short slug such as "stale-devices".
func NewType(slug string) ProblemType { return problem.NewType(slug) }

// Problem is an RFC 9457 problem detail. It is also an error, so handlers
// can return one through ordinary error paths and the edge writes it as is.
type Problem struct {
	Type     ProblemType `json:"type"`
	Title    string      `json:"title"`
	Status   int         `json:"status"`
	Detail   string      `json:"detail,omitempty"`
	Instance string      `json:"instance,omitempty"`
	// Extra holds extension members (RFC 9457 §3.2), such as the list of
	// stale devices in a 409. Keys must not collide with the fields above.
	Extra map[string]any `json:"-"`
}

// Errorf builds a problem with a formatted detail. The detail is shown to
// the client: it must never contain a secret, SQL or a stack.
func Errorf(status int, typ ProblemType, title, format string, args ...any) *Problem {
	return &Problem{Type: typ, Title: title, Status: status, Detail: fmt.Sprintf(format, args...)}
}

// With returns a copy of p carrying one more extension member.
func (p *Problem) With(key string, value any) *Problem {
	q := *p
	q.Extra = make(map[string]any, len(p.Extra)+1)
	for k, v := range p.Extra {
		q.Extra[k] = v
	}
	q.Extra[key] = value
	return &q
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("%s: %s", p.Title, p.Detail)
	}
	return p.Title
}

// MarshalJSON flattens the extension members next to the standard ones.
func (p *Problem) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(p.Extra)+5)
	for k, v := range p.Extra {
		m[k] = v
	}
	m["type"] = p.Type
	m["title"] = p.Title
	m["status"] = p.Status
	if p.Detail != "" {
		m["detail"] = p.Detail
	}
	if p.Instance != "" {
		m["instance"] = p.Instance
	}
	return json.Marshal(m)
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		q := *p
		q.Instance = RequestID(r.Context())
		p = &q
	}
	writeHead(w, "application/problem+json", p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeHead sends status with the content type, which the client must
// not sniff past.
func writeHead(w http.ResponseWriter, contentType string, status int) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
}

// WriteError writes err as a problem. A *Problem anywhere in the chain is
// written as is; anything else is an internal error whose cause is logged by
// the caller and never shown to the client.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var p *Problem
	if errors.As(err, &p) {
		WriteProblem(w, r, p)
		return
	}
	WriteProblem(w, r, &Problem{Type: TypeInternal, Title: "Internal error", Status: http.StatusInternalServerError})
}

// Fail answers a handler's error: what toProblem maps (a domain's own
// errors and any *Problem) is written as that problem; anything else is
// logged under domain with the request id and route, and answered as an
// internal error that says nothing of its cause.
//
// If the response has started (its status is sent: a download whose
// client stopped reading until the write deadline), no answer can follow:
// the error is logged at info — the client's connection failed, not the
// server — and the client sees the response cut short.
func Fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, domain string, err error, toProblem func(error) *Problem) {
	if started(w) {
		log.InfoContext(r.Context(), domain+": response cut short", "request_id", RequestID(r.Context()), "route", r.Pattern, "err", err)
		return
	}
	if p := toProblem(err); p != nil {
		WriteProblem(w, r, p)
		return
	}
	log.ErrorContext(r.Context(), domain, "request_id", RequestID(r.Context()), "route", r.Pattern, "err", err)
	WriteError(w, r, err)
}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	writeHead(w, "application/json", status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteEncodedJSON writes j, a value already encoded by json.Marshal, as
// WriteJSON writes that value: the same headers, and the bytes
// json.Encoder would write, j and a newline. It is for an answer the
// handler has encoded before (a send's, which its idempotency row keeps).
func WriteEncodedJSON(w http.ResponseWriter, status int, j string) {
	writeHead(w, "application/json", status)
	_, _ = io.WriteString(w, j)
	_, _ = io.WriteString(w, "\n")
}

// WriteJSONNow writes v as WriteJSON does, with its Content-Length, and
// flushes it: the client has the whole answer while the handler goes on
// with work that need not hold the answer back.
func WriteJSONNow(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteJSON(w, status, v)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	writeHead(w, "application/json", status)
	_, _ = w.Write(b)
	_ = http.NewResponseController(w).Flush()
}

// started reports whether w's status has been sent, as far as the
// statusWriter that Handler puts around every response can tell.
func started(w http.ResponseWriter) bool {
	for {
		switch x := w.(type) {
		case *statusWriter:
			return x.wrote
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return false
		}
	}
}
