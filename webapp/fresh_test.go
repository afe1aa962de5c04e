package webapp_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestWasmFresh: the committed static/kanal.wasm.gz and wasm_exec.js are
// what go generate ./webapp builds from the source as it is, so that what
// kanald serves is the SDK in this tree. It runs gen.sh into a temporary
// directory and compares the WebAssembly byte for byte (the gzip stream
// may differ between gzip versions; its header must carry no name and no
// time).
func TestWasmFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("rebuilding kanal.wasm skipped under -short")
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "gen.sh", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, out)
	}
	committed, built := wasmOf(t, "static/kanal.wasm.gz"), wasmOf(t, filepath.Join(dir, "kanal.wasm.gz"))
	if !bytes.Equal(committed, built) {
		t.Fatalf("static/kanal.wasm.gz is stale: it holds %d bytes of WebAssembly, the source builds %d other bytes; "+
			"run go generate ./webapp and commit static/kanal.wasm.gz (with the Go of go.mod)", len(committed), len(built))
	}
	want, err := os.ReadFile(filepath.Join(dir, "wasm_exec.js"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile("static/wasm_exec.js"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("static/wasm_exec.js is not the one of this Go (%v): run go generate ./webapp and commit it", err)
	}
}

// wasmOf reads a gzip file, checks that its header names no file and no
// time (gzip -n, so that the same module gives the same file), and
// returns what it holds.
func wasmOf(t *testing.T, name string) []byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: the gzip header carries the name %q and the time %v: build it with gzip -n (gen.sh)", name, zr.Name, zr.ModTime)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !bytes.HasPrefix(b, []byte("\x00asm")) {
		t.Fatalf("%s holds no WebAssembly module", name)
	}
	return b
}
