package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// chatPair signs alice and bob up on srv for a chat test.
func chatPair(t *testing.T, srv *kanaldtest.Server) *session {
	s := &session{t: t, work: t.TempDir(), vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	s.run(append(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	return s
}

// chatScript writes a shell script that runs 'kanal chat <peer>' in home.
func chatScript(t *testing.T, s *session, home, peer string) string {
	t.Helper()
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

// TestChatSurvivesRestart: bob's chat is open in a terminal when kanald
// restarts, as in a deploy. The chat says it is reconnecting, comes back
// by itself, says so, and shows the message alice sent meanwhile; bob's
// next line reaches alice.
func TestChatSurvivesRestart(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := chatPair(t, srv)
	s.run([]step{{cmd: "kanal send $BOB 'Vor dem Neustart'", want: []string{"sent"}}})
	x := newTmux(t, s.work)
	x.start("bob", chatScript(t, s, "bob", "ALICE"))
	x.waitFor("bob", "Vor dem Neustart")

	srv.Stop(t)
	x.waitFor("bob", "reconnecting…")
	srv = srv.StartAgain(t)
	s.run([]step{{cmd: "kanal send $BOB 'Während des Neustarts geschrieben'", want: []string{"sent"}}})
	scr := x.waitFor("bob", "(reconnected)", s.vars["ALICE"]+": Während des Neustarts geschrieben")
	if strings.Contains(scr, "EXITED") || strings.Contains(scr, "connection lost:") {
		t.Fatalf("the chat ended:\n%s", scr)
	}
	if strings.Count(scr, "Vor dem Neustart") != 1 || strings.Count(scr, "Während des Neustarts geschrieben") != 1 {
		t.Fatalf("a message shows twice:\n%s", scr)
	}
	x.typeLine("bob", "Wieder da")
	x.waitFor("bob", "me: Wieder da")
	s.run([]step{{cmd: "kanal inbox", want: []string{"Wieder da"}}})
	x.typeLine("bob", "/quit")
	x.waitFor("bob", "EXITED 0")
}

// TestChatEndedSaysWhyInPlainWords: bob logs out in another terminal while
// his chat is open. The chat does not try to reconnect forever: it ends at
// once, saying in plain words that he was logged out and what to do, with
// no close code or protocol word.
func TestChatEndedSaysWhyInPlainWords(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := chatPair(t, srv)
	s.run([]step{{cmd: "kanal send $BOB 'Hallo'", want: []string{"sent"}}})
	x := newTmux(t, s.work)
	x.start("bob", chatScript(t, s, "bob", "ALICE"))
	x.waitFor("bob", "Hallo")
	s.run([]step{{home: "bob", cmd: "kanal logout", want: []string{"Logged out."}}})
	scr := x.waitFor("bob", "EXITED 1")
	for _, want := range []string{"the chat ended.", "You were logged out", "kanal login"} {
		if !strings.Contains(scr, want) {
			t.Errorf("the chat's last words lack %q:\n%s", want, scr)
		}
	}
	for _, not := range []string{"4002", "websocket", "reconnecting", "status"} {
		if strings.Contains(scr, not) {
			t.Errorf("the chat's last words show %q:\n%s", not, scr)
		}
	}
}
