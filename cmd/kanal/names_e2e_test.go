package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

var scripts int

// kanalScript writes a shell script that runs kanal with args in home's
// key store, for a tmux window.
func kanalScript(t *testing.T, s *session, home string, args ...string) string {
	t.Helper()
	scripts++
	path := filepath.Join(s.work, fmt.Sprintf("%s-%d.sh", home, scripts))
	var b strings.Builder
	fmt.Fprintf(&b, "cd %s\n", s.work)
	for _, e := range append([]string{"KANAL_HOME=" + filepath.Join(s.work, home)}, s.env...) {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&b, "export %s='%s'\n", k, v)
	}
	fmt.Fprintf(&b, "exec %s %s\n", bin.kanal, s.expand(strings.Join(args, " ")))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNamesNewcomerStory: the newcomer story with names, in real
// terminals against the real kanald. A citizen and an agent of the
// Bürgeramt give themselves names; the agent's screen shows the
// citizen's name, the citizen's shows the agent's name and the office; a
// group chat shows names; account ids appear only with -v.
func TestNamesNewcomerStory(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	var steps []step
	steps = append(steps, signUpSteps(s, srv, "erika", "erika@example.org", "ERIKA")...)
	steps = append(steps, signUpSteps(s, srv, "schmidt", "schmidt@worms.example", "SCHMIDT")...)
	steps = append(steps, signUpSteps(s, srv, "jonas", "jonas@example.org", "JONAS")...)
	s.run(steps)
	s.vars["OPTOKEN"] = srv.OperatorToken(t)
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run([]step{
		{cmd: "kanal admin org create --kind office 'Bürgeramt Worms'", env: op, set: map[string]string{"ORG": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role agent $ORG schmidt@worms.example", env: op},

		// Before anyone has a name, ids are what there is.
		{home: "erika", cmd: "kanal profile show", want: []string{"You have no display name yet"}},
		{home: "erika", cmd: "kanal profile set '  Erika   Mustermann '", want: []string{`You are now "Erika Mustermann" (profile version 1), shared in 0 conversations`}},
		{home: "schmidt", cmd: "kanal profile set 'Frau Schmidt'", want: []string{`You are now "Frau Schmidt"`}},
		{home: "jonas", cmd: "kanal profile set 'Jonas Becker'", want: []string{`You are now "Jonas Becker"`}},
		// Nobody can name themselves the way an agent is shown.
		{home: "jonas", cmd: "kanal profile set 'Frau Schmidt · Bürgeramt Worms'", exit: 2,
			want: []string{"kanal: profile set: contains '·'", "choose another display name"}},
		{home: "jonas", cmd: "kanal profile show", want: []string{"name     Jonas Becker", "version  1"}},

		{home: "erika", cmd: "kanal send $ORG 'Guten Tag, ich brauche einen Termin für meinen Ausweis.'", want: []string{"sent"}},
		// The agent's inbox names the citizen, not her account.
		{home: "schmidt", cmd: "kanal inbox", want: []string{"Erika Mustermann (as Bürgeramt Worms)", "Erika Mustermann: Guten Tag, ich brauche einen Termin"},
			not: []string{"$ERIKA"}},
		{home: "schmidt", cmd: "kanal profile show $ERIKA", want: []string{"name     Erika Mustermann", "kanal has not checked it"}},
	})

	x := newTmux(t, s.work)
	x.start("schmidt", kanalScript(t, s, "schmidt", "chat", "--org", "$ORG", "$ERIKA"))
	x.waitFor("schmidt", "chat with Erika Mustermann (as Bürgeramt Worms)", "Erika Mustermann: Guten Tag, ich brauche einen Termin")
	x.start("erika", kanalScript(t, s, "erika", "chat", "$ORG"))
	x.waitFor("erika", "chat with Bürgeramt Worms", "me: Guten Tag, ich brauche einen Termin")

	x.typeLine("schmidt", "Guten Tag Frau Mustermann, passt Dienstag um 10 Uhr?")
	scr := x.waitFor("erika", "Frau Schmidt · Bürgeramt Worms: Guten Tag Frau Mustermann, passt Dienstag um 10 Uhr?")
	x.typeLine("erika", "Ja, danke!")
	scr2 := x.waitFor("schmidt", "Erika Mustermann: Ja, danke!")
	for _, sc := range []string{scr, scr2} {
		for _, id := range []string{s.vars["ERIKA"], s.vars["SCHMIDT"]} {
			if strings.Contains(sc, id) {
				t.Errorf("a screen shows the account id %s without -v:\n%s", id, sc)
			}
		}
	}
	x.typeLine("schmidt", "/quit")
	x.waitFor("schmidt", "EXITED 0")
	x.typeLine("erika", "/quit")
	x.waitFor("erika", "EXITED 0")

	s.run([]step{
		{home: "erika", cmd: "kanal conversations", want: []string{"Bürgeramt Worms", "me: Ja, danke!"}, not: []string{"$SCHMIDT", "$ORG"}},
		{home: "schmidt", cmd: "kanal conversations", want: []string{"Erika Mustermann (as Bürgeramt Worms)", "Erika Mustermann: Ja, danke!"}, not: []string{"$ERIKA"}},
		// -v puts the ids next to the names.
		{home: "schmidt", cmd: "kanal -v conversations", want: []string{"Erika Mustermann ($ERIKA) (as Bürgeramt Worms ($ORG))"}},
		{home: "erika", cmd: "kanal -v inbox", want: []string{"no new messages"}},
		// The office's member list names the people this device knows.
		{home: "erika", cmd: "kanal directory org $ORG", want: []string{"Bürgeramt Worms", "Frau Schmidt", "agent", "1 device"}, not: []string{"$SCHMIDT"}},
		{home: "erika", cmd: "kanal directory org -v $ORG", want: []string{"Frau Schmidt ($SCHMIDT)"}},

		// A group: created with the SDK's route through the CLI.
		{home: "erika", cmd: "kanal group create $JONAS", set: map[string]string{"G": `(?m)^(g_[0-9a-f]{32})$`}},
		{home: "jonas", cmd: "kanal group invitations", want: []string{"$G", "member"}},
		{home: "jonas", cmd: "kanal group accept $G", want: []string{"the group has 2 members"}},
		{home: "erika", cmd: "kanal send $G 'Hallo Jonas, Treffen am Samstag?'", want: []string{"sent"}},
	})
	x.start("jonas-g", kanalScript(t, s, "jonas", "chat", "$G"))
	x.waitFor("jonas-g", "chat with group "+s.vars["G"], "Erika Mustermann: Hallo Jonas, Treffen am Samstag?")
	x.start("erika-g", kanalScript(t, s, "erika", "chat", "$G"))
	x.waitFor("erika-g", "me: Hallo Jonas, Treffen am Samstag?")
	x.typeLine("jonas-g", "Gern, um drei!")
	// What was on the screen before jonas first wrote keeps his id: his
	// name came with his first message.
	scr = x.waitFor("erika-g", "Jonas Becker: Gern, um drei!")
	for _, l := range strings.Split(scr, "\n") {
		if strings.Contains(l, "Gern, um drei!") && strings.Contains(l, s.vars["JONAS"]) {
			t.Errorf("the group chat shows jonas' account id: %s", l)
		}
	}
	x.typeLine("jonas-g", "/quit")
	x.waitFor("jonas-g", "EXITED 0")
	x.typeLine("erika-g", "/quit")
	x.waitFor("erika-g", "EXITED 0")
	s.run([]step{
		{home: "jonas", cmd: "kanal group show $G", want: []string{"created by  Erika Mustermann", "Erika Mustermann", "admin", "* Jonas Becker", "member"},
			not: []string{"$ERIKA", "$JONAS"}},
		{home: "erika", cmd: "kanal group show $G", want: []string{"* Erika Mustermann", "Jonas Becker"}, not: []string{"$JONAS"}},
		{home: "erika", cmd: "kanal conversations", want: []string{"group $G", "Jonas Becker: Gern, um drei!", "Bürgeramt Worms"},
			not: []string{"$JONAS", "$SCHMIDT"}},
		{home: "jonas", cmd: "kanal -v group show $G", want: []string{"Erika Mustermann ($ERIKA)", "* Jonas Becker ($JONAS)"}},
	})
}
