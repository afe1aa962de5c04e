package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestOpenAPIRecord is a tool, not a check: with KANAL_OPENAPI_RECORD set
// to a file, it runs the city day of TestOpenAPIValidatesRealResponses
// without the document and writes every exchange (route pattern, status,
// media types, JSON bodies) to the file, one JSON object a line, as
// material for describing a new route.
func TestOpenAPIRecord(t *testing.T) {
	file := os.Getenv("KANAL_OPENAPI_RECORD")
	if file == "" {
		t.Skip("KANAL_OPENAPI_RECORD not set")
	}
	os.Unsetenv("KANAL_OPENAPI_RECORD") // not for the processes the day starts
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mux := http.NewServeMux()
	for _, p := range servedPatterns(t) {
		mux.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
	}
	var mu sync.Mutex
	kanaldtest.Front = func(t testing.TB, target string) string {
		u, _ := url.Parse(target)
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, FlushInterval: -1,
			ModifyResponse: func(resp *http.Response) error {
				rec := resp.Request.Context().Value(oaKey{}).(map[string]any)
				rec["status"] = resp.StatusCode
				rec["resp_type"] = resp.Header.Get("Content-Type")
				if resp.StatusCode != http.StatusSwitchingProtocols {
					b, _ := io.ReadAll(resp.Body)
					resp.Body = io.NopCloser(bytes.NewReader(b))
					if json.Valid(b) {
						rec["resp"] = json.RawMessage(b)
					}
				}
				line, _ := json.Marshal(rec)
				mu.Lock()
				f.Write(append(line, '\n'))
				mu.Unlock()
				return nil
			}}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, pattern := mux.Handler(r)
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			rec := map[string]any{"pattern": pattern, "query": r.URL.RawQuery, "req_type": r.Header.Get("Content-Type")}
			if json.Valid(b) {
				rec["req"] = json.RawMessage(b)
			}
			rp.ServeHTTP(w, r.WithContext(contextWith(r, rec)))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	defer func() { kanaldtest.Front = nil }()
	for _, d := range cityDay() {
		t.Run(d.name, d.f)
	}
}
