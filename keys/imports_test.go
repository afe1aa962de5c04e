package keys

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps keys pure: non-test files may import only the standard
// library, golang.org/x/crypto and github.com/cloudflare/circl, and none of
// the standard packages that do I/O, log or hand out non-cryptographic
// randomness. Time values may pass through (a cosignature carries its
// timestamp) but keys never reads the clock or waits: the caller says what
// time it is.
func TestImports(t *testing.T) {
	forbidden := map[string]bool{
		"os": true, "os/exec": true, "net": true, "net/http": true, "log": true, "log/slog": true,
		"math/rand": true, "math/rand/v2": true, "unsafe": true, "io/ioutil": true,
		"syscall": true, "database/sql": true,
	}
	clock := map[string]bool{
		"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "AfterFunc": true,
		"Tick": true, "NewTimer": true, "NewTicker": true,
	}
	fset := token.NewFileSet()
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" && clock[sel.Sel.Name] {
					t.Errorf("%s: time.%s reads the clock", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
		n++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first := strings.Split(p, "/")[0]
			allowed := !strings.Contains(first, ".") ||
				strings.HasPrefix(p, "golang.org/x/crypto/") ||
				strings.HasPrefix(p, "github.com/cloudflare/circl/") ||
				// The log's formats are those of Go's checksum database;
				// its reference packages build and check them.
				(filepath.Dir(path) == "transparency" && strings.HasPrefix(p, "golang.org/x/mod/sumdb/"))
			if !allowed || forbidden[p] {
				t.Errorf("%s imports %q", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d files checked", n)
	}
}

// TestPackageDoc keeps the package doc comment.
func TestPackageDoc(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), "Package keys ") {
		t.Fatal("keys/doc.go must carry the package doc comment")
	}
}
