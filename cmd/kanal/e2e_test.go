package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// The end-to-end test runs the real binaries as a user would: kanald
// with its embedded defaults (SQLite, in-process NATS, mail written to
// files), and the kanal CLI, one process per command. A user's session is
// the thing under test, written as a script of steps.

var bin struct{ kanald, kanal string }

// TestMain builds kanald and, next to it, the kanal CLI under test, and
// puts the validating proxy of docs/openapi.yaml (oaCheck) in front of
// every kanald the tests start: each test's exchanges are checked against
// the description as they happen, and after the tests the run fails if a
// documented operation was never exercised (openapi_test.go).
func TestMain(m *testing.M) {
	c, err := newOACheck()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kanaldtest.Front = c.front
	kanaldtest.Main(checkedRun{m, c}, &bin.kanald, func(dir string) error {
		bin.kanal = filepath.Join(dir, "kanal")
		if b, err := exec.Command("go", "build", "-o", bin.kanal, ".").CombinedOutput(); err != nil {
			return fmt.Errorf("build kanal: %v\n%s", err, b)
		}
		return nil
	})
}

// checkedRun runs the tests, then oaCheck's checks of the whole run.
type checkedRun struct {
	m *testing.M
	c *oaCheck
}

func (r checkedRun) Run() int { return r.c.afterTests(r.m.Run()) }

// step is one line of a user's session. cmd is a command line with $VARS,
// single quotes, and "> file" or "< file" relative to the work directory.
// It runs in KANAL_HOME <work>/<home> ("alice" unless set).
type step struct {
	home string
	cmd  string
	env  []string // extra NAME=value, after $VAR expansion

	exit int      // expected exit status
	want []string // substrings of stdout+stderr, after $VAR expansion
	not  []string // substrings that must not appear

	// set names variables: the first group of the regexp, matched against
	// stdout+stderr.
	set map[string]string

	do func(t *testing.T) // a step that is not a command
}

// session runs steps in order; it stops at the first failure, since later
// steps depend on earlier ones.
type session struct {
	t    *testing.T
	work string
	vars map[string]string
	env  []string // for every kanal command
}

func (s *session) expand(str string) string {
	return os.Expand(str, func(k string) string {
		v, ok := s.vars[k]
		if !ok {
			s.t.Fatalf("undefined $%s in %q", k, str)
		}
		return v
	})
}

