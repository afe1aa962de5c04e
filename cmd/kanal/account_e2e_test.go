package main

import (
	"archive/zip"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestAccountExportDeleteCLI is a citizen who downloads their data, then
// erases their account, with the real binaries: the archive holds what
// its README says, the erasure needs the account id typed back, and
// afterwards the old device cannot log in while the group they were in
// goes on without them.
func TestAccountExportDeleteCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	s.run(append(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	s.run([]step{
		{cmd: "kanal group create $BOB", set: map[string]string{"G": `(?m)^(g_[0-9a-f]{32})$`}},
		{home: "bob", cmd: "kanal group accept $G", want: []string{"You are now a member"}},
		{cmd: "kanal push subscribe https://push.example.org/alice", want: []string{"Subscribed"}},
		{cmd: "kanal account export alice.txt", exit: 2, want: []string{".zip"}},
		{cmd: "kanal account export alice.zip", want: []string{"Wrote alice.zip", "README.txt"}},
		{cmd: "kanal account export alice.zip", exit: 1, want: []string{"exists"}},
		{do: func(t *testing.T) {
			files := readZip(t, filepath.Join(s.work, "alice.zip"))
			readme := files["README.txt"]
			for name := range files {
				if name != "README.txt" && !strings.Contains(readme, "\n"+name+"\n") {
					t.Errorf("README.txt does not explain %s:\n%s", name, readme)
				}
			}
			for _, want := range []string{"account.json", "devices.json", "memberships.json", "audit.json", "messaging.json", "payments.json", "surveys.json", "push.json"} {
				if _, ok := files[want]; !ok {
					t.Errorf("the archive lacks %s", want)
				}
			}
			var acc struct {
				AccountID string `json:"account_id"`
				Email     string `json:"email"`
			}
			unmarshal(t, files["account.json"], &acc)
			if acc.AccountID != s.vars["ALICE"] || acc.Email != "alice@example.org" {
				t.Errorf("account.json = %+v", acc)
			}
			var msg struct {
				Groups []struct {
					GroupID string `json:"group_id"`
					Role    string `json:"role"`
				} `json:"groups"`
			}
			unmarshal(t, files["messaging.json"], &msg)
			if len(msg.Groups) != 1 || msg.Groups[0].GroupID != s.vars["G"] || msg.Groups[0].Role != "admin" {
				t.Errorf("messaging.json groups = %+v, want %s as admin", msg.Groups, s.vars["G"])
			}
			var push []struct {
				Endpoint string `json:"endpoint"`
			}
			unmarshal(t, files["push.json"], &push)
			if len(push) != 1 || push[0].Endpoint != "https://push.example.org/alice" {
				t.Errorf("push.json = %+v", push)
			}
		}},
		// No terminal and no --confirm, or the wrong id: nothing happens.
		{cmd: "kanal account delete", exit: 1, want: []string{"not confirmed"}},
		{cmd: "kanal account delete --confirm $BOB", exit: 1, want: []string{"not confirmed", "nothing was erased"}},
		{cmd: "kanal whoami", want: []string{"$ALICE"}},
		{cmd: "kanal account delete --confirm $ALICE", want: []string{"Account $ALICE is erased", "§ 147 AO"}},
		{cmd: "kanal whoami", exit: 1, want: []string{"not logged in"}},
		{cmd: "kanal login", exit: 1, want: []string{"revoked"}},
		{home: "bob", cmd: "kanal group show $G", want: []string{"$BOB"}, not: []string{"$ALICE"}},
	})
}

func readZip(t *testing.T, path string) map[string]string {
	t.Helper()
	z, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	out := map[string]string{}
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = string(b)
	}
	return out
}

func unmarshal(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v in %s", err, s)
	}
}
