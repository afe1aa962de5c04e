package webapp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/webapp"
)

func serve(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	if err := webapp.Register(mux); err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", http.NotFoundHandler())
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// The transport must not decompress on its own: the test reads the
	// bytes as they are sent.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestServesApp(t *testing.T) {
	s := serve(t)
	resp, body := get(t, s.URL+"/", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !bytes.Contains(body, []byte(`<html lang="de">`)) {
		t.Fatalf("GET /: %d %s %.100s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for name, want := range map[string]string{
		"Content-Security-Policy": webapp.CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
		"Cross-Origin-Opener-Policy": "same-origin",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// Nothing is loaded from another host, and no script runs inline.
	for _, name := range []string{"/", "/app.js", "/app.css", "/participate.js", "/participate.css", "/push.js", "/pair.js", "/sw.js", "/groups.js", "/groups.css", "/office.js", "/office.css", "/forms.js", "/forms.css"} {
		_, b := get(t, s.URL+name, nil)
		if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//|\burl\(|@import|<script>|\son[a-z]+="`).Find(b); m != nil {
			t.Errorf("%s: %q: only same-origin files, no inline script", name, m)
		}
	}
	if !strings.Contains(webapp.CSP, "default-src 'none'") || strings.Contains(webapp.CSP, "unsafe-inline") || strings.Contains(webapp.CSP, "'unsafe-eval'") {
		t.Errorf("CSP is not strict: %s", webapp.CSP)
	}

	// kanal.wasm is sent gzip-compressed as stored, or decompressed for a
	// client that does not take gzip.
	resp, gz := get(t, s.URL+"/kanal.wasm", map[string]string{"Accept-Encoding": "gzip, br"})
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Type") != "application/wasm" {
		t.Fatalf("kanal.wasm: %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.HasPrefix(plain, []byte("\x00asm")) {
		t.Fatalf("kanal.wasm.gz holds no WebAssembly module: %v", err)
	}
	resp, raw := get(t, s.URL+"/kanal.wasm", nil)
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(raw, plain) {
		t.Fatalf("kanal.wasm without gzip: %q, %d bytes, want %d", resp.Header.Get("Content-Encoding"), len(raw), len(plain))
	}
	t.Logf("kanal.wasm: %d bytes, %d gzip-compressed", len(plain), len(gz))

	// A cached copy is confirmed, not sent again.
	resp, body = get(t, s.URL+"/app.js", map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	if resp.StatusCode != 200 {
		t.Fatalf("another file's ETag: %d", resp.StatusCode)
	}
	resp2, _ := get(t, s.URL+"/app.js", map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	if resp2.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", resp2.StatusCode)
	}

	// Other paths and methods keep the mux's own answers.
	for _, c := range []struct{ method, path string }{{"GET", "/index.html"}, {"GET", "/static/app.js"}, {"GET", "/../go.mod"}, {"POST", "/"}} {
		req, _ := http.NewRequest(c.method, s.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d", c.method, c.path, resp.StatusCode)
		}
	}
}

// TestAttackBearerSubprotocol: the web app's websocket carries its token
// as a subprotocol (a browser cannot set Authorization on a websocket).
// An attacker holding a token gains nothing new from this channel: the
// subprotocol is read only on a websocket upgrade, never on an ordinary
// request, and the server never echoes the token back.
func TestAttackBearerSubprotocol(t *testing.T) {
	srv := kanaldtest.Start(t, kanald)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev := srv.SignUp(t, "sub@example.org", key)
	offer := "kanal, " + identity.WebsocketBearerPrefix + dev.Token

	// An ordinary request with the token as a subprotocol is not
	// authenticated.
	resp, _ := get(t, srv.URL+"/v1/me", map[string]string{"Sec-WebSocket-Protocol": offer})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v1/me with the token as a subprotocol: %d, want 401", resp.StatusCode)
	}
	// A made-up token as a subprotocol opens no stream.
	ctx := context.Background()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/stream",
		&websocket.DialOptions{Subprotocols: []string{"kanal", identity.WebsocketBearerPrefix + "kanal_s_forged"}})
	if err == nil {
		ws.CloseNow()
		t.Fatal("a forged token opened the stream")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged token: %v %v", resp, err)
	}
	// The real token opens it; the server selects "kanal", never the
	// subprotocol that holds the token.
	ws, resp, err = websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/stream",
		&websocket.DialOptions{Subprotocols: []string{"kanal", identity.WebsocketBearerPrefix + dev.Token}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "kanal" || ws.Subprotocol() != "kanal" {
		t.Fatalf("selected subprotocol %q", got)
	}
}
