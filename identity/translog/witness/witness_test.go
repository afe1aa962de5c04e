package witness_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/identity/translog/witness"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

const origin = "kanal/witness-test"

var sets = []db.Migrations{translog.Migrations()}

func entry(i int, variant string) transparency.Entry {
	return transparency.Entry{Kind: transparency.KindDevice, Account: "acc_bob", Device: "dev_" + variant + strconv.Itoa(i),
		Cert: transparency.CertFingerprint([]byte(variant + "cert " + strconv.Itoa(i))), Time: int64(1767225600 + i)}
}

func appendEntries(t *testing.T, d *db.DB, l *translog.Log, es ...transparency.Entry) {
	t.Helper()
	for _, e := range es {
		if err := d.Tx(context.Background(), func(tx *sql.Tx) error { _, err := l.Append(context.Background(), tx, e); return err }); err != nil {
			t.Fatal(err)
		}
	}
}

// splitServer is a malicious server: the deployment's log key and two
// databases. View "a" is the log everyone should see; view "b" is a fork
// that, from index 9 on, records a device for Bob that Bob's own devices
// are never shown. Which view a request gets is the server's choice.
type splitServer struct {
	logs    map[string]*translog.Log
	dbs     map[string]*db.DB
	muxes   map[string]*http.ServeMux
	vkey    string
	witness atomic.Value // the view the witness is shown
	srv     *httptest.Server
}

func newSplitServer(t *testing.T, honest *db.DB, witnesses []string) *splitServer {
	t.Helper()
	signer, vkey, err := translog.LoadOrCreateKey(filepath.Join(t.TempDir(), "log.key"), origin, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &splitServer{logs: map[string]*translog.Log{}, dbs: map[string]*db.DB{}, muxes: map[string]*http.ServeMux{}, vkey: vkey}
	for view, d := range map[string]*db.DB{"a": honest, "b": dbtest.SQLite(t, sets...)} {
		l, err := translog.New(context.Background(), translog.Options{DB: d, Signer: signer, Verifier: vkey, Witnesses: witnesses, WitnessQuorum: len(witnesses)})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		l.Register(mux)
		s.logs[view], s.dbs[view], s.muxes[view] = l, d, mux
		for i := range 9 {
			appendEntries(t, d, l, entry(i, ""))
		}
		appendEntries(t, d, l, entry(9, view)) // the fork: same size, another root
	}
	s.witness.Store("a")
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		view := r.Header.Get("X-View") // a client the server singles out
		if view == "" {
			view = s.witness.Load().(string)
		}
		s.muxes[view].ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// fetch is a client's GET of path in a view.
func (s *splitServer) fetch(t *testing.T, view, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.srv.URL+path, nil)
	req.Header.Set("X-View", view)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestAttackWitnessSplitView: the server serves two different checkpoints
// of the same size to two clients (Alice sees the honest tree; Bob a fork
// with a device for him he would never be shown). The witness, shown the
// first and then the second, detects the split view, refuses to cosign,
// writes the evidence and stays halted; Alice's client accepts the
// cosigned checkpoint, Bob's refuses his for want of cosignatures — even
// with Alice's cosignatures stapled to it.
func TestAttackWitnessSplitView(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		// The witness's key must be known to the server's log config, so
		// make it first against a placeholder, then point it at the server.
		skey, vkey, err := transparency.GenerateCosignerKey(rand.Reader, "witness.example/civic")
		if err != nil {
			t.Fatal(err)
		}
		s := newSplitServer(t, d, []string{vkey})
		dir := filepath.Join(t.TempDir(), "witness")
		if _, err := witness.Init(dir, "witness.example/unused", s.srv.URL, s.vkey, rand.Reader); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, witness.KeyFile), []byte(skey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := witness.Open(dir, witness.Options{})
		if err != nil {
			t.Fatal(err)
		}
		logV, _ := transparency.NewVerifier(s.vkey)
		policy, _ := transparency.NewWitnessPolicy([]string{vkey}, 1, time.Hour)

		_, a := s.fetch(t, "a", "/v1/log/checkpoint")
		_, b := s.fetch(t, "b", "/v1/log/checkpoint")
		ca, _, errA := transparency.Open(a, logV)
		cb, _, errB := transparency.Open(b, logV)
		if errA != nil || errB != nil || ca.Size != cb.Size || ca.Hash == cb.Hash {
			t.Fatalf("the double does not split: %v %v %v %v", ca, cb, errA, errB)
		}

		// The witness is shown view a: it cosigns.
		if r, err := w.Poll(ctx); err != nil || !r.Cosigned || r.Size != 10 {
			t.Fatalf("first poll: %+v %v", r, err)
		}
		// Then view b, same size, another root: refused.
		s.witness.Store("b")
		_, err = w.Poll(ctx)
		var split *witness.SplitViewError
		if !errors.As(err, &split) {
			t.Fatalf("split view not detected: %v", err)
		}
		var ev witness.Evidence
		raw, rerr := os.ReadFile(split.Evidence)
		if rerr != nil || json.Unmarshal(raw, &ev) != nil || ev.Cosigned != string(a) || ev.Offered != string(b) {
			t.Fatalf("evidence %s: %v\n%s", split.Evidence, rerr, raw)
		}
		// The evidence convinces anyone with the log key: two valid
		// checkpoints of one size, different roots.
		e1, _, err1 := transparency.Open([]byte(ev.Cosigned), logV)
		e2, _, err2 := transparency.Open([]byte(ev.Offered), logV)
		if err1 != nil || err2 != nil || e1.Size != e2.Size || e1.Hash == e2.Hash {
			t.Fatal("the evidence does not show two contradicting checkpoints")
		}
		var n int
		s.dbs["b"].QueryRow(ctx, `SELECT COUNT(*) FROM translog_cosignatures`).Scan(&n)
		if n != 0 {
			t.Fatalf("the fork got %d cosignatures", n)
		}
		// Halted for good, whatever it is shown next.
		s.witness.Store("a")
		if _, err := w.Poll(ctx); !errors.As(err, &split) {
			t.Fatalf("poll after the split view: %v", err)
		}
		if again, _ := witness.Open(dir, witness.Options{}); again != nil {
			if _, err := again.Poll(ctx); !errors.As(err, &split) {
				t.Fatalf("a restarted witness cosigned again: %v", err)
			}
		}

		// Alice's client accepts the cosigned honest checkpoint.
		code, got := s.fetch(t, "a", "/v1/log/witness/checkpoint")
		if _, cos, err := policy.Check(got, logV, time.Now()); code != 200 || err != nil || len(cos) != 1 {
			t.Fatalf("Alice's checkpoint: %d %v", code, err)
		}
		// Bob's view has no cosigned checkpoint; and b with a's cosignature
		// stapled on does not pass.
		if code, _ := s.fetch(t, "b", "/v1/log/witness/checkpoint"); code != 404 {
			t.Fatalf("Bob's view served a witnessed checkpoint: %d", code)
		}
		stapled := transparency.AddSignatures(b, strings.TrimSpace(string(got[len(a):])))
		if _, _, err := policy.Check(stapled, logV, time.Now()); !errors.Is(err, transparency.ErrQuorum) {
			t.Fatalf("Bob's checkpoint with Alice's cosignature: %v", err)
		}
	})
}

