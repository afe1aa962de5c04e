//go:build !js

package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestStreamOverKanald drives /v1/stream on the real kanald: identity's
// session middleware in front, the backlog delivered in order and deleted on
// ack, revocation closing the live socket and refusing the next one.
func TestStreamOverKanald(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		s := startKanald(t, postgres)
		alice := signUp(t, s, "alice@example.org", true)
		bob := signUp(t, s, "bob@example.org", false)

		// Envelopes for alice, written where kanald's own sends will write
		// them (the database is shared with the process under test).
		d, err := db.Open(ctx, s.dbURL, s.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		store := mailbox.NewStore(d, mailbox.StoreOptions{})
		for _, body := range []string{"eins", "zwei", "drei"} {
			if err := store.Append(ctx, []mailbox.Envelope{{Recipient: alice.DeviceID, Sender: bob.DeviceID,
				Conversation: "conv_ab", Class: "message", Ciphertext: []byte(body)}}); err != nil {
				t.Fatal(err)
			}
		}

		wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/v1/stream"
		dial := func(token string) (*websocket.Conn, *http.Response, error) {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
		}
		if _, resp, err := dial("kanal_s_not-a-session"); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("stream without a valid session: %v %v", err, resp)
		}

		ws, _, err := dial(alice.Token)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		read := func() map[string]json.RawMessage {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, data, err := ws.Read(rctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var f map[string]json.RawMessage
			json.Unmarshal(data, &f)
			return f
		}
		var got []mailbox.Envelope
		for len(got) < 3 {
			f := read()
			var envs []mailbox.Envelope
			json.Unmarshal(f["envelopes"], &envs)
			got = append(got, envs...)
		}
		for i, want := range []string{"eins", "zwei", "drei"} {
			if string(got[i].Ciphertext) != want || got[i].Sender != bob.DeviceID {
				t.Fatalf("envelope %d: %+v", i, got[i])
			}
		}
		if f := read(); string(f["type"]) != `"synced"` {
			t.Fatalf("want synced, got %v", f)
		}
		ack, _ := json.Marshal(map[string]any{"type": "ack", "ids": []string{got[0].ID, got[1].ID, got[2].ID}})
		if err := ws.Write(ctx, websocket.MessageText, ack); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for n, _ := store.Depth(ctx, alice.DeviceID); n != 0; n, _ = store.Depth(ctx, alice.DeviceID) {
			if time.Now().After(deadline) {
				t.Fatalf("%d acknowledged envelopes still stored", n)
			}
			time.Sleep(20 * time.Millisecond)
		}

		// Revoking the device closes its live socket and refuses the next.
		if err := alice.Identity.RevokeDevice(ctx, alice.DeviceID); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			if _, _, err := ws.Read(rctx); err != nil {
				if code := websocket.CloseStatus(err); code != mailbox.StatusRevoked {
					t.Fatalf("revoked socket closed with %d (%v)", code, err)
				}
				break
			}
		}
		if _, resp, err := dial(alice.Token); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("revoked device reconnected: %v %v", err, resp)
		}
	})
}
