package client

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestLegacyAltRecord: a record written before archived sessions existed
// keeps its second session (Alt) as the newest archived one, and both
// initial messages count as having started a session.
func TestLegacyAltRecord(t *testing.T) {
	store := NewMemoryStore()
	cur, alt := []byte("current initial"), []byte("alt initial")
	legacy, _ := json.Marshal(map[string]any{
		"session": []byte("state"), "initial_hash": cur, "account": "acc_a",
		"alt": map[string]any{"session": []byte("alt state"), "initial_hash": alt, "account": "acc_a"},
	})
	if err := store.Put(nameSession("dev"), legacy); err != nil {
		t.Fatal(err)
	}
	c := &Client{store: store}
	r, err := c.loadSession("dev")
	if err != nil {
		t.Fatal(err)
	}
	if r.Alt != nil || len(r.Archived) != 1 || !bytes.Equal(r.Archived[0].Session, []byte("alt state")) {
		t.Fatalf("legacy alt not archived: %+v", r)
	}
	for _, h := range [][]byte{cur, alt} {
		if !r.startedBefore(h) {
			t.Fatalf("initial %q not remembered", h)
		}
	}
	if r.withInitial(alt) != r.Archived[0] || r.withInitial(cur) != r {
		t.Fatal("sessions not found by their initial message")
	}
	// Archiving keeps at most MaxArchivedSessions, newest first.
	for i := range MaxArchivedSessions + 2 {
		r.archive(&sessionRecord{Session: []byte{byte(i)}})
	}
	if len(r.Archived) != MaxArchivedSessions || r.Archived[0].Session[0] != MaxArchivedSessions+1 {
		t.Fatalf("archive: %d sessions, newest %v", len(r.Archived), r.Archived[0].Session)
	}
	for i := range MaxStartedSessions + 5 {
		r.started([]byte{byte(i)})
	}
	if len(r.Started) != MaxStartedSessions || r.startedBefore([]byte{0}) {
		t.Fatalf("started: %d remembered", len(r.Started))
	}
}
