package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
)

// runKanal runs the CLI in process and returns its exit status and output.
func runKanal(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	return code, stdout.String() + stderr.String()
}

func TestUsage(t *testing.T) {
	env := map[string]string{"KANAL_HOME": t.TempDir()}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no command given"},
		{[]string{"help"}, 0, "kanal register alice@example.org"},
		{[]string{"--help"}, 0, "Usage: kanal [--server URL] [-v] <command>"},
		{[]string{"help", "profile", "set"}, 0, "account ids next to names, and an error's technical chain"},
		{[]string{"help", "device"}, 0, "device enroll"},
		{[]string{"help", "admin", "org", "member", "add"}, 0, "-role role"},
		{[]string{"device", "enroll", "-h"}, 0, "Usage: kanal device enroll"},
		{[]string{"help", "nope"}, 2, `help: unknown command "nope"`},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"device"}, 2, "kanal: device: missing subcommand\nRun 'kanal help device' for usage."},
		{[]string{"admin", "org", "frob"}, 2, `kanal: admin org: unknown subcommand "frob"`},
		{[]string{"verify"}, 2, "usage: kanal verify <code>"},
		{[]string{"verify", "1", "2"}, 2, "usage: kanal verify <code>"},
		{[]string{"login", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"device", "enroll", "--key", "rsa"}, 2, `--key "rsa": want p256 or ed25519`},
		{[]string{"register", "alice"}, 2, `"alice" is not an e-mail address`},
		// Flags after arguments, and "--" before an argument that looks like one.
		{[]string{"admin", "org", "member", "add", "org_1", "a@example.org", "--role", "admin"}, 1, "no operator token"},
		{[]string{"admin", "org", "verify", "--", "-x"}, 1, "no operator token"},
		// Secrets are never read from a pipe by surprise.
		{[]string{"register", "alice@example.org"}, 1, "set KANAL_PASSPHRASE or run kanal on a terminal"},
		{[]string{"whoami"}, 1, "no key store at"},
	}
	for _, c := range cases {
		code, out := runKanal(t, env, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("kanal %s: exit %d, output:\n%s\nwant exit %d and %q", strings.Join(c.args, " "), code, out, c.code, c.want)
		}
	}
}

