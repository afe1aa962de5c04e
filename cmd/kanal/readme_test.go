package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeListsEveryCommand: the README's command-line section names
// every command kanal has, so that a newcomer finds each feature there.
func TestReadmeListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## The command line\n")
	if start < 0 {
		t.Fatal("README.md has no section '## The command line'")
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	for _, cmd := range commands() {
		re := regexp.MustCompile("`kanal " + regexp.QuoteMeta(cmd.name) + "(`| )")
		if !re.MatchString(section) {
			t.Errorf("README.md's command line section lacks `kanal %s` (%s): add a row to its tables", cmd.name, cmd.summary)
		}
	}
}