// split breaks a command line into words, honouring single quotes.
func split(line string) []string {
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			inQuote, inWord = !inQuote, true
		case r == ' ' && !inQuote:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func (s *session) run(steps []step) {
	t := s.t
	for i, st := range steps {
		if st.do != nil {
			st.do(t)
			continue
		}
		home := st.home
		if home == "" {
			home = "alice"
		}
		line := s.expand(st.cmd)
		words := split(line)
		var stdinFile, stdoutFile string
		for j := 0; j < len(words); j++ {
			if (words[j] == ">" || words[j] == "<") && j+1 < len(words) {
				if words[j] == ">" {
					stdoutFile = filepath.Join(s.work, words[j+1])
				} else {
					stdinFile = filepath.Join(s.work, words[j+1])
				}
				words = append(words[:j], words[j+2:]...)
				j--
			}
		}
		prog := words[0]
		switch prog {
		case "kanal":
			prog = bin.kanal
		default:
			p, err := exec.LookPath(prog)
			if err != nil {
				t.Fatalf("step %d: %s is needed for this test: %v", i+1, prog, err)
			}
			prog = p
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, prog, words[1:]...)
		cmd.Dir = s.work
		cmd.Env = append(append([]string{"KANAL_HOME=" + filepath.Join(s.work, home)}, s.env...), st.env...)
		for j, e := range cmd.Env {
			cmd.Env[j] = s.expand(e)
		}
		if stdinFile != "" {
			f, err := os.Open(stdinFile)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd.Stdin = f
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		cancel()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("step %d: %s: %v", i+1, line, err)
		}
		both := stdout.String() + stderr.String()
		t.Logf("[%s] $ %s   (exit %d, %v)\n%s", home, line, code, time.Since(start).Round(time.Millisecond), indent(both))
		if stdoutFile != "" {
			if err := os.WriteFile(stdoutFile, stdout.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if code != st.exit {
			t.Fatalf("step %d: %s: exit %d, want %d\n%s", i+1, line, code, st.exit, both)
		}
		for _, w := range st.want {
			if w = s.expand(w); !strings.Contains(both, w) {
				t.Fatalf("step %d: %s: output lacks %q:\n%s", i+1, line, w, both)
			}
		}
		for _, w := range st.not {
			if w = s.expand(w); strings.Contains(both, w) {
				t.Fatalf("step %d: %s: output has %q:\n%s", i+1, line, w, both)
			}
		}
		for name, re := range st.set {
			m := regexp.MustCompile(re).FindStringSubmatch(both)
			if m == nil {
				t.Fatalf("step %d: %s: no match for %s (%s):\n%s", i+1, line, name, re, both)
			}
			s.vars[name] = m[1]
		}
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

// TestUserSession is a citizen's first session, a second device that is
// revoked, and the operator's organisation tasks, all through the CLI.
func TestUserSession(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := &session{
		t:    t,
		work: t.TempDir(),
		vars: map[string]string{},
		env: []string{
			"PATH=" + os.Getenv("PATH"),
			"KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple",
			"KANAL_PASSWORD=Tr0ub4dor&3-but-longer",
		},
	}
	const phone = "phone" // the second device's KANAL_HOME
	s.run([]step{
		// Must-show #1: sign up, enroll, log in at level substantial.
		{cmd: "kanal register alice@example.org", want: []string{"A code is on its way to alice@example.org"}},
		{do: func(t *testing.T) { s.vars["CODE"] = srv.Code(t, "alice@example.org") }},
		{cmd: "kanal -v verify 00000000", exit: 1, want: []string{"kanal: verify: ", "(urn:kanal:problem:invalid-code)"}},
		{cmd: "kanal verify $CODE", want: []string{"Verified alice@example.org"}, set: map[string]string{"ACCOUNT": `account (\S+) `}},
		{cmd: "kanal password", want: []string{"Password set."}},
		{cmd: "kanal device enroll --name laptop", want: []string{"Enrolled device", "p256 key"}, set: map[string]string{"DEVICE": `Enrolled device (\S+) `}},
		{cmd: "kanal whoami", exit: 1, want: []string{"kanal: whoami: not logged in"}},
		{cmd: "kanal -v login", env: []string{"KANAL_PASSWORD=wrong password entirely"}, exit: 1,
			want: []string{"kanal: login: ", "(urn:kanal:problem:invalid-credentials)"}},
		{cmd: "kanal login", want: []string{"Logged in on device $DEVICE, level substantial"}},
		{cmd: "kanal whoami", want: []string{"account        $ACCOUNT", "email          alice@example.org", "device         $DEVICE", "level          substantial"}},

		// Must-show #2: the device certificate verifies with stock openssl.
		{cmd: "kanal device show > device.pem", want: []string{}},
		{cmd: "kanal directory ca > ca.pem"},
		{cmd: "openssl verify -CAfile ca.pem device.pem", want: []string{"device.pem: OK"}},

		// Must-show #3: a second device, approved by the first, then revoked.
		{home: phone, cmd: "kanal device request --key ed25519 > phone.csr"},
		{cmd: "kanal device approve --name phone phone.csr > phone.pem", want: []string{"Approved device"},
			set: map[string]string{"PHONE": `Approved device (\S+) `}},
		{home: phone, cmd: "kanal device install phone.pem", want: []string{"Installed device $PHONE of account $ACCOUNT"}},
		{home: phone, cmd: "kanal login", want: []string{"Logged in on device $PHONE, level substantial"}},
		{home: phone, cmd: "kanal whoami", want: []string{"device         $PHONE"}},
		{cmd: "kanal device list", want: []string{"* $DEVICE", "$PHONE", "active"}},
		{cmd: "kanal device revoke $PHONE", want: []string{"Revoked device $PHONE."}},
		{home: phone, cmd: "kanal -v whoami", exit: 1, want: []string{"kanal: whoami: ", "(urn:kanal:problem:device-revoked)"}},
		{home: phone, cmd: "kanal login", exit: 1, want: []string{"kanal: login: "}},
		{cmd: "kanal directory devices $ACCOUNT", want: []string{"$DEVICE", "active", "$PHONE", "revoked"}},
		{cmd: "kanal directory ca --crl > crl.pem"},
		{cmd: "openssl crl -in crl.pem -noout -text", want: []string{"Revoked Certificates"}},

		// The operator: an office, verified, with alice as an agent.
		{do: func(t *testing.T) {
			s.vars["OPTOKEN"] = srv.OperatorToken(t)
			s.vars["OPFILE"] = filepath.Join(srv.DataDir, "operator-token")
		}},
		{cmd: "kanal admin org create 'Bürgeramt Musterstadt'", exit: 1, want: []string{"no operator token"}},
		{cmd: "kanal -v admin org create --token kanal_op_wrong 'Bürgeramt Musterstadt'", exit: 1, want: []string{"(urn:kanal:problem:"}},
		{cmd: "kanal admin org create --kind office 'Bürgeramt Musterstadt'", env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"},
			set: map[string]string{"ORG": `(?m)^(\S+)$`}},
		{cmd: "kanal admin org verify --token-file $OPFILE $ORG", want: []string{"Verified office", "Bürgeramt Musterstadt"}},
		{cmd: "kanal admin org member add --role agent $ORG alice@example.org", env: []string{"KANAL_OPERATOR_TOKEN_FILE=$OPFILE"},
			want: []string{"Added account $ACCOUNT to $ORG as agent"}},
		{cmd: "kanal whoami", want: []string{"$ORG Bürgeramt Musterstadt (agent)"}},
		{cmd: "kanal directory org $ORG", want: []string{"verified", "$ACCOUNT", "agent"}},
		{cmd: "kanal admin org member remove $ORG $ACCOUNT", env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}, want: []string{"Removed account $ACCOUNT"}},

		// Mistakes in how kanal is called exit 2 and point at the help.
		{cmd: "kanal device frobnicate", exit: 2, want: []string{`unknown subcommand "frobnicate"`, "kanal help device"}},
		{cmd: "kanal verify", exit: 2, want: []string{"usage: kanal verify <code>"}},
		{cmd: "kanal help login", want: []string{"Usage: kanal login"}},

		{cmd: "kanal logout", want: []string{"Logged out."}},
		{cmd: "kanal whoami", exit: 1, want: []string{"not logged in"}},
	})
}
