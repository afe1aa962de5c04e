package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kanal-server/kanal/internal/eidtest"
)

// TestEIDVerifiedNameCLI: a citizen links her eID and, with her consent
// for the Bürgeramt only, its agent sees her as "Annamarker
// Musterfraumarker ✓eID" — the name the deployment signed after her eID
// login, sent end to end from her device — while another office she
// writes to sees only her account. Nobody can give themselves the mark as
// a display name. She withdraws the consent and the agent's screen stops
// showing the name. No table of kanald's database ever holds it.
func TestEIDVerifiedNameCLI(t *testing.T) {
	work := t.TempDir()
	op, err := eidtest.Start(work)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	const subject = "DE-nPA-MARKER-4242-subject"
	op.AddPerson(eidtest.Person{Subject: subject, GivenName: "Annamarker", FamilyName: "Musterfraumarker", Birthdate: "1979-03-14"})
	op.LoginAs(subject, eidtest.ACRHigh)
	srv := eidKanald(t, work, op)
	s := &session{t: t, work: work, vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	var steps []step
	for _, u := range [][3]string{{"anna", "anna@example.org", "ANNA"}, {"schmidt", "schmidt@worms.example", "SCHMIDT"},
		{"meier", "meier@mainz.example", "MEIER"}, {"mallory", "mallory@example.org", "MALLORY"}} {
		steps = append(steps, signUpSteps(s, srv, u[0], u[1], u[2])...)
	}
	s.run(steps)
	s.vars["OPTOKEN"] = srv.OperatorToken(t)
	opEnv := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run([]step{
		{cmd: "kanal admin org create --kind office 'Bürgeramt Worms'", env: opEnv, set: map[string]string{"WORMS": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $WORMS", env: opEnv},
		{cmd: "kanal admin org member add --role agent $WORMS schmidt@worms.example", env: opEnv},
		{cmd: "kanal admin org create --kind office 'Standesamt Mainz'", env: opEnv, set: map[string]string{"MAINZ": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $MAINZ", env: opEnv},
		{cmd: "kanal admin org member add --role agent $MAINZ meier@mainz.example", env: opEnv},

		// Before an eID login there is no verified name to share.
		{home: "anna", cmd: "kanal eid share-name --org $WORMS", exit: 1, want: []string{"no eID-verified name", "kanal eid link"}},
		{home: "anna", cmd: "kanal eid share-name", exit: 2, want: []string{"--org must name an organisation"}},

		eidLinkStep("anna"),
		eidBrowse(s, op, "anna", 200, "Your eID login worked"),
		{home: "anna", cmd: "kanal eid finish", want: []string{"eID linked: this session is level high", "Verified name: Annamarker Musterfraumarker",
			"An office sees your verified name only if you agree, per office: kanal eid share-name --org"}},

		// To Mainz, without consent: Mainz sees her account only.
		{home: "anna", cmd: "kanal send $MAINZ 'Ich brauche eine Geburtsurkunde.'", want: []string{"sent"}},
		{home: "meier", cmd: "kanal inbox", want: []string{"$ANNA (as Standesamt Mainz)", "$ANNA: Ich brauche eine Geburtsurkunde."},
			not: []string{"Musterfraumarker", "✓eID"}},

		// To Worms, with consent.
		{home: "anna", cmd: "kanal eid share-name --org $WORMS", want: []string{`Bürgeramt Worms now sees you as "Annamarker Musterfraumarker", verified by eID`,
			"kanal eid share-name --org $WORMS --revoke"}},
		{home: "anna", cmd: "kanal send $WORMS 'Guten Tag, ich brauche einen neuen Ausweis.'", want: []string{"sent"}},
		{home: "schmidt", cmd: "kanal inbox", want: []string{"Annamarker Musterfraumarker ✓eID (as Bürgeramt Worms)",
			"Annamarker Musterfraumarker ✓eID: shares the name verified by eID with this office",
			"Annamarker Musterfraumarker ✓eID: Guten Tag, ich brauche einen neuen Ausweis."}, not: []string{"$ANNA"}},
		{home: "schmidt", cmd: "kanal -v conversations", want: []string{"Annamarker Musterfraumarker ✓eID ($ANNA) (as Bürgeramt Worms ($WORMS))"}},
		// Mainz still does not.
		{home: "anna", cmd: "kanal send $MAINZ 'Und eine Meldebescheinigung.'", want: []string{"sent"}},
		{home: "meier", cmd: "kanal conversations", want: []string{"$ANNA (as Standesamt Mainz)"}, not: []string{"Musterfraumarker", "✓eID"}},

		// The mark cannot be had as a display name; a display name does not
		// hide the verified one.
		{home: "mallory", cmd: "kanal profile set 'Annamarker Musterfraumarker ✓eID'", exit: 2, want: []string{"which kanal shows after a name verified by eID"}},
		{home: "anna", cmd: "kanal profile set 'Anni'", want: []string{`You are now "Anni"`}},
		{home: "anna", cmd: "kanal send $WORMS 'Wann ist er fertig?'", want: []string{"sent"}},
		{home: "schmidt", cmd: "kanal inbox", want: []string{"Annamarker Musterfraumarker ✓eID: Wann ist er fertig?"}},

		// She withdraws the consent: the agent's device forgets the name.
		{home: "anna", cmd: "kanal eid share-name --org $WORMS --revoke", want: []string{"Bürgeramt Worms no longer sees your verified name"}},
		{home: "schmidt", cmd: "kanal inbox", want: []string{"Anni: withdrew the consent to show the eID-verified name to this office"}},
		{home: "schmidt", cmd: "kanal conversations", want: []string{"Anni (as Bürgeramt Worms)"}, not: []string{"✓eID", "Musterfraumarker"}},
		{home: "anna", cmd: "kanal send $WORMS 'Danke.'", want: []string{"sent"}},
		{home: "schmidt", cmd: "kanal inbox", want: []string{"Anni: Danke."}, not: []string{"✓eID", "Musterfraumarker"}},
	})
	searchDatabase(t, filepath.Join(srv.DataDir, "kanal.db"), subject, "Annamarker", "Musterfraumarker", "1979-03-14")
}
