package main

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// TestAttackLoggedOutSessionRefusedOnEveryNode: once a logout has been
// answered on one node, the session's very next request is refused on
// every node — here the other node of two on one PostgreSQL and the real
// NATS, and the node that logged it out — while other devices keep
// sending through both nodes, so that session lookups share their queries
// (identity/sessionread.go). The session had been used on both nodes
// first, so a node that kept sessions in memory would still know it.
func TestAttackLoggedOutSessionRefusedOnEveryNode(t *testing.T) {
	a, b := twoNodes(t)
	victim := pushSignUp(t, a, "victim@example.org")
	peer := pushSignUp(t, a, "peer@example.org")
	startSession(t, victim, peer)
	startSession(t, peer, victim)
	for i, base := range []string{a.URL, b.URL} {
		victim.send(t, base, sealed(t, victim, peer, fmt.Sprint("warm-", i), "before"))
	}

	// Other traffic on both nodes while the session ends and after.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				base := []string{a.URL, b.URL}[w%2]
				if st, body := peer.call(t, base, "GET", "/v1/prekeys/status", nil); st != http.StatusOK {
					t.Errorf("peer's request on %s: %d %s", base, st, body)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	if st, body := victim.call(t, a.URL, "DELETE", "/v1/sessions/current", nil); st != http.StatusNoContent {
		t.Fatalf("logout: %d %s", st, body)
	}
	for i, base := range []string{b.URL, a.URL} {
		st, body := victim.call(t, base, "POST", "/v1/messages", sealed(t, victim, peer, fmt.Sprint("after-", i), "after"))
		if st != http.StatusUnauthorized {
			t.Fatalf("send on node %d after logout: %d %s", i, st, body)
		}
		if st, body := victim.call(t, base, "GET", "/v1/prekeys/status", nil); st != http.StatusUnauthorized {
			t.Fatalf("status on node %d after logout: %d %s", i, st, body)
		}
	}
}
