package main

import (
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestBroadcastCLI: the council's agent posts an announcement; a citizen
// who follows the council sees it in 'kanal inbox' as the council's
// verified announcement, one who does not follow sees nothing, and a
// citizen cannot post in the council's name.
func TestBroadcastCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	var steps []step
	steps = append(steps, signUpSteps(s, srv, "rat", "rat@example.org", "RAT")...)
	steps = append(steps, signUpSteps(s, srv, "anna", "anna@example.org", "ANNA")...)
	steps = append(steps, signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...)
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run(append(steps, []step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind council 'Rat der Stadt Musterstadt'", env: op, set: map[string]string{"ORG": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role agent $ORG rat@example.org", env: op},
		{home: "anna", cmd: "kanal following", want: []string{"You follow no organisation"}},
		{home: "anna", cmd: "kanal follow $ORG", want: []string{"You follow $ORG"}},
		{home: "anna", cmd: "kanal following", want: []string{"ORGANISATION", "$ORG"}},
		{home: "anna", cmd: "kanal follow org nope", exit: 2, want: []string{"follow"}},
		{home: "anna", cmd: "kanal follow acc_nope", exit: 2, want: []string{`"acc_nope" is not an organisation id`}},
		{home: "bob", cmd: "kanal broadcast post $ORG 'Gefälschte Mitteilung'", exit: 1, want: []string{"kanal: broadcast post: "}},
		{home: "rat", cmd: "kanal broadcast post $ORG 'Die Marktbrücke ist ab Montag gesperrt.'",
			want: []string{"posted to $ORG's followers (1 devices)"}},
		{home: "anna", cmd: "kanal inbox", want: []string{"[verified announcement of Rat der Stadt Musterstadt ($ORG)] Die Marktbrücke ist ab Montag gesperrt."},
			not: []string{"Gefälschte"}},
		{home: "bob", cmd: "kanal inbox", not: []string{"Marktbrücke"}},
		{home: "anna", cmd: "kanal unfollow $ORG", want: []string{"You no longer follow $ORG."}},
		{home: "anna", cmd: "kanal unfollow $ORG", exit: 1, want: []string{"kanal: unfollow: "}},
		{home: "rat", cmd: "kanal broadcast post $ORG 'Zweite Mitteilung'", want: []string{"(0 devices)"}},
		{home: "anna", cmd: "kanal inbox", not: []string{"Zweite Mitteilung"}},
	}...))
}
