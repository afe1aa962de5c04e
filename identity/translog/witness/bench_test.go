package witness_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/identity/translog/witness"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

// BenchmarkWitnessPoll is one witness poll against a real log on SQLite
// over HTTP, after one new entry: fetch the checkpoint, fetch and check
// the consistency proof from the last cosigned one, save the state,
// cosign, submit (the server verifies and stores the cosignature). The
// append itself is not timed.
func BenchmarkWitnessPoll(b *testing.B) {
	d := dbtest.SQLite(b, sets...)
	skey, vkey, _ := transparency.GenerateCosignerKey(rand.Reader, "witness.example/bench")
	signer, logKey, err := translog.LoadOrCreateKey(filepath.Join(b.TempDir(), "log.key"), origin, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	l, err := translog.New(context.Background(), translog.Options{DB: d, Signer: signer, Verifier: logKey, Witnesses: []string{vkey}, WitnessQuorum: 1})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	l.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	t := &testing.T{}
	for i := range 1000 {
		appendEntries(t, d, l, entry(i, ""))
	}
	dir := filepath.Join(b.TempDir(), "w")
	witness.Init(dir, "witness.example/unused", srv.URL, logKey, rand.Reader)
	os.WriteFile(filepath.Join(dir, witness.KeyFile), []byte(skey+"\n"), 0o600)
	w, err := witness.Open(dir, witness.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := w.Poll(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		appendEntries(t, d, l, entry(1000+i, ""))
		b.StartTimer()
		if r, err := w.Poll(ctx); err != nil || !r.Cosigned {
			b.Fatal(r, err)
		}
	}
}
