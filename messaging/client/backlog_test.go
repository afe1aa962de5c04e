package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestBacklogTakesWhatCameBeforeSynced: Backlog hands out every envelope
// the server sent before its "synced", however the frames' arrival falls
// against Backlog's own looks at the stream. The server sends one
// envelope, which this device cannot read (it comes back among the
// unreadable ones), and then "synced". The test holds Backlog where it
// has found the queue empty, until both frames are in: Backlog used to
// look at the queue and then wait for a new envelope or "synced", and with
// both come in between it returned as often as not without the envelope
// (a "kanal inbox" that said "no new messages" while a notice sat in its
// queue, once in a CI run).
func TestBacklogTakesWhatCameBeforeSynced(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		env := mailbox.Envelope{ID: mailbox.NewEnvelopeID(), Seq: 1, Conversation: "c", Sender: "dev_sender", Recipient: "dev_me",
			Class: "message", Ciphertext: []byte("not a message"), ServerTime: time.Now()}
		envs, _ := json.Marshal(map[string]any{"type": "envelopes", "envelopes": []mailbox.Envelope{env}})
		if ws.Write(ctx, websocket.MessageText, envs) != nil || ws.Write(ctx, websocket.MessageText, []byte(`{"type":"synced"}`)) != nil {
			return
		}
		for { // the client's acks, until it closes
			if _, _, err := ws.Read(ctx); err != nil {
				return
			}
		}
	}))
	defer ts.Close()
	c := &Client{base: ts.URL, hc: ts.Client(), store: NewMemoryStore(), jsonFrames: true, device: "dev_me"}
	c.SetToken("t")
	held := map[*Stream]bool{}
	testHookBacklogWaits = func(s *Stream) {
		if held[s] {
			return // once a stream
		}
		held[s] = true
		for { // until the envelope is queued and "synced" taken
			s.mu.Lock()
			n := len(s.queue)
			s.mu.Unlock()
			select {
			case <-s.synced:
				if n > 0 {
					return
				}
			case <-s.done:
				return
			default:
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	defer func() { testHookBacklogWaits = nil }()
	ctx := context.Background()
	missed := 0
	const rounds = 20
	for range rounds {
		st, err := c.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, bad, err := st.Backlog(ctx)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 || len(bad) > 1 {
			t.Fatalf("backlog: %d messages, %d unreadable; want the one unreadable envelope", len(got), len(bad))
		}
		if len(bad) == 0 {
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("Backlog returned without the envelope sent before \"synced\" in %d of %d streams", missed, rounds)
	}
}
