//go:build !js

package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestSendOverKanald is the whole path on the real kanald: alice encrypts
// with the SDK for bob's device, sends through POST /v1/messages behind
// identity's session middleware, bob's live /v1/stream receives the
// envelope, the SDK decrypts it, and the database never held the
// plaintext.
func TestSendOverKanald(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
		aliceSDK := alice.SDK(t, srv.URL, client.NewMemoryStore())
		bobSDK := bob.SDK(t, srv.URL, client.NewMemoryStore())
		if _, err := bobSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := aliceSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		claim, err := aliceSDK.ClaimAccount(ctx, bob.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		if len(claim.Bundles) != 1 {
			t.Fatalf("claim: %+v", claim)
		}
		if err := aliceSDK.StartSession(claim.Bundles[0]); err != nil {
			t.Fatal(err)
		}

		// Bob is online first: connect, drain to "synced".
		wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/stream"
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ws, _, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + bob.Token}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		read := func() map[string]json.RawMessage {
			t.Helper()
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
		for f := read(); string(f["type"]) != `"synced"`; f = read() {
		}

		var nonce [8]byte
		rand.Read(nonce[:])
		marker := "klartext-marker-" + hex.EncodeToString(nonce[:])
		m, err := aliceSDK.Encrypt(bob.DeviceID, []byte(marker))
		if err != nil {
			t.Fatal(err)
		}
		wire, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(messaging.SendRequest{To: messaging.SendTo{AccountID: bob.AccountID}, ClientID: "msg-1", Class: "message",
			Envelopes: []messaging.SendEnvelope{{DeviceID: bob.DeviceID, Ciphertext: base64.StdEncoding.EncodeToString(wire)}}})
		post := func() (int, messaging.SendResponse) {
			t.Helper()
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/messages", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+alice.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var out messaging.SendResponse
			if resp.StatusCode == 200 || resp.StatusCode == 201 {
				if err := json.Unmarshal(b, &out); err != nil {
					t.Fatal(err)
				}
			} else {
				t.Fatalf("send: %d %s", resp.StatusCode, b)
			}
			return resp.StatusCode, out
		}
		st, sent := post()
		if st != 201 || sent.ConversationID != messaging.DirectConversation(alice.AccountID, bob.AccountID) || sent.EnvelopeIDs[bob.DeviceID] == "" {
			t.Fatalf("send: %d %+v", st, sent)
		}

		// Delivered live.
		var got []mailbox.Envelope
		for len(got) == 0 {
			f := read()
			json.Unmarshal(f["envelopes"], &got)
		}
		e := got[0]
		if len(got) != 1 || e.ID != sent.EnvelopeIDs[bob.DeviceID] || e.Sender != alice.DeviceID || e.Conversation != sent.ConversationID {
			t.Fatalf("delivered %+v", got)
		}

		// The database holds the envelope, and no plaintext.
		d, err := db.Open(ctx, srv.dbURL, srv.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		rows, err := d.Query(ctx, `SELECT ciphertext FROM mailbox`)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var ct []byte
			if err := rows.Scan(&ct); err != nil {
				t.Fatal(err)
			}
			n++
			if bytes.Contains(ct, []byte(marker)) {
				t.Fatal("plaintext in the mailbox")
			}
		}
		rows.Close()
		if n != 1 {
			t.Fatalf("%d envelopes stored, want 1", n)
		}

		if pt := receive(t, bobSDK, alice.DeviceID, e.Ciphertext); pt != marker {
			t.Fatalf("decrypted %q", pt)
		}

		// A retry answers the first result and stores nothing more.
		st, again := post()
		if st != 200 || again.EnvelopeIDs[bob.DeviceID] != sent.EnvelopeIDs[bob.DeviceID] || !again.ServerTime.Equal(sent.ServerTime) {
			t.Fatalf("retry: %d %+v", st, again)
		}
		var count int
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM mailbox`).Scan(&count); err != nil || count != 1 {
			t.Fatalf("after retry %d envelopes (%v)", count, err)
		}
	})
}
