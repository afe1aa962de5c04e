// Package webapp is kanal's web app for citizens and office agents: static
// files embedded in kanald and served at "/", and kanal.wasm, the client
// SDK (messaging/client) compiled to WebAssembly, so the browser runs the
// same end-to-end encryption as the CLI. Nothing is loaded from another
// host. docs/web.md describes it.
//
// kanal.wasm.gz is built and committed with
//
//	go generate ./webapp
package webapp

//go:generate sh gen.sh

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"
)

//go:embed static
var files embed.FS

// CSP is the app's Content-Security-Policy: scripts and styles only from
// kanald itself, WebAssembly allowed to compile, no inline code, no
// frames, connections (fetch and the websocket) only to kanald.
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type asset struct {
	body  []byte // as served; gzip for kanal.wasm
	ctype string
	gzip  bool
	etag  string
}

// Register serves the app on mux: GET (and HEAD) of "/" and of each of
// the app's files, so that every other path keeps the mux's own answer.
func Register(mux *http.ServeMux) error {
	h, names, err := handler()
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == "/" {
			name = "/{$}"
		}
		mux.Handle("GET "+name, h)
	}
	return nil
}

// handler serves the app's files, and the names it serves.
func handler() (http.Handler, []string, error) {
	assets := map[string]asset{}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static")
		a := asset{body: b}
		if strings.HasSuffix(name, ".gz") {
			name, a.gzip = strings.TrimSuffix(name, ".gz"), true
		}
		switch path.Ext(name) {
		case ".html":
			a.ctype = "text/html; charset=utf-8"
		case ".js":
			a.ctype = "text/javascript; charset=utf-8"
		case ".css":
			a.ctype = "text/css; charset=utf-8"
		case ".wasm":
			a.ctype = "application/wasm"
		default:
			a.ctype = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		a.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
		assets[name] = a
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	assets["/"] = assets["/index.html"]
	delete(assets, "/index.html")
	names := slices.Sorted(maps.Keys(assets))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Add("Vary", "Accept-Encoding")
		if r.Header.Get("If-None-Match") == a.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := io.Reader(bytes.NewReader(a.body))
		if a.gzip {
			if acceptsGzip(r) {
				h.Set("Content-Encoding", "gzip")
			} else {
				zr, err := gzip.NewReader(body)
				if err != nil {
					http.Error(w, "damaged asset", http.StatusInternalServerError)
					return
				}
				body = zr
			}
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = io.Copy(w, body)
	}), names, nil
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
