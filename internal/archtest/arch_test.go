package archtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/kanal-server/kanal"

// domains are the top-level packages that may not import one another.
// identity sits below them: every domain may import it, it imports none.
var domains = []string{"messaging", "surveys", "payments", "vault", "miniapps"}

// pkg is what the rules need from `go list`.
type pkg struct {
	ImportPath string
	Doc        string
	Standard   bool
	Deps       []string
	Imports    []string
	Module     *struct{ Path string }
}

// listPackages runs `go list -deps -json` over the module.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// area returns the top-level directory of a kanal package ("keys",
// "messaging", "internal", "cmd"), or "" for a package outside the module.
func area(path string) string {
	if path != module && !strings.HasPrefix(path, module+"/") {
		return ""
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	top, _, _ := strings.Cut(rest, "/")
	return top
}

func isDomain(a string) bool {
	for _, d := range domains {
		if a == d {
			return true
		}
	}
	return false
}

// keysMayUse says what package from, under keys, may depend on: the
// standard library, golang.org/x/crypto (and x/sys, which it needs) and
// circl; keys/transparency also golang.org/x/mod's sumdb packages (tlog
// for the Merkle tree and its proofs, note for signed checkpoints), which
// are the reference implementation of the formats the log publishes.
func keysMayUse(from string, p pkg) bool {
	if p.Standard || area(p.ImportPath) == "keys" {
		return true
	}
	if from == module+"/keys/transparency" && strings.HasPrefix(p.ImportPath, "golang.org/x/mod/") {
		return true
	}
	for _, prefix := range []string{"golang.org/x/crypto/", "golang.org/x/sys/", "github.com/cloudflare/circl/"} {
		if strings.HasPrefix(p.ImportPath, prefix) {
			return true
		}
	}
	return false
}

// harness reports a test harness: a package under internal whose name
// ends in "test" (kanaldtest, dbtest). A harness drives the real server
// the way a client does, so it may import the domains' clients; in return
// no package but a harness may import one (tests are not in the graph
// `go list -deps` gives, so any importer there is production code).
func harness(path string) bool {
	return area(path) == "internal" && strings.HasSuffix(path, "test")
}

// violations applies docs/design.md's dependency rules to a package graph:
// cmd → domains → identity → keys, siblings apart, internal below domains.
func violations(pkgs map[string]pkg) []string {
	var out []string
	for _, p := range pkgs {
		from := area(p.ImportPath)
		if from == "" {
			continue
		}
		for _, dep := range p.Deps {
			to := area(dep)
			d := pkgs[dep]
			switch {
			case from == "keys" && !keysMayUse(p.ImportPath, d):
				out = append(out, fmt.Sprintf("%s depends on %s: keys may use only the standard library, x/crypto and circl", p.ImportPath, dep))
			case to == "cmd" && from != "cmd":
				out = append(out, fmt.Sprintf("%s depends on %s: nothing imports a command", p.ImportPath, dep))
			case harness(dep) && !harness(p.ImportPath):
				out = append(out, fmt.Sprintf("%s depends on %s: only tests use a test harness", p.ImportPath, dep))
			case from == "internal" && !harness(p.ImportPath) && (isDomain(to) || to == "identity"):
				out = append(out, fmt.Sprintf("%s depends on %s: internal never imports a domain", p.ImportPath, dep))
			case from == "identity" && isDomain(to):
				out = append(out, fmt.Sprintf("%s depends on %s: identity sits below the domains", p.ImportPath, dep))
			case isDomain(from) && isDomain(to) && from != to:
				out = append(out, fmt.Sprintf("%s depends on %s: sibling domains never import each other; declare an interface and wire it in cmd/kanald", p.ImportPath, dep))
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestImportDirection(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// TestRulesCatchForbiddenImports proves the rules bite: each graph below
// has one forbidden edge, and violations must report it.
func TestRulesCatchForbiddenImports(t *testing.T) {
	std := pkg{ImportPath: "fmt", Standard: true}
	mk := func(from string, deps ...string) map[string]pkg {
		g := map[string]pkg{"fmt": std}
		for _, d := range deps {
			if _, ok := g[d]; !ok {
				g[d] = pkg{ImportPath: d}
			}
		}
		g[from] = pkg{ImportPath: from, Deps: append([]string{"fmt"}, deps...)}
		return g
	}
	bad := map[string]map[string]pkg{
		"keys uses a database":    mk(module+"/keys", "github.com/jackc/pgx/v5"),
		"keys uses identity":      mk(module+"/keys", module+"/identity"),
		"keys uses x/mod":         mk(module+"/keys", "golang.org/x/mod/sumdb/tlog"),
		"payments uses messaging": mk(module+"/payments", module+"/messaging"),
		"surveys uses vault/sub":  mk(module+"/surveys/tally", module+"/vault/blob"),
		"internal uses a domain":  mk(module+"/internal/web", module+"/messaging"),
		"internal uses identity":  mk(module+"/internal/db", module+"/identity"),
		"identity uses a domain":  mk(module+"/identity", module+"/payments"),
		"a domain uses a command": mk(module+"/messaging", module+"/cmd/kanald"),
		"kanald uses a harness":   mk(module+"/cmd/kanald", module+"/internal/kanaldtest"),
		"a domain uses a harness": mk(module+"/payments", module+"/internal/db/dbtest"),
		"forms uses payments":     mk(module+"/miniapps/forms", module+"/payments/jws"),
		"forms uses messaging":    mk(module+"/miniapps/forms", module+"/messaging/kind"),
	}
	for name, g := range bad {
		if v := violations(g); len(v) != 1 {
			t.Errorf("%s: got %d violations %v, want 1", name, len(v), v)
		}
	}
	good := map[string]map[string]pkg{
		"keys uses x/crypto":        mk(module+"/keys", "golang.org/x/crypto/chacha20poly1305"),
		"the log uses x/mod":        mk(module+"/keys/transparency", "golang.org/x/mod/sumdb/note"),
		"messaging uses identity":   mk(module+"/messaging", module+"/identity", module+"/keys", module+"/internal/db"),
		"cmd uses everything":       mk(module+"/cmd/kanald", module+"/messaging", module+"/payments"),
		"a domain uses its own sub": mk(module+"/messaging", module+"/messaging/push"),
		"a harness uses clients":    mk(module+"/internal/kanaldtest", module+"/identity/client", module+"/messaging/client"),
	}
	for name, g := range good {
		if v := violations(g); len(v) != 0 {
			t.Errorf("%s: got violations %v, want none", name, v)
		}
	}
}

// TestFormsStandAlone: miniapps/forms, the first declarative mini-app,
// reaches chats, surveys and payments only through cmd's wiring — a
// form template is checked by the same code on a client that holds no
// messaging or payments package.
func TestFormsStandAlone(t *testing.T) {
	pkgs := listPackages(t)
	const forms = module + "/miniapps/forms"
	if _, ok := pkgs[forms]; !ok {
		t.Fatalf("%s is missing", forms)
	}
	for path, p := range pkgs {
		if path != forms && !strings.HasPrefix(path, forms+"/") {
			continue
		}
		for _, dep := range p.Deps {
			switch area(dep) {
			case "messaging", "surveys", "payments":
				t.Errorf("%s depends on %s", path, dep)
			}
		}
	}
}

// TestPackagesAreDocumented keeps a doc comment on every package.
func TestPackagesAreDocumented(t *testing.T) {
	for _, p := range listPackages(t) {
		if area(p.ImportPath) == "" {
			continue
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
