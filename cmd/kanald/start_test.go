package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestFirstLogLineSaysWhereAndWhat: a newcomer's first look at kanald's
// output tells where it answers and where it keeps its data, before the
// migrations, the CA and NATS; the ready line adds the CA fingerprint a
// city publishes (docs/security.md).
func TestFirstLogLineSaysWhereAndWhat(t *testing.T) {
	s := kanaldtest.Start(t, kanaldBin)
	first, _, _ := strings.Cut(s.Output(), "\n")
	var rec struct {
		Msg, Addr, Database string
		DataDir             string `json:"data_dir"`
		PID                 int
	}
	if err := json.Unmarshal([]byte(first), &rec); err != nil {
		t.Fatalf("first line is not a log record: %q: %v", first, err)
	}
	if rec.Msg != "kanald starting" {
		t.Fatalf("first line is %q, want kanald starting", first)
	}
	if rec.Addr != s.URL {
		t.Errorf("first line's address %q, the server answers at %q", rec.Addr, s.URL)
	}
	abs, _ := filepath.Abs(s.DataDir)
	if rec.DataDir != abs {
		t.Errorf("first line's data_dir %q, want %q", rec.DataDir, abs)
	}
	if rec.Database != "sqlite:"+filepath.Join(abs, "kanal.db") {
		t.Errorf("first line's database %q", rec.Database)
	}
	if rec.PID == 0 {
		t.Error("first line has no pid")
	}
	for _, line := range strings.Split(s.Output(), "\n") {
		if !strings.Contains(line, `"kanald ready"`) {
			continue
		}
		var ready struct {
			CA string `json:"ca_sha256"`
		}
		json.Unmarshal([]byte(line), &ready)
		if len(ready.CA) != 64 {
			t.Errorf("ready line has no CA fingerprint: %s", line)
		}
	}
}

// TestFirstLogLineHidesDatabasePassword: the first line names a
// PostgreSQL database by host and name, never with its password.
func TestFirstLogLineHidesDatabasePassword(t *testing.T) {
	got := databaseSummary("postgres://kanal:s3cret@db.internal:5432/kanal?sslmode=verify-full", "x")
	if got != "postgres://db.internal:5432/kanal" {
		t.Fatalf("summary %q", got)
	}
}

// TestGoRunSIGTERMStopsKanald is the README's "go run, then stop it"
// story: SIGTERM goes to the go command (which does not pass it on), and
// kanald, its child, stops too: it logs that it stopped, its port closes
// and the process is gone.
func TestGoRunSIGTERMStopsKanald(t *testing.T) {
	if testing.Short() {
		t.Skip("links kanald through go run")
	}
	dataDir := filepath.Join(t.TempDir(), "kanal-data")
	cmd := exec.Command("go", "run", "./cmd/kanald")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "KANAL_ADDR=127.0.0.1:0", "KANAL_DATA_DIR="+dataDir, "KANAL_LOG_FORMAT=json")
	// A pipe of our own (not StdoutPipe, which Wait closes): kanald
	// inherits its write end from go run, so it reads to EOF only when
	// kanald has exited too.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer out.Close()
	lines := make(chan string, 100)
	go func() {
		// The pipe stays open while kanald, which inherited it, runs.
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var pid int
	var addr string
	var log strings.Builder
	timeout := time.After(5 * time.Minute) // the first link under load
	for addr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("go run ended before kanald was ready:\n%s", log.String())
			}
			log.WriteString(line + "\n")
			var rec struct {
				Msg, Addr string
				PID       int
			}
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if rec.Msg == "kanald starting" {
				pid = rec.PID
			}
			if rec.Msg == "kanald ready" {
				addr = rec.Addr
			}
		case <-timeout:
			cmd.Process.Kill()
			t.Fatalf("kanald not ready under go run:\n%s", log.String())
		}
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if pid == 0 || pid == cmd.Process.Pid {
		t.Fatalf("kanald's pid %d, go's %d", pid, cmd.Process.Pid)
	}
	if resp, err := http.Get(addr + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("kanald not answering under go run: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	stopped := false
	deadline := time.After(60 * time.Second)
	for open := true; open; {
		select {
		case line, ok := <-lines:
			open = ok
			log.WriteString(line + "\n")
			stopped = stopped || strings.Contains(line, `"stopped"`)
		case <-deadline:
			t.Fatalf("kanald still running a minute after go run got SIGTERM:\n%s", log.String())
		}
	}
	if !stopped {
		t.Fatalf("kanald did not stop gracefully:\n%s", log.String())
	}
	// The output closes when kanald exits; its pid is then gone (or a
	// zombie of init for a moment) and the port refuses connections.
	for i := 0; ; i++ {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			break
		}
		if i == 200 {
			t.Fatalf("kanald (pid %d) still exists", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := http.Get(addr + "/healthz"); err == nil {
		t.Fatal("kanald's port still answers")
	}
}
