package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEveryHelp walks kanal's whole command tree with the real binary:
// every command and every group answers --help, -h and 'kanal help …'
// with its usage and exit status 0, and 'kanal help' lists every command.
func TestEveryHelp(t *testing.T) {
	runKanal := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin.kanal, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kanal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	top := runKanal("help")
	groups := map[string]bool{}
	for _, cmd := range commands() {
		if cmd.summary == "" {
			t.Errorf("%s has no summary", cmd.name)
		}
		if !strings.Contains(top, "  "+cmd.name+" ") {
			t.Errorf("kanal help does not list %s", cmd.name)
		}
		words := strings.Fields(cmd.name)
		for _, form := range [][]string{append(append([]string{}, words...), "--help"), append(append([]string{}, words...), "-h"), append([]string{"help"}, words...)} {
			out := runKanal(form...)
			if !strings.HasPrefix(out, "Usage: kanal "+cmd.name+" ") || !strings.Contains(out, cmd.summary) || !strings.Contains(out, "Flags:\n") {
				t.Errorf("kanal %s:\n%s", strings.Join(form, " "), out)
			}
		}
		for n := 1; n < len(words); n++ {
			groups[strings.Join(words[:n], " ")] = true
		}
	}
	isCommand := map[string]bool{}
	for _, cmd := range commands() {
		isCommand[cmd.name] = true
	}
	for g := range groups {
		words := strings.Fields(g)
		for _, form := range [][]string{append(append([]string{}, words...), "--help"), append(append([]string{}, words...), "-h"), append([]string{"help"}, words...)} {
			out := runKanal(form...)
			// A group that is a command too ("alerts", "alerts ack") shows
			// the command's help, then its subcommands.
			if !strings.HasPrefix(out, "Usage: kanal "+g+" <subcommand>") && !(isCommand[g] && strings.Contains(out, "\nSubcommands:\n")) {
				t.Errorf("kanal %s:\n%s", strings.Join(form, " "), out)
			}
		}
	}
	for _, g := range []string{"survey", "group", "poll", "push", "org member"} {
		if !groups[g] {
			t.Errorf("no command group %q", g)
		}
	}
	if !strings.Contains(runKanal("survey", "--help"), "survey close") {
		t.Error("kanal survey --help does not list survey close")
	}
}
