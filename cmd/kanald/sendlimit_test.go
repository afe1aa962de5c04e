package main

import (
	"encoding/json"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/internal/web"
)

// TestSendLimitSetting: KANAL_SEND_LIMIT is the number of sends one device
// may make in a minute; the one after it is refused with 429 and stores
// nothing, and another device keeps its own budget.
func TestSendLimitSetting(t *testing.T) {
	srv := kanaldtest.Start(t, kanaldBin, "KANAL_SEND_LIMIT=2")
	alice, bob := pushSignUp(t, srv, "alice@example.org"), pushSignUp(t, srv, "bob@example.org")
	startSession(t, alice, bob)
	startSession(t, bob, alice)
	alice.send(t, srv.URL, sealed(t, alice, bob, "m-1", "eins"))
	alice.send(t, srv.URL, sealed(t, alice, bob, "m-2", "zwei"))
	st, body := alice.call(t, srv.URL, "POST", "/v1/messages", sealed(t, alice, bob, "m-3", "drei"))
	var p web.Problem
	if st != 429 || json.Unmarshal(body, &p) != nil || p.Type != web.TypeRateLimited {
		t.Fatalf("third send in the minute: %d %s", st, body)
	}
	bob.send(t, srv.URL, sealed(t, bob, alice, "m-1", "hallo"))
	if got := bob.connect(t, srv.URL).envelopes(2); len(got) != 2 {
		t.Fatalf("bob got %d envelopes, want the two sends within the limit", len(got))
	}
}
