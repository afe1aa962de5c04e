package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kanal-server/kanal/internal/web"
)

type greeting struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func decodeServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /greet", func(w http.ResponseWriter, r *http.Request) {
		var g greeting
		if err := web.DecodeJSON(w, r, &g, 64); err != nil {
			web.WriteError(w, r, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, g)
	})
	srv := httptest.NewServer(web.Handler(mux, web.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDecodeJSON(t *testing.T) {
	srv := decodeServer(t)
	cases := []struct {
		name, ctype, body string
		status            int
		typ               web.ProblemType
	}{
		{"valid", "application/json", `{"name":"Amt","count":2}`, 200, ""},
		{"valid with charset", "application/json; charset=utf-8", `{"name":"Amt"}`, 200, ""},
		{"unknown field", "application/json", `{"name":"Amt","admin":true}`, 400, web.TypeInvalidJSON},
		{"two values", "application/json", `{"name":"a"}{"name":"b"}`, 400, web.TypeInvalidJSON},
		{"trailing garbage", "application/json", `{"name":"a"} x`, 400, web.TypeInvalidJSON},
		{"empty", "application/json", ``, 400, web.TypeInvalidJSON},
		{"truncated", "application/json", `{"name":"a`, 400, web.TypeInvalidJSON},
		{"wrong type", "application/json", `{"count":"two"}`, 400, web.TypeInvalidJSON},
		{"syntax", "application/json", `{name:1}`, 400, web.TypeInvalidJSON},
		{"too large", "application/json", `{"name":"` + strings.Repeat("x", 100) + `"}`, 413, web.TypeTooLarge},
		{"form body", "application/x-www-form-urlencoded", `name=a`, 415, web.TypeUnsupportedMedia},
		{"charset UTF-8 in capitals", "application/json; charset=UTF-8", `{"name":"Amt"}`, 200, ""},
		{"key in capitals", "application/json", `{"NAME":"Amt"}`, 400, web.TypeInvalidJSON},
		{"key in mixed case", "application/json", `{"Name":"Amt"}`, 400, web.TypeInvalidJSON},
		{"key escaped to another case", "application/json", `{"\u004eame":"Amt"}`, 400, web.TypeInvalidJSON},
		{"duplicate key", "application/json", `{"name":"a","name":"b"}`, 400, web.TypeInvalidJSON},
		{"duplicate key escaped", "application/json", `{"name":"a","\u006eame":"b"}`, 400, web.TypeInvalidJSON},
		{"invalid UTF-8 in a string", "application/json", "{\"name\":\"A\xffmt\"}", 400, web.TypeInvalidJSON},
		{"charset utf-16", "application/json; charset=utf-16", `{"name":"Amt"}`, 415, web.TypeUnsupportedMedia},
		{"charset latin-1", "application/json; charset=iso-8859-1", `{"name":"Amt"}`, 415, web.TypeUnsupportedMedia},
		{"charset empty", "application/json; charset=", `{"name":"Amt"}`, 415, web.TypeUnsupportedMedia},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/greet", c.ctype, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.typ == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
			var p map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p["type"] != string(c.typ) || p["status"] != float64(c.status) || p["title"] == "" {
				t.Fatalf("problem %v, want type %s", p, c.typ)
			}
			if p["instance"] != resp.Header.Get("X-Request-Id") {
				t.Fatalf("instance %v does not name the request id %s", p["instance"], resp.Header.Get("X-Request-Id"))
			}
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	var g greeting
	if err := web.DecodeStrict([]byte(`{"name":"x"}`), &g, 100); err != nil || g.Name != "x" {
		t.Fatalf("%v %v", g, err)
	}
	if err := web.DecodeStrict([]byte(`{"name":"x","extra":1}`), &g, 100); err == nil {
		t.Fatal("unknown field accepted")
	}
	if err := web.DecodeStrict(bytes.Repeat([]byte(" "), 101), &g, 100); err == nil {
		t.Fatal("oversized frame accepted")
	}
}

// Keys match fields exactly, once, at every depth of a value: in nested
// structs, slices and maps of them, and promoted from embedded structs. A
// json.RawMessage or map[string]any holds no fields but no duplicate keys
// either.
func TestDecodeStrictKeys(t *testing.T) {
	type inner struct {
		ID string `json:"id"`
	}
	type Embedded struct {
		Kind string `json:"kind"`
	}
	type outer struct {
		Embedded
		Inner   inner            `json:"inner"`
		Ptr     *inner           `json:"ptr"`
		List    []inner          `json:"list"`
		ByName  map[string]inner `json:"by_name"`
		Raw     json.RawMessage  `json:"raw"`
		Any     map[string]any   `json:"any"`
		Untaged string
		Skipped string `json:"-"`
	}
	good := []string{
		`{"kind":"k","inner":{"id":"1"},"ptr":{"id":"2"},"list":[{"id":"3"}],"by_name":{"ID":{"id":"4"}},"raw":{"A":1,"a":2},"any":{"X":1,"x":2},"Untaged":"u"}`,
		`{"ptr":null,"list":null}`,
		// A number past float64's range in a field that keeps it raw.
		`{"raw":1e400}`,
	}
	for _, in := range good {
		var v outer
		if err := web.DecodeStrict([]byte(in), &v, 0); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
	bad := []string{
		`{"Kind":"k"}`,
		`{"inner":{"ID":"1"}}`,
		`{"ptr":{"Id":"2"}}`,
		`{"list":[{"id":"3"},{"iD":"4"}]}`,
		`{"by_name":{"x":{"ID":"4"}}}`,
		`{"untaged":"u"}`,
		`{"inner":{"id":"1","id":"2"}}`,
		`{"list":[{"id":"3","id":"3"}]}`,
		`{"by_name":{"x":{"id":"1"},"x":{"id":"2"}}}`,
		`{"raw":{"a":1,"a":2}}`,
		`{"raw":[{"a":{"b":1,"b":2}}]}`,
		`{"any":{"x":1,"x":2}}`,
		`{"kind":"k","kind":"k"}`,
		"{\"kind\":\"\xc3\"}",
		"{\"raw\":\"\xed\xa0\x80\"}",
	}
	for _, in := range bad {
		var v outer
		err := web.DecodeStrict([]byte(in), &v, 0)
		var p *web.Problem
		if !errors.As(err, &p) || p.Type != web.TypeInvalidJSON || p.Status != http.StatusBadRequest {
			t.Errorf("%q: %v, want an invalid-json problem", in, err)
		}
	}
}

func TestProblemExtensions(t *testing.T) {
	p := web.Errorf(409, web.NewType("stale-devices"), "Stale device list", "2 devices changed").
		With("missing", []string{"dev_a"}).With("stale", []string{"dev_b"})
	rec := httptest.NewRecorder()
	web.WriteProblem(rec, nil, p)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["type"] != "urn:kanal:problem:stale-devices" || got["status"] != float64(409) {
		t.Fatalf("%v", got)
	}
	if m, _ := got["missing"].([]any); len(m) != 1 || m[0] != "dev_a" {
		t.Fatalf("extension member missing: %v", got)
	}
	// With copies: the original problem is unchanged.
	if len(web.Errorf(409, "t", "x", "y").Extra) != 0 {
		t.Fatal("shared extension map")
	}
}

func TestInternalErrorsHideCauses(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	web.WriteError(rec, req, io.ErrUnexpectedEOF)
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "unexpected EOF") {
		t.Fatalf("internal error leaked its cause: %d %s", rec.Code, rec.Body.String())
	}
}

func TestRequestIDAndRecovery(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("secret-cause") })
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		web.WriteJSON(w, 200, map[string]string{"id": web.RequestID(r.Context())})
	})
	m := web.NewMetrics()
	srv := httptest.NewServer(web.Handler(mux, web.Options{Logger: log, Metrics: m}))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/items/42", nil)
	req.Header.Set("X-Request-Id", "client-chosen-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") != "client-chosen-1" {
		t.Fatalf("request id not kept: %q", resp.Header.Get("X-Request-Id"))
	}
	req.Header.Set("X-Request-Id", "bad id with spaces and ünïcode")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); len(id) != 24 {
		t.Fatalf("invalid id should be replaced, got %q", id)
	}

	resp, err = http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || strings.Contains(string(body), "secret-cause") {
		t.Fatalf("panic: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "secret-cause") {
		t.Fatal("panic not logged")
	}
	// Logs and metrics carry the route pattern, not the raw path with its id.
	if !strings.Contains(logs.String(), `"route":"GET /items/{id}"`) {
		t.Fatalf("route pattern not logged: %s", logs.String())
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `kanal_http_requests_total{route="GET /items/{id}",status="200"} 2`) {
		t.Fatalf("metrics do not count by pattern:\n%s", rec.Body.String())
	}
}

