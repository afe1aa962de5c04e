package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// namesOver is a namer over a store holding the given profiles.
func namesOver(t *testing.T, verbose bool, profiles ...*kind.ProfileBody) *namer {
	t.Helper()
	store := mclient.NewMemoryStore()
	for _, p := range profiles {
		b, _ := json.Marshal(p)
		if err := store.Put("profile/of/"+p.AccountID, b); err != nil {
			t.Fatal(err)
		}
		if got, err := mclient.StoredProfile(store, p.AccountID); err != nil || got == nil || got.DisplayName != p.DisplayName {
			t.Fatalf("the store's profile names differ from the SDK's: %+v %v", got, err)
		}
	}
	return &namer{ctx: context.Background(), me: "acc_me", verbose: verbose, store: store, orgs: map[string]string{"org_amt": "Bürgeramt Worms"}}
}

// TestConversationsAfterNotice: a conversation whose newest message is a
// server notice (a payment's status) still says with whom it is, by name.
func TestConversationsAfterNotice(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	agent := &kind.ProfileBody{AccountID: "acc_agent", Version: 1, UpdatedAt: at, DisplayName: "Frau Schmidt"}
	for _, verbose := range []bool{false, true} {
		s := &chatSession{hist: &history{entries: []entry{
			{ID: "m1", Conversation: "o_1", Reply: "org_amt", From: "me", Kind: "text", Text: "Guten Tag", At: at},
			{ID: "m2", Conversation: "o_1", Reply: "org_amt", From: "acc_agent", Org: "Bürgeramt Worms", Kind: "payment.request", Text: "payment request r1", At: at.Add(time.Minute)},
			{ID: "m3", Conversation: "o_1", From: "kanal", Kind: "payment.status", Text: "payment r1 paid", At: at.Add(2 * time.Minute)},
			{ID: "m4", Conversation: "o_2", From: "kanal", Kind: "payment.status", Text: "payment r2 paid", At: at.Add(3 * time.Minute)},
		}}, names: namesOver(t, verbose, agent)}
		var out bytes.Buffer
		if err := s.listConversations(&out); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 {
			t.Fatalf("%d lines:\n%s", len(lines), out.String())
		}
		if !strings.HasPrefix(lines[1], "kanal ") || !strings.Contains(lines[1], "kanal: payment r2 paid") {
			t.Errorf("notices alone: %q", lines[1])
		}
		want := "Bürgeramt Worms"
		if verbose {
			want = "Bürgeramt Worms (org_amt)"
		}
		if !strings.HasPrefix(lines[2], want+" ") || !strings.Contains(lines[2], "3") || !strings.Contains(lines[2], "kanal: payment r1 paid") {
			t.Errorf("verbose %v: %q", verbose, lines[2])
		}
	}
}

// TestNamer: how each kind of sender and peer is shown, with and without
// -v.
func TestNamer(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	profiles := []*kind.ProfileBody{
		{AccountID: "acc_erika", Version: 1, UpdatedAt: at, DisplayName: "Erika Mustermann"},
		{AccountID: "acc_agent", Version: 1, UpdatedAt: at, DisplayName: "Frau Schmidt"},
	}
	n, v := namesOver(t, false, profiles...), namesOver(t, true, profiles...)
	for _, c := range []struct{ got, want string }{
		{n.sender(entry{From: "acc_erika"}), "Erika Mustermann"},
		{v.sender(entry{From: "acc_erika"}), "Erika Mustermann (acc_erika)"},
		{n.sender(entry{From: "acc_agent", Org: "Bürgeramt Worms"}), "Frau Schmidt · Bürgeramt Worms"},
		{v.sender(entry{From: "acc_agent", Org: "Bürgeramt Worms"}), "Frau Schmidt · Bürgeramt Worms (acc_agent)"},
		{n.sender(entry{From: "acc_other", Org: "Bürgeramt Worms"}), "Bürgeramt Worms"},
		{n.sender(entry{From: "acc_nobody"}), "acc_nobody"},
		{n.sender(entry{From: "acc_me"}), "me (other device)"},
		{n.sender(entry{From: "me"}), "me"},
		{n.sender(entry{From: "kanal"}), "kanal"},
		{n.peer("acc_erika", "org_amt"), "Erika Mustermann (as Bürgeramt Worms)"},
		{n.peer("org_amt", ""), "Bürgeramt Worms"},
		{n.peer("g_1", ""), "group g_1"},
		{n.org("org_unknown"), "org_unknown"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