// TestAttackWitnessBadProof: after the witness cosigned the honest tree,
// the server shows it a larger tree from the fork, with the fork's own
// consistency proof — which cannot connect the cosigned root to the new
// one. The witness refuses, with the proof in the evidence. A server that
// sends a corrupted proof for an honest extension is refused too.
func TestAttackWitnessBadProof(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		skey, vkey, _ := transparency.GenerateCosignerKey(rand.Reader, "witness.example/civic")
		s := newSplitServer(t, d, []string{vkey})
		dir := filepath.Join(t.TempDir(), "witness")
		witness.Init(dir, "witness.example/unused", s.srv.URL, s.vkey, rand.Reader)
		os.WriteFile(filepath.Join(dir, witness.KeyFile), []byte(skey+"\n"), 0o600)
		w, err := witness.Open(dir, witness.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := w.Poll(ctx); err != nil || !r.Cosigned {
			t.Fatalf("first poll: %+v %v", r, err)
		}
		// An honest extension is cosigned.
		appendEntries(t, d, s.logs["a"], entry(10, "a"), entry(11, "a"))
		if r, err := w.Poll(ctx); err != nil || !r.Cosigned || r.Size != 12 {
			t.Fatalf("honest extension: %+v %v", r, err)
		}
		// The fork grows past it and is shown with its own proof.
		appendEntries(t, s.dbs["b"], s.logs["b"], entry(10, "b"), entry(11, "b"), entry(12, "b"))
		s.witness.Store("b")
		_, err = w.Poll(ctx)
		var split *witness.SplitViewError
		if !errors.As(err, &split) || !strings.Contains(split.Reason, "not consistent") {
			t.Fatalf("inconsistent checkpoint not detected: %v", err)
		}
		raw, _ := os.ReadFile(split.Evidence)
		var ev witness.Evidence
		if json.Unmarshal(raw, &ev) != nil || len(ev.Proof) == 0 {
			t.Fatalf("evidence without the proof: %s", raw)
		}
		var n int
		s.dbs["b"].QueryRow(ctx, `SELECT COUNT(*) FROM translog_cosignatures`).Scan(&n)
		if n != 0 {
			t.Fatalf("the fork got %d cosignatures", n)
		}

		// A corrupted proof for an honest extension.
		skey2, vkey2, _ := transparency.GenerateCosignerKey(rand.Reader, "witness.example/second")
		honest := newSplitServer(t, dbtest.SQLite(t, sets...), []string{vkey2})
		corrupt := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/log/proof/consistency" {
				honest.srv.Config.Handler.ServeHTTP(rw, r)
				return
			}
			rec := httptest.NewRecorder()
			honest.srv.Config.Handler.ServeHTTP(rec, r)
			var p transparency.ConsistencyProof
			json.Unmarshal(rec.Body.Bytes(), &p)
			if hs, err := transparency.DecodeHashes(p.Hashes); err == nil && len(hs) > 0 {
				hs[0][0] ^= 1
				p.Hashes = transparency.EncodeHashes(hs)
			}
			json.NewEncoder(rw).Encode(p)
		}))
		defer corrupt.Close()
		dir2 := filepath.Join(t.TempDir(), "witness2")
		witness.Init(dir2, "witness.example/unused", corrupt.URL, honest.vkey, rand.Reader)
		os.WriteFile(filepath.Join(dir2, witness.KeyFile), []byte(skey2+"\n"), 0o600)
		w2, _ := witness.Open(dir2, witness.Options{})
		if r, err := w2.Poll(ctx); err != nil || !r.Cosigned {
			t.Fatalf("first poll: %+v %v", r, err)
		}
		appendEntries(t, honest.dbs["a"], honest.logs["a"], entry(10, "a"))
		if _, err := w2.Poll(ctx); !errors.As(err, &split) {
			t.Fatalf("a corrupted proof was accepted: %v", err)
		}
	})
}