// TestOperatorTokenFile: the operator token is read from a file only its
// owner can read; a file others can read is refused before the token is
// sent anywhere.
func TestOperatorTokenFile(t *testing.T) {
	dir := t.TempDir()
	open, private := filepath.Join(dir, "open"), filepath.Join(dir, "private")
	if err := os.WriteFile(open, []byte("kanal_op_x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(private, []byte("kanal_op_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KANAL_SERVER": "http://127.0.0.1:1"}
	code, out := runKanal(t, env, "admin", "org", "verify", "--token-file", open, "org_1")
	if code != 1 || !strings.Contains(out, "readable by others (mode 0644)") {
		t.Fatalf("world-readable token file: exit %d\n%s", code, out)
	}
	env["KANAL_OPERATOR_TOKEN_FILE"] = private
	code, out = runKanal(t, env, "admin", "org", "verify", "org_1")
	if code != 1 || strings.Contains(out, "operator token") || !strings.Contains(out, "127.0.0.1:1") {
		t.Fatalf("private token file: exit %d\n%s (want the token read and the server tried)", code, out)
	}
}

func TestWrongPassphrase(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"KANAL_HOME": home, "KANAL_PASSPHRASE": "right", "KANAL_SERVER": "http://127.0.0.1:1"}
	// Creating the store works offline; the sign-up itself cannot reach the server.
	if code, out := runKanal(t, env, "register", "alice@example.org"); code != 1 || !strings.Contains(out, "kanal: register: http://127.0.0.1:1: ") {
		t.Fatalf("exit %d: %s", code, out)
	}
	env["KANAL_PASSPHRASE"] = "wrong"
	if code, out := runKanal(t, env, "verify", "12345678"); code != 1 || !strings.Contains(out, "kanal: verify: wrong passphrase for "+filepath.Join(home, "keystore")) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// mailbox is the identity service's mailer in the in-process test.
type mailbox struct {
	mu   sync.Mutex
	last map[string]string
}

func (m *mailbox) Send(_ context.Context, msg identity.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last[msg.To] = regexp.MustCompile(`\b[0-9]{8}\b`).FindString(msg.Body)
	return nil
}

// TestInProcess runs the CLI's commands in process against the real
// identity handlers, which is quicker to debug than the binaries; the
// end-to-end test covers the same ground with real processes.
func TestInProcess(t *testing.T) {
	d := dbtest.SQLite(t, identity.Migrations())
	authority, err := ca.Create("kanal test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mail := &mailbox{last: map[string]string{}}
	svc, err := identity.New(identity.Options{DB: d, CA: authority, Mailer: mail, Secret: make([]byte, identity.SecretSize),
		Argon2: &identity.Argon2Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	srv := httptest.NewServer(web.Handler(mux, web.Options{Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()

	work := t.TempDir()
	env := map[string]string{
		"KANAL_HOME": filepath.Join(work, "alice"), "KANAL_SERVER": srv.URL,
		"KANAL_PASSPHRASE": "pass phrase", "KANAL_PASSWORD": "a good long password",
	}
	must := func(want string, args ...string) string {
		t.Helper()
		code, out := runKanal(t, env, args...)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("kanal %s: exit %d:\n%s\nwant %q", strings.Join(args, " "), code, out, want)
		}
		return out
	}
	must("A code is on its way", "register", "alice@example.org")
	must("Verified alice@example.org", "verify", mail.last["alice@example.org"])
	must("Password set.", "password")
	must("Enrolled device", "device", "enroll", "--key", "ed25519", "--name", "test")
	must("level substantial", "login")
	must("level          substantial", "whoami")
	env["KANAL_CURRENT_PASSWORD"] = env["KANAL_PASSWORD"]
	env["KANAL_PASSWORD"] = "another good long password"
	must("Password set.", "password")
	must("level substantial", "login")
	must("Renewed the certificate", "device", "renew")
	// A key change ends this device's sessions; the new key logs in.
	oldCert := must("BEGIN CERTIFICATE", "device", "show")
	must("Changed the key of device", "device", "renew", "--new-key", "p256")
	if code, out := runKanal(t, env, "whoami"); code == 0 {
		t.Fatalf("whoami after a key change: exit 0\n%s", out)
	}
	must("level substantial", "login")
	if newCert := must("BEGIN CERTIFICATE", "device", "show"); newCert == oldCert {
		t.Fatal("the key change kept the old certificate")
	}
	must("Logged out.", "logout")

	// Enrolled before a password: the certificate is low until renewed.
	env["KANAL_HOME"] = filepath.Join(work, "bob")
	delete(env, "KANAL_CURRENT_PASSWORD")
	must("A code is on its way", "register", "bob@example.org")
	must("Verified", "verify", mail.last["bob@example.org"])
	must("certificate level low", "device", "enroll")
	must("level low", "login", "--device-only")
	must("Password set.", "password")
	must("level substantial", "device", "renew")
	must("level substantial", "login")
	code, out := runKanal(t, env, "-v", "password")
	if code != 1 || !strings.Contains(out, "(urn:kanal:problem:password-required)") {
		t.Fatalf("changing the password without the current one: exit %d\n%s", code, out)
	}
}

// TestCommandListFitsTheTerminal: 'kanal --help' lists every command in a
// column that fits 80 columns; only a usage too long for any terminal line
// stands wider, alone on its line, with its summary below.
func TestCommandListFitsTheTerminal(t *testing.T) {
	var b bytes.Buffer
	cmds := commands()
	printCommands(&b, cmds)
	usages := map[string]bool{}
	for _, c := range cmds {
		usages["  "+usageLine(c)] = true
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	summaries := 0
	for _, l := range lines {
		if utf8.RuneCountInString(l) > 80 && !usages[l] {
			t.Errorf("line wider than 80 columns: %q", l)
		}
		if !strings.HasPrefix(l, "   ") || usages[l] {
			continue
		}
		summaries++
	}
	if len(lines) < len(cmds) || summaries == 0 {
		t.Fatalf("%d lines for %d commands", len(lines), len(cmds))
	}
	for _, c := range cmds {
		if !strings.Contains(strings.Join(strings.Fields(b.String()), " "), c.summary) {
			t.Errorf("summary of %q lost in wrapping", c.name)
		}
	}
}
