package client_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kanal-server/kanal/messaging/client"
)

// TestSessionSharedStore: two Clients of one device on one Store (a second
// process, or one restarted while the other still runs) take turns
// encrypting to the same peer and reading its answer. Each must see what
// the other stored: a Client that went on from the session as it had parsed
// it would use a message key twice, and the peer would refuse the second
// message as a replay.
func TestSessionSharedStore(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
	store := client.NewMemoryStore()
	a1 := alice.SDK(t, srv.URL, store)
	bobSDK := bob.SDK(t, srv.URL, client.NewMemoryStore())
	for _, c := range []*client.Client{a1, bobSDK} {
		if _, err := c.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	claim, err := a1.ClaimAccount(ctx, bob.AccountID)
	if err != nil || len(claim.Bundles) != 1 {
		t.Fatalf("claim: %+v %v", claim, err)
	}
	if err := a1.StartSession(claim.Bundles[0]); err != nil {
		t.Fatal(err)
	}
	a2 := alice.SDK(t, srv.URL, store)

	for i, c := range []*client.Client{a1, a2, a1, a1, a2} {
		text := fmt.Sprintf("Nachricht %d", i)
		if got := receive(t, bobSDK, alice.DeviceID, send(t, c, bob.DeviceID, text)); got != text {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	// a2 reads bob's answer; a1 then sends under the session a2 stored:
	// without the initial message (the answer showed bob has the session)
	// and on the sending chain a2's ratchet step made.
	if got := receive(t, a2, bob.DeviceID, send(t, bobSDK, alice.DeviceID, "Antwort")); got != "Antwort" {
		t.Fatal(got)
	}
	w := send(t, a1, bob.DeviceID, "nach der Antwort")
	var m client.Message
	if err := m.UnmarshalBinary(w); err != nil {
		t.Fatal(err)
	}
	if m.Initial != nil {
		t.Fatal("a1 still sends the initial message after a2 read the answer")
	}
	if got := receive(t, bobSDK, alice.DeviceID, w); got != "nach der Antwort" {
		t.Fatal(got)
	}
	// And the other way round, once more.
	if got := receive(t, a1, bob.DeviceID, send(t, bobSDK, alice.DeviceID, "zweite Antwort")); got != "zweite Antwort" {
		t.Fatal(got)
	}
	if got := receive(t, bobSDK, alice.DeviceID, send(t, a2, bob.DeviceID, "von a2")); got != "von a2" {
		t.Fatal(got)
	}
}
