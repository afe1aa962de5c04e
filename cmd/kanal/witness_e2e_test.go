package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

// TestAttackWitnessSplitViewCLI runs the real binaries: two kanald nodes
// that share the log key and origin but not their database — whoever holds
// a node's keys can run such a fork — behind one address that answers
// from either. Both logs record one device for Bob, so they sign
// checkpoints of the same size with different roots. 'kanal witness run'
// cosigns what it is shown first; shown the fork, it refuses, writes the
// evidence and exits with status 3, and the fork has no cosigned
// checkpoint to give Bob's client.
func TestAttackWitnessSplitViewCLI(t *testing.T) {
	work := t.TempDir()
	const origin = "kanal.example/split"
	logKeyFile := filepath.Join(work, "log.key")
	_, logKey, err := translog.LoadOrCreateKey(logKeyFile, origin, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	var front atomic.Pointer[httputil.ReverseProxy]
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { front.Load().ServeHTTP(w, r) }))
	defer proxy.Close()

	kanal := func(wantExit int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin.kanal, args...)
		cmd.Env = append(os.Environ(), "KANAL_HOME="+filepath.Join(work, "home"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantExit {
			t.Fatalf("kanal %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantExit, out.String())
		}
		return out.String()
	}
	dir := filepath.Join(work, "witness")
	out := kanal(0, "witness", "init", "--name", "witness.example/civic", "--log-key", logKey, "--server", proxy.URL, dir)
	witnessKey := strings.TrimSpace(out)
	if _, err := transparency.NewCosignatureVerifier(witnessKey); err != nil {
		t.Fatalf("witness init printed %q: %v", out, err)
	}
	kanal(2, "witness", "init", "--log-key", logKey, dir) // no --name
	if o := kanal(1, "witness", "init", "--name", "witness.example/civic", "--log-key", logKey, "--server", proxy.URL, dir); !strings.Contains(o, "already holds a witness key") {
		t.Fatalf("a second init over the key: %s", o)
	}

	env := []string{"KANAL_LOG_KEY_FILE=" + logKeyFile, "KANAL_LOG_ORIGIN=" + origin, "KANAL_LOG_WITNESSES=" + witnessKey}
	nodes := map[string]*kanaldtest.Server{}
	proxies := map[string]*httputil.ReverseProxy{}
	for _, view := range []string{"a", "b"} {
		n := kanaldtest.Start(t, bin.kanald, env...)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		n.SignUp(t, "bob@example.de", key)
		u, _ := url.Parse(n.URL)
		nodes[view], proxies[view] = n, httputil.NewSingleHostReverseProxy(u)
	}
	logV, _ := transparency.NewVerifier(logKey)
	checkpoint := func(view, path string) (int, []byte) {
		resp, err := http.Get(nodes[view].URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	_, a := checkpoint("a", "/v1/log/checkpoint")
	_, b := checkpoint("b", "/v1/log/checkpoint")
	ca, _, errA := transparency.Open(a, logV)
	cb, _, errB := transparency.Open(b, logV)
	if errA != nil || errB != nil || ca.Size != cb.Size || ca.Hash == cb.Hash {
		t.Fatalf("the nodes do not split: %+v %+v %v %v", ca, cb, errA, errB)
	}

	front.Store(proxies["a"])
	if o := kanal(0, "witness", "run", "--once", dir); !strings.Contains(o, "cosigned size") {
		t.Fatalf("first poll: %s", o)
	}
	policy, _ := transparency.NewWitnessPolicy([]string{witnessKey}, 1, time.Hour)
	code, got := checkpoint("a", "/v1/log/witness/checkpoint")
	if _, _, err := policy.Check(got, logV, time.Now()); code != 200 || err != nil {
		t.Fatalf("node a's witnessed checkpoint: %d %v\n%s", code, err, got)
	}

	front.Store(proxies["b"])
	o := kanal(3, "witness", "run", "--once", dir)
	if !strings.Contains(o, "split view") || !strings.Contains(o, "evidence") {
		t.Fatalf("split view output: %s", o)
	}
	ev, _ := filepath.Glob(filepath.Join(dir, "evidence-*.json"))
	if len(ev) != 1 {
		t.Fatalf("evidence files: %v", ev)
	}
	if code, _ := checkpoint("b", "/v1/log/witness/checkpoint"); code != 404 {
		t.Fatalf("the fork has a witnessed checkpoint: %d", code)
	}
	// Halted: even the honest view gets nothing more.
	front.Store(proxies["a"])
	kanal(3, "witness", "run", "--once", dir)
}
