// Package kanaldtest runs the real kanald binary for end-to-end tests: it
// builds it, starts it on a free loopback port with a fresh data directory,
// waits for its "kanald ready" line, keeps its output, reads the operator
// token and the sign-up codes it writes into the data directory, signs users up and enrols their
// devices through identity's real routes, and stops it with SIGTERM.
package kanaldtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles cmd/kanald into dir and returns the binary's path.
func Build(dir string) (string, error) {
	out := filepath.Join(dir, "kanald")
	if b, err := exec.Command("go", "build", "-o", out, "github.com/kanal-server/kanal/cmd/kanald").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build kanald: %v\n%s", err, b)
	}
	return out, nil
}

// Front, when set, is called with each started kanald's address and
// returns the address the test talks to instead: a proxy in front of it
// (cmd/kanal's TestMain puts one there that validates every exchange
// against docs/openapi.yaml). Set it before the tests run, in TestMain,
// or only in tests that do not run in parallel.
var Front func(t testing.TB, url string) string

// Server is a running kanald.
type Server struct {
	URL        string // http://127.0.0.1:port
	Direct     string // kanald's own address: URL, unless Front put a proxy before it
	DataDir    string
	Deployment string // the deployment id from the ready line

	bin  string
	env  []string // the extra environment Start was given
	cmd  *exec.Cmd
	done chan error // receives the exit once; Stop puts it back
	mu   sync.Mutex
	out  strings.Builder
}

// Start runs bin with a fresh data directory, JSON logs on 127.0.0.1:0 and
// the given extra environment ("KEY=value"; a later KANAL_DATA_DIR wins),
// and waits until it is ready. The process is stopped when the test ends,
// and its output is logged if the test failed.
func Start(t testing.TB, bin string, env ...string) *Server {
	t.Helper()
	s := start(t, bin, env...)
	if Front != nil {
		s.URL = Front(t, s.Direct)
	}
	return s
}

func start(t testing.TB, bin string, env ...string) *Server {
	t.Helper()
	s := &Server{DataDir: filepath.Join(t.TempDir(), "kanal-data"), done: make(chan error, 1), bin: bin, env: env}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "KANAL_DATA_DIR="); ok {
			s.DataDir = v
		}
	}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"KANAL_ADDR=127.0.0.1:0",
		"KANAL_DATA_DIR=" + s.DataDir,
		"KANAL_LOG_FORMAT=json",
	}, env...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.mu.Lock()
			s.out.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			var rec struct{ Msg, Addr, Deployment string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "kanald ready" {
				s.URL, s.Deployment = rec.Addr, rec.Deployment
				close(ready)
			}
		}
	}()
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("kanald output:\n%s", s.Output())
		}
	})
	select {
	case <-ready:
	case err := <-s.done:
		t.Fatalf("kanald exited before it was ready: %v\n%s", err, s.Output())
	case <-time.After(60 * time.Second):
		t.Fatalf("kanald not ready after 60s\n%s", s.Output())
	}
	s.Direct = s.URL
	return s
}

// Restart stops kanald with SIGTERM, as a deploy does, and starts it again
// on the same address with the same data directory and environment. It
// returns the new process; s is stopped.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	s.Stop(t)
	return s.StartAgain(t)
}

// StartAgain starts kanald again, after Stop or Kill, on the same address
// with the same data directory and environment.
func (s *Server) StartAgain(t testing.TB) *Server {
	t.Helper()
	addr := strings.TrimPrefix(s.Direct, "http://")
	env := append(append([]string{}, s.env...), "KANAL_DATA_DIR="+s.DataDir, "KANAL_ADDR="+addr)
	n := start(t, s.bin, env...)
	n.env = s.env
	if n.Direct != s.Direct {
		t.Fatalf("kanald came back on %s, not %s", n.Direct, s.Direct)
	}
	n.URL = s.URL // a proxy from Front forwards to the same address
	return n
}

// Output returns everything kanald printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Stop sends SIGTERM and returns the exit error and how long the exit took.
func (s *Server) Stop(t testing.TB) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err, time.Since(start)
	case <-time.After(15 * time.Second):
		t.Fatal("kanald did not exit after SIGTERM")
		return nil, 0
	}
}

// Kill ends kanald with SIGKILL, as a crash or the OOM killer would: no
// shutdown, no drained bus, no closing of the database.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("kanald did not exit after SIGKILL")
	}
}

// OperatorToken returns the operator token as the operator reads it: from
// the file (mode 0600) kanald writes it to in its data directory, at the
// first start or after `kanald operator reset`.
func (s *Server) OperatorToken(t testing.TB) string {
	t.Helper()
	file := filepath.Join(s.DataDir, "operator-token")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no operator token: %v\n%s", err, s.Output())
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, "kanal_op_") {
		t.Fatalf("%s holds no operator token (kanal_op_…)", file)
	}
	return tok
}

var codeRE = regexp.MustCompile(`\b[0-9]{8}\b`)

// Code reads the newest mail to addr from the data directory's mail/ and
// returns the 8-digit code in its body, as the user would read it.
func (s *Server) Code(t testing.TB, addr string) string {
	t.Helper()
	names := s.mails(t)
	sort.Sort(sort.Reverse(sort.StringSlice(names))) // newest first
	for _, name := range names {
		to, text := s.readMail(t, name)
		if to != addr {
			continue
		}
		code := codeRE.FindString(text)
		if code == "" {
			t.Fatalf("mail %s to %s has no 8-digit code:\n%s", name, addr, text)
		}
		return code
	}
	t.Fatalf("no mail to %s in %s", addr, filepath.Join(s.DataDir, "mail"))
	return ""
}

// Codes reads every mail kanald wrote and returns the newest code per
// recipient, as each user would read it from their inbox.
func (s *Server) Codes(t testing.TB) map[string]string {
	t.Helper()
	codes := map[string]string{}
	for _, name := range s.mails(t) { // names sort by time: later mails win
		to, text := s.readMail(t, name)
		if to == "" {
			t.Fatalf("mail %s has no recipient address", name)
		}
		if c := codeRE.FindString(text); c != "" {
			codes[to] = c
		}
	}
	return codes
}

// mails returns the names of the files in the data directory's mail/, in
// the order they were written.
func (s *Server) mails(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.DataDir, "mail"))
	if err != nil {
		t.Fatalf("read the mail directory: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// readMail returns the recipient of the mail in file name of mail/ ("" if
// it names none that parses) and its body, decoded.
func (s *Server) readMail(t testing.TB, name string) (to, text string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.DataDir, "mail", name))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail %s: %v", name, err)
	}
	if a, err := mail.ParseAddress(msg.Header.Get("To")); err == nil {
		to = a.Address
	}
	var body io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("mail %s: %v", name, err)
	}
	return to, string(b)
}
