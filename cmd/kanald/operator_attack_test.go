package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

var opTokenRE = regexp.MustCompile(`kanal_op_[A-Za-z0-9_-]+`)

// opStatus calls an operator route with tok and returns the status.
func opStatus(t *testing.T, base, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/admin/audit", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAttackOperatorTokenFromLogStream: the adversary reads kanald's log
// stream (a log shipper, a shared journal, a CI log). Whatever kanald
// prints must not carry a working operator token; the token goes to a
// file only its owner can read.
func TestAttackOperatorTokenFromLogStream(t *testing.T) {
	n := startNode(t, map[string]string{})
	if leaked := opTokenRE.FindString(n.Output()); leaked != "" {
		t.Fatalf("the log stream carries an operator token; GET /v1/admin/audit with it = %d", opStatus(t, n.URL, leaked))
	}
	file := filepath.Join(n.DataDir, "operator-token")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("no operator token file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("operator token file mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(n.Output(), "written to "+file+" (mode 0600)") {
		t.Fatalf("kanald did not say where the operator token is:\n%s", n.Output())
	}
	b, _ := os.ReadFile(file)
	if code := opStatus(t, n.URL, strings.TrimSpace(string(b))); code != 200 {
		t.Fatalf("the token from the file: %d", code)
	}
}

// TestAttackStolenOperatorTokenAfterReset: the adversary holds a copy of
// the operator token (an old backup of the token file). The operator runs
// `kanald operator reset` while kanald keeps serving; the copy stops
// working on the running node at once, the new token works, and nothing
// the adversary tried changed the deployment. Both engines.
func TestAttackStolenOperatorTokenAfterReset(t *testing.T) {
	engines := map[string]func() map[string]string{
		"sqlite": func() map[string]string {
			return map[string]string{"KANAL_DATA_DIR": filepath.Join(t.TempDir(), "kanal-data")}
		},
	}
	if os.Getenv("KANAL_TEST_POSTGRES") != "" || os.Getenv("CI") != "" {
		engines["postgres"] = func() map[string]string {
			base := dbtest.PostgresURL(t)
			return map[string]string{"KANAL_DATA_DIR": filepath.Join(t.TempDir(), "kanal-data"),
				"KANAL_DATABASE_URL": dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))}
		}
	}
	for name, envFn := range engines {
		t.Run(name, func(t *testing.T) {
			env := envFn()
			n := startNode(t, env)
			stolen := n.OperatorToken(t)
			if code := opStatus(t, n.URL, stolen); code != 200 {
				t.Fatalf("operator token before reset: %d", code)
			}

			// The operator resets, from the host, while the node runs.
			cmd := exec.CommandContext(context.Background(), kanaldBin, "operator", "reset")
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kanald operator reset: %v\n%s", err, out)
			}
			if opTokenRE.Match(out) {
				t.Fatalf("reset printed the new token:\n%s", out)
			}
			fresh := n.OperatorToken(t)
			if fresh == stolen {
				t.Fatal("reset kept the old token")
			}

			// The adversary's copy is refused, and changes nothing.
			if code := opStatus(t, n.URL, stolen); code != 401 {
				t.Fatalf("stolen token after reset: %d, want 401", code)
			}
			req, _ := http.NewRequest("POST", n.URL+"/v1/admin/orgs", strings.NewReader(`{"name":"Fake Amt","kind":"office"}`))
			req.Header.Set("Authorization", "Bearer "+stolen)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("stolen token created an organisation: %d", resp.StatusCode)
			}
			if code := opStatus(t, n.URL, fresh); code != 200 {
				t.Fatalf("new token: %d", code)
			}
			if strings.Contains(auditText(t, n.URL, fresh), "Fake Amt") {
				t.Fatal("the refused request reached the audit log as a change")
			}
		})
	}
}

func auditText(t *testing.T, base, tok string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/admin/audit", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOperatorRequestsAudited: on the real binary, an operator request to
// another domain's route (payments' books) is in identity's audit log with
// the token's id, and a node whose token runs out soon says so at start.
func TestOperatorRequestsAudited(t *testing.T) {
	n := startNode(t, map[string]string{"KANAL_OPERATOR_TOKEN_TTL": "1h"})
	tok := n.OperatorToken(t)
	req, _ := http.NewRequest("GET", n.URL+"/v1/admin/payments/books", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("books: %d", resp.StatusCode)
	}
	var al struct {
		Entries []struct{ Actor, Action, Detail string }
	}
	if err := json.Unmarshal([]byte(auditText(t, n.URL, tok)), &al); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range al.Entries {
		if e.Actor == "operator:op1" && e.Action == "operator.request" && e.Detail == "GET /v1/admin/payments/books" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no audit entry for the books request: %+v", al.Entries)
	}
	if !strings.Contains(n.Output(), "the operator token expires soon") {
		t.Fatalf("no expiry warning:\n%s", n.Output())
	}
}