func TestReadyz(t *testing.T) {
	var dbUp atomic.Bool
	h := web.Readyz(
		web.Check{Name: "database", Func: func(context.Context) error {
			if !dbUp.Load() {
				return errors.New("down")
			}
			return nil
		}},
		web.Check{Name: "bus", Func: func(context.Context) error { return nil }},
	)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"failing":["database"]`) || strings.Contains(rec.Body.String(), "down") {
		t.Fatalf("not ready: %d %s", rec.Code, rec.Body.String())
	}
	dbUp.Store(true)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body.String())
	}
}

func TestTrackerClosesEverything(t *testing.T) {
	var tr web.Tracker
	var closed atomic.Int32
	untrack, ok := tr.Track(func() { closed.Add(1) })
	if !ok {
		t.Fatal("track refused")
	}
	tr.Track(func() { closed.Add(1) })
	untrack() // this connection ended by itself
	if tr.Len() != 1 {
		t.Fatalf("len %d", tr.Len())
	}
	tr.CloseAll()
	if closed.Load() != 1 {
		t.Fatalf("closed %d, want 1", closed.Load())
	}
	if _, ok := tr.Track(func() {}); ok {
		t.Fatal("tracker accepted a connection after CloseAll")
	}
}

// TestFailAfterTheResponseStarted: a handler whose write fails halfway —
// a client that stopped reading a download until the write deadline — has
// sent its status already. Its error is not answered with a second status
// ("superfluous response.WriteHeader" in the server's log) nor logged as a
// server error: the response is cut, which the client sees.
func TestFailAfterTheResponseStarted(t *testing.T) {
	var logs, serverLog lockedBuf
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("partial"))
		web.Fail(w, r, log, "blobs", errors.New("write tcp: i/o timeout"), func(error) *web.Problem { return nil })
	})
	srv := httptest.NewUnstartedServer(web.Handler(mux, web.Options{Logger: log}))
	srv.Config.ErrorLog = stdlog.New(&serverLog, "", 0)
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	srv.Close() // flushes the server's log
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "partial") || strings.Contains(string(body), "problem") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if s := serverLog.String(); strings.Contains(s, "superfluous") {
		t.Fatalf("server log: %s", s)
	}
	if s := logs.String(); strings.Contains(s, "level=ERROR") || !strings.Contains(s, "i/o timeout") {
		t.Fatalf("log: %s", s)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// BenchmarkDecodeStrict decodes bodies the shape of kanal's busiest
// routes: an anonymous ballot (a token and a ciphertext, base64) and a
// send to three devices.
func BenchmarkDecodeStrict(b *testing.B) {
	type token struct {
		Message   []byte `json:"message"`
		Signature []byte `json:"signature"`
	}
	type ballot struct {
		Token      *token `json:"token,omitempty"`
		Ciphertext []byte `json:"ciphertext"`
	}
	type envelope struct {
		DeviceID   string `json:"device_id"`
		Ciphertext []byte `json:"ciphertext"`
	}
	type send struct {
		To struct {
			AccountID string `json:"account_id,omitempty"`
			OrgID     string `json:"org_id,omitempty"`
		} `json:"to"`
		ClientID  string     `json:"client_id"`
		Class     string     `json:"class"`
		Envelopes []envelope `json:"envelopes"`
	}
	fill := func(n int) []byte { return bytes.Repeat([]byte{0xa5}, n) }
	ballotBody, _ := json.Marshal(ballot{Token: &token{fill(32), fill(256)}, Ciphertext: fill(600)})
	var s send
	s.To.AccountID, s.ClientID, s.Class = "acc_0123456789abcdef", "c-42", "message"
	for _, d := range []string{"dev_a", "dev_b", "dev_c"} {
		s.Envelopes = append(s.Envelopes, envelope{d, fill(256)})
	}
	sendBody, _ := json.Marshal(s)
	for _, c := range []struct {
		name string
		body []byte
		v    func() any
	}{
		{"ballot", ballotBody, func() any { return new(ballot) }},
		{"send", sendBody, func() any { return new(send) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := web.DecodeStrict(c.body, c.v(), 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
