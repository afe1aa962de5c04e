package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	routeKey
)

// route is filled in by the mux wrapper so that outer middleware, which runs
// before routing, can label logs and metrics with the matched pattern
// instead of the raw path (raw paths carry ids and would explode cardinality).
type route struct{ pattern string }

// RequestID returns the request id stored by Handler, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Options configures Handler.
type Options struct {
	Logger  *slog.Logger // required
	Metrics *Metrics     // nil: no metrics
}

// Handler wraps a mux with the middleware every kanal route gets, outermost
// first: request id, access log and metrics, panic recovery, route capture.
func Handler(mux *http.ServeMux, o Options) http.Handler {
	var h http.Handler = captureRoute(mux)
	h = recoverPanics(o.Logger, h)
	h = observe(o.Logger, o.Metrics, h)
	return withRequestID(h)
}

func captureRoute(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		// ServeMux sets r.Pattern on the request it was given.
		if rt, ok := r.Context().Value(routeKey).(*route); ok {
			rt.pattern = r.Pattern
		}
	})
}

// validRequestID accepts a caller's id only if it is short and plain, so it
// can go into logs and headers unescaped.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, routeKey, &route{})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.Error("panic in handler", "request_id", RequestID(r.Context()), "panic", v, "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); ok && sw.wrote {
				return // too late for a problem; the client sees a cut response
			}
			WriteProblem(w, r, &Problem{Type: TypeInternal, Title: "Internal error", Status: http.StatusInternalServerError})
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status and size of a response. It passes
// Unwrap through so http.ResponseController (and websocket upgrades,
// which hijack) keep working.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush lets streaming handlers flush through the wrapper.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func observe(log *slog.Logger, m *Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		elapsed := time.Since(start)

		pattern := "unmatched"
		if rt, ok := r.Context().Value(routeKey).(*route); ok && rt.pattern != "" {
			pattern = rt.pattern
		}
		if m != nil {
			m.observe(pattern, sw.status, elapsed)
		}
		// The raw query is never logged: it may carry tokens.
		log.LogAttrs(r.Context(), slog.LevelInfo, "http",
			slog.String("request_id", RequestID(r.Context())),
			slog.String("method", r.Method),
			slog.String("route", pattern),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.status),
			slog.Int64("bytes", sw.bytes),
			slog.Duration("duration", elapsed),
		)
	})
}

// statusLabel keeps the status label set small and fixed.
func statusLabel(code int) string { return strconv.Itoa(code) }
