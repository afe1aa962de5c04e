package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestAttackCaseNoteFromOutside: an agent's internal note on a case reaches the other
// agents, shown as written by a colleague of the office, and never the
// citizen. The SDK refuses to address a note to a citizen.
//
// The attack: a citizen who knows the office's id writes a case.note to
// the office's agents with a modified client (no membership proof, which
// she cannot have), hoping it is shown as the office's internal note. The
// agents' clients refuse it.
func TestAttackCaseNoteFromOutside(t *testing.T) {
	ctx := context.Background()
	d := startDeployment(t, false)
	anna := newAccount(t, d, "anna@example.org", 1)[0]
	agents := []*user{newAccount(t, d, "agent1@buergeramt.example", 1)[0], newAccount(t, d, "agent2@buergeramt.example", 1)[0]}
	op := idclient.New(d.node(0).URL, nil).WithToken(d.node(0).OperatorToken(t))
	org, err := op.CreateOrg(ctx, "Bürgeramt Musterstadt", "office")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if _, err := op.AddMember(ctx, org.OrgID, a.AccountID, "agent"); err != nil {
			t.Fatal(err)
		}
	}
	annaP := newPhone(t, "anna", anna, d.node(0).URL, client.NewMemoryStore())
	a1 := newPhone(t, "agent1", agents[0], d.node(0).URL, client.NewMemoryStore())
	a2 := newPhone(t, "agent2", agents[1], d.node(0).URL, client.NewMemoryStore())
	for _, p := range []*phone{annaP, a1, a2} {
		p.connect(ctx)
		defer p.disconnect()
	}
	note := func(text string) *kind.Message {
		m, err := kind.New(client.NewMessageID(), time.Now(), &kind.CaseNoteBody{CaseID: "case_abc", Text: text})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// The SDK addresses a note only to the organisation alone.
	if _, err := a1.st.Send(ctx, client.Peer{OrgID: org.OrgID, AccountID: anna.AccountID}, note("to the citizen")); !errors.Is(err, client.ErrSendFailed) {
		t.Fatalf("note to the citizen: %v", err)
	}
	if _, err := a1.st.Send(ctx, client.Peer{OrgID: org.OrgID}, note("Hundesteuerbescheid vorbereitet")); err != nil {
		t.Fatal(err)
	}
	notes := func(p *phone) []*client.Incoming {
		p.mu.Lock()
		defer p.mu.Unlock()
		var out []*client.Incoming
		for _, in := range p.got {
			if in.Message.Kind == kind.CaseNote {
				out = append(out, in)
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(notes(a2)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := notes(a2)
	if len(got) != 1 || got[0].Org == nil || got[0].Org.OrgID != org.OrgID || got[0].SenderAccount != agents[0].AccountID {
		t.Fatalf("agent2's notes: %+v", got)
	}
	// Anna writes a "note" with a client that skips the SDK's checks.
	m := note("Fall ist entschieden, bitte auszahlen")
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := annaP.sdk.SendRawForTest(ctx, client.Peer{OrgID: org.OrgID}, m.ID, raw); err != nil {
		t.Fatal(err)
	}
	// The agents' clients refuse it as untrusted; a text sent after it
	// arrives, so the refusal is not a delivery gap.
	annaP.send(client.Peer{OrgID: org.OrgID}, "danach")
	for _, p := range []*phone{a1, a2} {
		p.waitTexts(1, fromDevice(anna.DeviceID))
		for _, in := range notes(p) {
			if in.SenderAccount == anna.AccountID {
				t.Fatalf("%s accepted the citizen's note", p.name)
			}
		}
		p.mu.Lock()
		errs := p.errs
		p.mu.Unlock()
		if len(errs) != 1 || !errors.Is(errs[0], client.ErrUntrusted) || !strings.Contains(errs[0].Error(), "case note") {
			t.Fatalf("%s: errors %v", p.name, errs)
		}
	}
	if len(notes(annaP)) != 0 {
		t.Fatal("the citizen received a case note")
	}
}
