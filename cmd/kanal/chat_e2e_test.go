package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// signUpSteps registers email in home, enrolls a device and logs in,
// setting $<V> to the account id.
func signUpSteps(s *session, srv *kanaldtest.Server, home, email, v string) []step {
	return []step{
		{home: home, cmd: "kanal register " + email},
		{do: func(t *testing.T) { s.vars["CODE_"+v] = srv.Code(t, email) }},
		{home: home, cmd: "kanal verify $CODE_" + v, set: map[string]string{v: `account (\S+) `}},
		{home: home, cmd: "kanal password"},
		{home: home, cmd: "kanal device enroll --name laptop"},
		{home: home, cmd: "kanal login", want: []string{"level substantial"}},
	}
}

// tmux drives an interactive kanal in a real terminal: a tmux server on
// a private socket, one window per program.
type tmux struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T, dir string) *tmux {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is needed for the interactive chat test: %v", err)
	}
	x := &tmux{t: t, sock: filepath.Join(dir, "tmux.sock")}
	t.Cleanup(func() { exec.Command("tmux", "-S", x.sock, "kill-server").Run() })
	return x
}

func (x *tmux) cmd(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", x.sock}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// start runs a shell script in a new detached window of 160×50.
func (x *tmux) start(name, script string) {
	x.t.Helper()
	x.cmd("new-session", "-d", "-s", name, "-x", "160", "-y", "50", "sh "+script+"; echo EXITED $?; sleep 60")
}

func (x *tmux) screen(name string) string { return x.cmd("capture-pane", "-p", "-J", "-t", name) }

// waitFor waits until the window shows every want.
func (x *tmux) waitFor(name string, want ...string) string {
	x.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		scr := x.screen(name)
		missing := ""
		for _, w := range want {
			if !strings.Contains(scr, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return scr
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("window %s never showed %q:\n%s", name, missing, scr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (x *tmux) typeLine(name, line string) {
	x.t.Helper()
	x.cmd("send-keys", "-t", name, "-l", line)
	x.cmd("send-keys", "-t", name, "Enter")
}

// TestChatCLI: two citizens chat through the CLI — one-shot send, inbox
// and conversations, and the interactive chat in a real terminal (tmux),
// with read receipts coming back.
func TestChatCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := &session{t: t, work: t.TempDir(), vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	s.run(append(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	s.run([]step{
		// Login published bob's keys: alice reaches him before he has
		// used the chat.
		{cmd: "kanal send $BOB 'Hallo Bob, wie geht es?'", want: []string{"sent"}, not: []string{"new device"}},
		{cmd: "kanal send $BOB 'Zweite Nachricht'", want: []string{"sent"}},
		{home: "bob", cmd: "kanal inbox", want: []string{"$ALICE", "Hallo Bob, wie geht es?", "Zweite Nachricht"}},
		{home: "bob", cmd: "kanal inbox", want: []string{"no new messages"}, not: []string{"Hallo Bob"}},
		{home: "bob", cmd: "kanal conversations", want: []string{"WITH", "$ALICE", "2", "Zweite Nachricht"}},
		// Bad input: an id of no known kind, an unknown account.
		{cmd: "kanal send bob@example.org 'x'", exit: 2, want: []string{"is not an account (acc_…), organisation (org_…) or group (g_…) id"}},
		{cmd: "kanal -v send acc_doesnotexist 'x'", exit: 1, want: []string{"urn:kanal:problem:unknown-recipient"}},
		// Alice's inbox holds bob's delivery receipts: her history marks
		// her messages delivered.
		{cmd: "kanal inbox", want: []string{"no new messages"}},
		// Bob adds a phone: alice's next send reaches it and tells her.
		{home: "bobphone", cmd: "kanal device request > bobphone.csr"},
		{home: "bob", cmd: "kanal device approve --name phone bobphone.csr > bobphone.pem",
			set: map[string]string{"BOBPHONE": `Approved device (\S+) `}},
		{home: "bobphone", cmd: "kanal device install bobphone.pem"},
		{home: "bobphone", cmd: "kanal login"},
		{cmd: "kanal send $BOB 'Neues Telefon?'", want: []string{"$BOB has a new device ($BOBPHONE).", "sent"}},
		{cmd: "kanal send $BOB 'Noch eine'", want: []string{"sent"}, not: []string{"new device"}},
		{home: "bobphone", cmd: "kanal inbox", want: []string{"Neues Telefon?", "Noch eine"}},
	})

	// The interactive chat, in a terminal.
	x := newTmux(t, s.work)
	script := func(home, peer string) string {
		path := filepath.Join(s.work, home+"-chat.sh")
		var b strings.Builder
		fmt.Fprintf(&b, "cd %s\n", s.work)
		for _, e := range append([]string{"KANAL_HOME=" + filepath.Join(s.work, home)}, s.env...) {
			k, v, _ := strings.Cut(e, "=")
			fmt.Fprintf(&b, "export %s='%s'\n", k, v)
		}
		fmt.Fprintf(&b, "exec %s chat %s\n", bin.kanal, s.vars[peer])
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	x.start("bob", script("bob", "ALICE"))
	x.waitFor("bob", "chat with "+s.vars["ALICE"], "Hallo Bob, wie geht es?", "Zweite Nachricht")
	x.start("alice", script("alice", "BOB"))
	// Alice's history shows her two messages as delivered (✓).
	x.waitFor("alice", "me: Hallo Bob, wie geht es? ✓", "me: Zweite Nachricht ✓")

	x.typeLine("bob", "Gut, danke! Und dir?")
	x.waitFor("alice", s.vars["BOB"]+": Gut, danke! Und dir?")
	// Alice's chat read it at once: bob sees the read receipt.
	x.waitFor("bob", "✓✓ read")
	x.typeLine("alice", "Auch gut. Bis Montag!")
	x.waitFor("bob", s.vars["ALICE"]+": Auch gut. Bis Montag!")
	x.waitFor("alice", "✓✓ read")

	x.typeLine("bob", "/quit")
	x.waitFor("bob", "EXITED 0")
	x.typeLine("alice", "/quit")
	x.waitFor("alice", "EXITED 0")

	// Afterwards, the conversation is in both histories.
	s.run([]step{
		{cmd: "kanal conversations", want: []string{"$BOB", "6", "me: Auch gut. Bis Montag! ✓✓"}},
		{home: "bob", cmd: "kanal conversations", want: []string{"$ALICE", "Auch gut. Bis Montag!"}},
	})
}
