package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// backlogOf reads a fresh stream up to "synced" and returns the
// envelopes of its backlog.
func backlogOf(t *testing.T, ws *websocket.Conn) []mailbox.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []mailbox.Envelope
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		var f struct {
			Type      string
			Envelopes []mailbox.Envelope
		}
		json.Unmarshal(data, &f)
		if f.Type == "synced" {
			return got
		}
		got = append(got, f.Envelopes...)
	}
}

// TestSeveralStreamsOnTwoNodes: bob's one device holds two streams on node
// A and one on node B at once, with the same session. A message alice sends
// through node A reaches all three; bob's ack on node B deletes it for all,
// so a stream opened afterwards on node A starts empty. The ninth stream on
// one node is refused with 429 too-many-streams before the upgrade, while
// the other node still takes one; none of the open streams is closed.
func TestSeveralStreamsOnTwoNodes(t *testing.T) {
	a, b := twoNodes(t)
	alice := signUpWithPassword(t, a, "alice@example.org")
	bob := signUpWithPassword(t, a, "bob@example.org")
	ctx := context.Background()

	streams := []*websocket.Conn{openStream(t, a.URL, bob.Token), openStream(t, a.URL, bob.Token), openStream(t, b.URL, bob.Token)}
	for _, ws := range streams {
		if got := backlogOf(t, ws); len(got) != 0 {
			t.Fatalf("backlog before any message: %d envelopes", len(got))
		}
	}
	m, err := kind.New(client.NewMessageID(), time.Now(), &kind.TextBody{Text: "an alle Fenster"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.sdk.Send(ctx, client.Peer{AccountID: bob.AccountID}, m); err != nil {
		t.Fatal(err)
	}
	var id string
	for i, ws := range streams {
		envs := nextEnvelopes(t, ws)
		if len(envs) != 1 || envs[0].Recipient != bob.DeviceID || (id != "" && envs[0].ID != id) {
			t.Fatalf("stream %d got %+v", i, envs)
		}
		id = envs[0].ID
	}
	if err := ack(streams[2], id); err != nil { // on node B
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ws := openStream(t, a.URL, bob.Token)
		n := len(backlogOf(t, ws))
		ws.Close(websocket.StatusNormalClosure, "")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the envelope acknowledged on node B still comes on node A")
		}
	}

	// Up to MaxStreams on node A; the next is refused before the upgrade.
	// Each new stream is read up to "synced" before the next message is
	// sent: a backlog the server reads after that send holds the message,
	// which then comes before "synced" and not again.
	for len(streams) < mailbox.MaxStreams+1 { // two on A so far, and one on B
		ws := openStream(t, a.URL, bob.Token)
		if got := backlogOf(t, ws); len(got) != 0 {
			t.Fatalf("backlog of a stream opened after the ack: %d envelopes", len(got))
		}
		streams = append(streams, ws)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// The closed probe streams above leave node A as they close.
		var ws *websocket.Conn
		ws, resp, err = websocket.Dial(dctx, "ws"+strings.TrimPrefix(a.URL, "http")+"/v1/stream",
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + bob.Token}}})
		if err != nil {
			break
		}
		ws.CloseNow()
		if time.Now().After(deadline) {
			t.Fatal("a ninth stream on node A was opened")
		}
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("ninth stream on node A: %v %v, want 429", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	var p struct {
		Type       string `json:"type"`
		Detail     string `json:"detail"`
		MaxStreams int    `json:"max_streams"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type != string(mailbox.TypeTooManyStreams) || p.MaxStreams != mailbox.MaxStreams {
		t.Fatalf("refusal: %s (%v)", body, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("refusal content type %q", ct)
	}
	second := openStream(t, b.URL, bob.Token) // node B: its second
	if got := backlogOf(t, second); len(got) != 0 {
		t.Fatalf("backlog of the second stream on node B: %d envelopes", len(got))
	}
	streams = append(streams, second)

	// All of them are still open and get the next message, live.
	m2, _ := kind.New(client.NewMessageID(), time.Now(), &kind.TextBody{Text: "noch einmal"})
	if _, err := alice.sdk.Send(ctx, client.Peer{AccountID: bob.AccountID}, m2); err != nil {
		t.Fatal(err)
	}
	first := id
	id = ""
	for i, ws := range streams {
		envs := nextEnvelopes(t, ws)
		if len(envs) != 1 || envs[0].ID == first || (id != "" && envs[0].ID != id) {
			t.Fatalf("stream %d: %+v", i, envs)
		}
		id = envs[0].ID
	}
}
