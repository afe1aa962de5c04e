package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// The profiling endpoints answer on their own loopback listener when
// KANAL_PPROF_ADDR is set, and never on the public one.
func TestPprofOnItsOwnListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv := kanaldtest.Start(t, kanaldBin, "KANAL_PPROF_ADDR="+addr)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get("http://" + addr + "/debug/pprof/"); st != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index: %d %.200s", st, body)
	}
	if st, body := get("http://" + addr + "/debug/pprof/heap?debug=1"); st != 200 || !strings.Contains(body, "heap profile") {
		t.Fatalf("heap profile: %d %.200s", st, body)
	}
	if st, _ := get(srv.URL + "/debug/pprof/"); st != 404 {
		t.Fatalf("the public listener serves /debug/pprof/: %d", st)
	}
}
