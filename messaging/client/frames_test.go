//go:build !js

package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestStreamBadInput: what a device sends on its stream is checked like a
// request. A refused send is a send_failed frame and the stream stays up;
// a frame that is not JSON closes it with 1007, an unknown frame type or a
// malformed send frame with 1008, an oversized frame with 1009. Nothing is
// stored, and another device's stream is unaffected.
func TestStreamBadInput(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
	bobSDK := bob.SDK(t, srv.URL, client.NewMemoryStore())
	if _, err := bobSDK.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	bobStream, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bobStream.Close()
	<-bobStream.Synced()

	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/stream"
	dial := func() *websocket.Conn {
		t.Helper()
		c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + alice.Token}}})
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		return c
	}
	// next reads frames until one of type typ.
	next := func(c *websocket.Conn, typ string) map[string]json.RawMessage {
		t.Helper()
		for {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, data, err := c.Read(rctx)
			cancel()
			if err != nil {
				t.Fatalf("waiting for %s: %v", typ, err)
			}
			var f map[string]json.RawMessage
			json.Unmarshal(data, &f)
			if string(f["type"]) == `"`+typ+`"` {
				return f
			}
		}
	}
	closedWith := func(c *websocket.Conn) websocket.StatusCode {
		t.Helper()
		for {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, err := c.Read(rctx)
			cancel()
			if err != nil {
				return websocket.CloseStatus(err)
			}
		}
	}
	write := func(c *websocket.Conn, v any) {
		t.Helper()
		b, ok := v.([]byte)
		if !ok {
			b, _ = json.Marshal(v)
		}
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}

	c := dial()
	defer c.CloseNow()
	next(c, "synced")
	ct := base64.StdEncoding.EncodeToString([]byte("ciphertext"))
	for _, tc := range []struct {
		name     string
		req      messaging.SendRequest
		wantType string
	}{
		{"stale device set", messaging.SendRequest{To: messaging.SendTo{AccountID: bob.AccountID}, ClientID: "c1", Class: "message",
			Envelopes: []messaging.SendEnvelope{{DeviceID: "dev_someoneelse", Ciphertext: ct}}}, string(messaging.TypeStaleDevices)},
		{"bad class", messaging.SendRequest{To: messaging.SendTo{AccountID: bob.AccountID}, ClientID: "c2", Class: "gossip",
			Envelopes: []messaging.SendEnvelope{{DeviceID: bob.DeviceID, Ciphertext: ct}}}, "urn:kanal:problem:validation"},
		{"not a member of the group", messaging.SendRequest{To: messaging.SendTo{GroupID: "g_0123456789abcdef0123456789abcdef"}, ClientID: "c3", Class: "message",
			Envelopes: []messaging.SendEnvelope{{DeviceID: bob.DeviceID, Ciphertext: ct}}}, string(messaging.TypeNotMember)},
		{"oversized envelope", messaging.SendRequest{To: messaging.SendTo{AccountID: bob.AccountID}, ClientID: "c4", Class: "message",
			Envelopes: []messaging.SendEnvelope{{DeviceID: bob.DeviceID, Ciphertext: base64.StdEncoding.EncodeToString(make([]byte, 65<<10))}}}, "urn:kanal:problem:too-large"},
	} {
		write(c, messaging.SendFrame{Type: "send", Ref: "r-" + tc.req.ClientID, Request: tc.req})
		f := next(c, "send_failed")
		var p struct {
			Type string `json:"type"`
		}
		json.Unmarshal(f["problem"], &p)
		if string(f["ref"]) != `"r-`+tc.req.ClientID+`"` || p.Type != tc.wantType {
			t.Fatalf("%s: %s %s", tc.name, f["ref"], f["problem"])
		}
	}
	for _, tc := range []struct {
		name  string
		frame any
		want  websocket.StatusCode
	}{
		{"not JSON", []byte("{not json"), websocket.StatusInvalidFramePayloadData},
		{"unknown frame type", map[string]string{"type": "subscribe"}, websocket.StatusPolicyViolation},
		{"send frame with unknown fields", map[string]any{"type": "send", "ref": "x", "request": map[string]any{}, "admin": true}, websocket.StatusPolicyViolation},
		{"send frame with a bad ref", map[string]any{"type": "send", "ref": "a b", "request": map[string]any{}}, websocket.StatusPolicyViolation},
		{"frame over the stream's limit", []byte(`{"type":"send","ref":"x","pad":"` + strings.Repeat("x", 300<<10) + `"}`), websocket.StatusMessageTooBig},
	} {
		c := dial()
		next(c, "synced")
		write(c, tc.frame)
		if code := closedWith(c); code != tc.want {
			t.Fatalf("%s: closed with %v, want %v", tc.name, code, tc.want)
		}
	}

	// Bob's stream is still up and has received nothing.
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if in, err := bobStream.Receive(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("bob received %v, %v", in, err)
	}
}

