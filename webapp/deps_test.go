package webapp

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/kanal-server/kanal"

// serverOnly are packages (prefixes) that never run in the browser: the
// SQL drivers, the NATS client and server, the metrics, the OpenID
// Connect relying party, and kanal's own server plumbing.
var serverOnly = []string{
	"github.com/jackc/pgx",
	"github.com/nats-io/",
	"github.com/prometheus/",
	"google.golang.org/protobuf",
	"github.com/coreos/go-oidc",
	"golang.org/x/oauth2",
	"github.com/go-jose/go-jose",
	module + "/internal/db",
	module + "/internal/web",
	module + "/internal/bus",
}

// notYetMoved are the server packages the SDK still imports for their
// wire types (docs/web.md, "Cost: size"); each brings server-only packages
// into kanal.wasm. Moving a package's wire types into its wire package
// takes it off this list, and the test below then keeps it off.
var notYetMoved = map[string]bool{
	module + "/identity":          true,
	module + "/identity/translog": true,
	module + "/messaging":         true,
	module + "/miniapps/cases":    true, // case statuses and views, beside the case inbox's server code
	module + "/miniapps/forms":    true, // templates and answers, beside the catalogue's server code
	module + "/payments":          true,
	module + "/surveys":           true,
}

// TestWasmServerFree: kanal.wasm reaches no server-only package except
// through the server packages listed in notYetMoved, and each of those is
// still reached (else it must leave the list). A new import of the server
// from the SDK, or a wire package that grows a server dependency, fails.
func TestWasmServerFree(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	imports := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		imports[f[0]] = f[1:]
	}
	// Walk the graph from the web app, not entering notYetMoved.
	reached, via := map[string]bool{}, map[string]string{}
	queue := []string{module + "/webapp/wasm"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if reached[p] {
			continue
		}
		reached[p] = true
		if notYetMoved[p] {
			continue
		}
		for _, q := range imports[p] {
			if !reached[q] {
				via[q] = p
				queue = append(queue, q)
			}
		}
	}
	for p := range reached {
		for _, bad := range serverOnly {
			if strings.HasPrefix(p, bad) {
				t.Errorf("kanal.wasm depends on %s (imported by %s): a server-only package; give the SDK a wire type instead", p, via[p])
			}
		}
	}
	for p := range notYetMoved {
		if !reached[p] {
			t.Errorf("kanal.wasm no longer depends on %s: take it off notYetMoved", p)
		}
	}
}
