package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestSurveyCLI: a council organiser and a citizen through the CLI only —
// create and sign, invite through the chat, list, vote with a blind token,
// check the receipt, publish the tally key after closing, recount.
func TestSurveyCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := &session{t: t, work: t.TempDir(), vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	s.run(append(signUpSteps(s, srv, "rat", "rat@example.org", "RAT"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	// The survey closes shortly after it is made; the steps before the
	// tally take a few seconds.
	closes := time.Now().Add(30 * time.Second).UTC().Truncate(time.Second)
	def := fmt.Sprintf(`{"title": "Spielplatz Lindenstraße", "closes_at": %q, "results": "public",
		"audience": {"kind": "level", "level": "substantial"},
		"questions": [{"kind": "single", "prompt": "Neuer Spielplatz?", "options": ["Ja", "Nein"]},
		              {"kind": "scale", "prompt": "Wie wichtig ist Ihnen das?"}]}`, closes.Format(time.RFC3339))
	later := fmt.Sprintf(`{"title": "%%s", "opens_at": %q, "closes_at": %q, "results": "organisation",
		"audience": {"kind": "level", "level": "low"},
		"questions": [{"kind": "text", "prompt": "Ideen?", "max": 200}]}`,
		closes.Add(time.Hour).Format(time.RFC3339), closes.Add(2*time.Hour).Format(time.RFC3339))
	// Files kanald would refuse: one option only; closed already.
	bad := `{"title": "Kaputt", "closes_at": %q, "audience": {"kind": "level", "level": "low"}, "results": "public",
		"questions": [{"kind": "single", "prompt": "Nur eine Wahl?", "options": [%s]}]}`
	for name, content := range map[string]string{"survey.json": def, "later.json": fmt.Sprintf(later, "Haushalt 2027"),
		"later2.json": fmt.Sprintf(later, "Haushalt 2027 und 2028"),
		"soon.json": fmt.Sprintf(`{"title": "Parkbank", "closes_at": %q, "audience": {"kind": "level", "level": "low"}, "results": "public",
			"questions": [{"kind": "single", "prompt": "Neue Bank?", "options": ["Ja", "Nein"]}]}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)),
		"bad-options.json": fmt.Sprintf(bad, closes.Format(time.RFC3339), `"Ja"`),
		"bad-closed.json":  fmt.Sprintf(bad, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), `"Ja", "Nein"`)} {
		if err := os.WriteFile(filepath.Join(s.work, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.run([]step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind council 'Rat der Stadt Musterstadt'", env: op, set: map[string]string{"ORG": `(?m)^(\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role organiser $ORG rat@example.org", env: op},
		// A citizen may not organise.
		{home: "bob", cmd: "kanal survey create --org $ORG survey.json", exit: 1, want: []string{"no membership"}},
		// Bob's device comes online once and publishes its keys.
		{home: "bob", cmd: "kanal inbox", want: []string{"no new messages"}},

		// Invalid files are refused before kanald makes a draft: no
		// orphan draft (and RSA key) on the server.
		{home: "rat", cmd: "kanal survey create --org $ORG bad-options.json", exit: 1, want: []string{"2..30 options"}},
		{home: "rat", cmd: "kanal survey create --org $ORG bad-closed.json", exit: 1, want: []string{"in the past"}},
		{do: func(t *testing.T) {
			if strings.Contains(srv.Output(), `"route":"POST /v1/surveys"`) {
				t.Fatal("an invalid survey file created a draft on the server")
			}
		}},
		{home: "rat", cmd: "kanal survey create --org $ORG survey.json", want: []string{"created (anonymous)"},
			set: map[string]string{"SURVEY": `Survey (srv_\S+) created`}},
		// A survey that has not opened yet may be replaced, and shows the
		// new definition, signed again.
		{home: "rat", cmd: "kanal survey create --org $ORG later.json", set: map[string]string{"LATER": `Survey (srv_\S+) created`}},
		{home: "rat", cmd: "kanal survey edit $LATER later2.json", want: []string{"replaced"}},
		{home: "rat", cmd: "kanal survey show $LATER > later-signed.json"},
		{home: "rat", cmd: "kanal directory ca > ca.pem"},
		{home: "rat", cmd: "kanal survey verify later-signed.json --ca ca.pem", want: []string{"Haushalt 2027 und 2028"}},
		// It opened when it was made: no more changes.
		{home: "rat", cmd: "kanal -v survey edit $SURVEY survey.json", exit: 1, want: []string{"survey-opened"}},
		{home: "rat", cmd: "kanal survey invite $SURVEY $BOB", want: []string{"Invited $BOB"}},
		{home: "bob", cmd: "kanal inbox", want: []string{"survey invitation: Spielplatz Lindenstraße ($SURVEY)"}},
		{home: "bob", cmd: "kanal survey list", want: []string{"$SURVEY", "Spielplatz Lindenstraße"}},
		{home: "bob", cmd: "kanal survey vote $SURVEY --answers '[0, 7]'", exit: 1, want: []string{"answer 2"}},
		{home: "bob", cmd: "kanal survey vote $SURVEY --answers '[1, 4]' --delay 200ms", want: []string{"Ballot counted as entry 1"}},
		{home: "bob", cmd: "kanal -v survey vote $SURVEY --answers '[0, 4]'", exit: 1, want: []string{"token already issued: this account already received", "token-already-issued"}},
		{home: "bob", cmd: "kanal survey receipt $SURVEY", want: []string{"entry 1 on the board"}},
		// Publishing before closing is refused on the device: the tally key
		// never reaches kanald (no tally request in its access log).
		{home: "rat", cmd: "kanal survey publish $SURVEY", exit: 1, want: []string{"closes at", "stays on this device"}},
		{do: func(t *testing.T) {
			if strings.Contains(srv.Output(), `"route":"POST /v1/surveys/{id}/tally"`) {
				t.Fatal("kanald received a tally request (and the tally key) before the survey closed")
			}
		}},
		{home: "bob", cmd: "kanal survey publish $SURVEY", exit: 1, want: []string{"no tally key"}},
		{do: func(t *testing.T) { time.Sleep(time.Until(closes) + 500*time.Millisecond) }},
		{home: "bob", cmd: "kanal -v survey vote $SURVEY --answers '[0, 4]'", exit: 1, want: []string{"survey-not-open"}},
		{home: "rat", cmd: "kanal survey publish $SURVEY", want: []string{"published"}},
		{home: "bob", cmd: "kanal survey tally $SURVEY", want: []string{"1 ballots: 1 valid, 0 invalid", "agrees with the result kanald signed"}},
		{home: "bob", cmd: "kanal survey result $SURVEY --csv result.csv --svg result.svg", want: []string{"Nein", "100.0%"}},
		// Closing early: the organiser's device signs "closed now"; then
		// the tally key may go, an hour before closes_at.
		{home: "rat", cmd: "kanal survey create --org $ORG soon.json", set: map[string]string{"SOON": `Survey (srv_\S+) created`}},
		{home: "bob", cmd: "kanal survey close $SOON", exit: 1, want: []string{"not allowed: only an organiser, admin or owner"}},
		{home: "rat", cmd: "kanal survey publish $SOON", exit: 1, want: []string{"stays on this device"}},
		{home: "rat", cmd: "kanal survey close $SOON", want: []string{"closed early"}},
		{home: "rat", cmd: "kanal survey publish $SOON", want: []string{"published"}},
	})
	for _, f := range []string{"result.csv", "result.svg"} {
		if b, err := os.ReadFile(filepath.Join(s.work, f)); err != nil || len(b) == 0 {
			t.Fatalf("%s not written: %v", f, err)
		}
	}
}