// TestSDKRefusesInvalidMessages: the SDK will not send a message its kind
// rejects, and hands out a received one only if it passes the same check.
func TestSDKRefusesInvalidMessages(t *testing.T) {
	ctx := context.Background()
	srv, alice, bob, aliceSDK, bobSDK := twoPublished(t)
	bad := &kind.Message{Version: 1, Kind: kind.Text, ID: "m1", SentAt: time.Now(), Body: &kind.TextBody{Text: "  "}}
	if _, err := aliceSDK.Send(ctx, client.Peer{AccountID: bob.AccountID}, bad); !errors.Is(err, kind.ErrInvalid) {
		t.Fatalf("invalid message sent: %v", err)
	}

	// A sender that does not use the SDK's checks: a valid envelope whose
	// message has an unknown kind. Bob's SDK reports it, acknowledges it,
	// and goes on to the next message.
	claim, err := aliceSDK.ClaimAccount(ctx, bob.AccountID)
	if err != nil || len(claim.Bundles) != 1 {
		t.Fatalf("claim: %v %+v", err, claim)
	}
	if err := aliceSDK.StartSession(claim.Bundles[0]); err != nil {
		t.Fatal(err)
	}
	conv := messaging.DirectConversation(alice.AccountID, bob.AccountID)
	raw := `{"v":1,"conv":"` + conv + `","to":{"account_id":"` + bob.AccountID + `"},"msg":{"v":1,"kind":"telegram","id":"m2","sent_at":"2026-11-23T10:00:00Z","body":{}}}`
	m, err := aliceSDK.Encrypt(bob.DeviceID, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := m.MarshalBinary()
	postRaw(t, srv.URL, alice.Token, messaging.SendRequest{To: messaging.SendTo{AccountID: bob.AccountID}, ClientID: "raw1", Class: "message",
		Envelopes: []messaging.SendEnvelope{{DeviceID: bob.DeviceID, Ciphertext: base64.StdEncoding.EncodeToString(wire)}}})
	good, _ := kind.New("m3", time.Now(), &kind.TextBody{Text: "gültig"})
	if _, err := aliceSDK.Send(ctx, client.Peer{AccountID: bob.AccountID}, good); err != nil {
		t.Fatal(err)
	}

	st, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, bad2, err := st.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad2) != 1 || !errors.Is(bad2[0], kind.ErrUnknownKind) {
		t.Fatalf("refused: %v", bad2)
	}
	if len(got) != 1 || got[0].Message.Body.(*kind.TextBody).Text != "gültig" {
		t.Fatalf("received %+v", got)
	}
}

func postRaw(t *testing.T, base, token string, req messaging.SendRequest) {
	t.Helper()
	b, _ := json.Marshal(req)
	hreq, _ := http.NewRequest("POST", base+"/v1/messages", strings.NewReader(string(b)))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("raw send: %d", resp.StatusCode)
	}
}
