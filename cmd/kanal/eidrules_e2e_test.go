package main

import (
	"os"
	"testing"

	"github.com/kanal-server/kanal/internal/eidtest"
)

// TestEIDHighRulesCLI: the places an organisation asks for level high,
// driven through the CLI against the real kanald and the test eID
// provider. An office's owner requires an eID of its agents: a clerk
// without one is refused as an agent, added once he has linked his eID,
// and then cannot unlink it while he is an agent. A merchant's offer
// above its high amount is accepted by the buyer only after an eID login.
func TestEIDHighRulesCLI(t *testing.T) {
	work := t.TempDir()
	op, err := eidtest.Start(work)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	op.AddPerson(eidtest.Person{Subject: "kai-subject", GivenName: "Kai", FamilyName: "Beamter"})
	op.AddPerson(eidtest.Person{Subject: "carl-subject", GivenName: "Carl", FamilyName: "Kunde"})
	srv := eidKanald(t, work, op)
	s := &session{t: t, work: work, vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	var steps []step
	for _, u := range [][3]string{{"boss", "boss@worms.example", "BOSS"}, {"kai", "kai@worms.example", "KAI"},
		{"mia", "mia@example.org", "MIA"}, {"carl", "carl@example.org", "CARL"}} {
		steps = append(steps, signUpSteps(s, srv, u[0], u[1], u[2])...)
	}
	s.run(steps)
	s.vars["OPTOKEN"] = srv.OperatorToken(t)
	opEnv := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run([]step{
		{cmd: "kanal admin org create --kind office 'Bürgeramt Worms'", env: opEnv, set: map[string]string{"AMT": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $AMT", env: opEnv},
		{cmd: "kanal admin org member add --role owner $AMT boss@worms.example", env: opEnv},
		{cmd: "kanal admin org create --kind merchant 'Fahrradladen Rheinufer'", env: opEnv, set: map[string]string{"SHOP": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $SHOP", env: opEnv},
		{cmd: "kanal admin org member add --role seller $SHOP mia@example.org", env: opEnv},

		// The owner requires an eID of the office's agents.
		{home: "kai", cmd: "kanal org require-high $AMT on", exit: 1, want: []string{"not allowed"}},
		{home: "boss", cmd: "kanal org require-high $AMT maybe", exit: 1, want: []string{"say on or off"}},
		{home: "boss", cmd: "kanal org require-high $AMT on", want: []string{"$AMT now adds only agents with an eID linked (level high)."}},
		{home: "boss", cmd: "kanal org member add $AMT kai@worms.example", exit: 1, want: []string{"requires level high of its agents", "kanal eid link"}},
		{home: "boss", cmd: "kanal directory org $AMT", not: []string{"$KAI"}},
		// Kai links his eID; then he is added.
		{do: func(t *testing.T) { op.LoginAs("kai-subject", eidtest.ACRHigh) }},
		eidLinkStep("kai"),
		eidBrowse(s, op, "kai", 200, "Your eID login worked"),
		{home: "kai", cmd: "kanal eid finish", want: []string{"eID linked: this session is level high"}},
		{home: "boss", cmd: "kanal org member add $AMT kai@worms.example", want: []string{"agent"}},
		// As an agent he cannot shed the eID.
		{home: "kai", cmd: "kanal eid unlink", exit: 1, want: []string{"Bürgeramt Worms", "requires an eID of its agents", "kanal org member remove"}},
		{home: "kai", cmd: "kanal whoami", want: []string{"eid            linked"}},

		// A bicycle above the shop's high amount of EUR 1,000. Carl's
		// device publishes its keys first, as the app does when it starts.
		{home: "carl", cmd: "kanal pay wait none --timeout 2s", exit: 1, want: []string{"nothing arrived"}},
		{home: "mia", cmd: "kanal offer send --org $SHOP --to $CARL --item 'Lastenrad|1|2400.00|19' --high-above 1000",
			want: []string{"Sent offer over EUR 2400.00"}, set: map[string]string{"OFFER": `(?m)^(of_\S+)$`}},
		{home: "mia", cmd: "kanal offer send --org $SHOP --to $CARL --item 'Klingel|1|9.00|19' --high-above lots", exit: 1, want: []string{"is not an amount in euro"}},
		{home: "carl", cmd: "kanal inbox", want: []string{"offer $OFFER"}},
		{home: "carl", cmd: "kanal offer sign $OFFER --yes --out contract.jws", exit: 1, want: []string{"kanal eid link"}},
		{do: func(t *testing.T) { op.LoginAs("carl-subject", eidtest.ACRHigh) }},
		eidLinkStep("carl"),
		eidBrowse(s, op, "carl", 200, "Your eID login worked"),
		{home: "carl", cmd: "kanal eid finish", want: []string{"eID linked: this session is level high"}},
		{home: "carl", cmd: "kanal offer sign $OFFER --yes --out contract.jws", want: []string{"Offer $OFFER from Fahrradladen Rheinufer", "total EUR 2400.00"}},
	})
}
