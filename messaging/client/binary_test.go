//go:build !js

package client_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// TestBinaryAndJSONClientsInOneConversation: alice's client speaks the
// stream in JSON, as clients from before binary frames do; bob's offers
// binary frames and gets them. Each sends on its own stream and receives
// the other's message, decrypted and checked, on both engines: the server
// stores what either sends the same way and delivers it in the form each
// stream chose.
func TestBinaryAndJSONClientsInOneConversation(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s := startKanald(t, postgres)
		alice, bob, aliceSDK, bobSDK := pair(t, s.Server)
		aliceSDK.UseJSONFramesForTest()

		as, err := aliceSDK.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer as.Close()
		bs, err := bobSDK.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer bs.Close()
		if as.Binary() || !bs.Binary() {
			t.Fatalf("alice's stream binary %v (want JSON), bob's %v (want binary)", as.Binary(), bs.Binary())
		}
		<-as.Synced()
		<-bs.Synced()

		exchange := func(from *client.Stream, to *client.Stream, toAccount, text string) {
			t.Helper()
			resp, err := from.Send(ctx, client.Peer{AccountID: toAccount}, textMsg(t, text))
			if err != nil {
				t.Fatalf("send %q: %v", text, err)
			}
			if len(resp.EnvelopeIDs) == 0 || resp.ServerTime.IsZero() {
				t.Fatalf("send %q answered %+v", text, resp)
			}
			for {
				in, err := to.Receive(ctx)
				if err != nil {
					t.Fatalf("receive %q: %v", text, err)
				}
				if tb, ok := in.Message.Body.(*kind.TextBody); ok {
					if tb.Text != text {
						t.Fatalf("received %q, want %q", tb.Text, text)
					}
					if _, ok := resp.EnvelopeIDs[to.DeviceForTest()]; !ok {
						t.Fatalf("the sent answer %v lacks the receiving device", resp.EnvelopeIDs)
					}
					return
				}
			}
		}
		exchange(as, bs, bob.AccountID, "Grüß dich, aus JSON")
		exchange(bs, as, alice.AccountID, "Servus, binär zurück")
		exchange(as, bs, bob.AccountID, "und noch einmal")
		if err := as.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := bs.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAttackMalformedBinaryFrames: a device on a binary stream sends
// frames that are not exactly the protocol — a valid send with one byte
// more, a text frame, an unknown type, a frame over the limit. Each
// closes the stream with its code and stores nothing; the same send
// without the extra byte is stored and answered. An ack the server
// refuses is answered with a problem frame and the stream goes on.
func TestAttackMalformedBinaryFrames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := startKanald(t, false)
	alice, bob, _, bobSDK := pair(t, s.Server)
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/v1/stream"
	dial := func() *websocket.Conn {
		t.Helper()
		ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{binframe.Subprotocol},
			HTTPHeader: http.Header{"Authorization": {"Bearer " + alice.Token}}})
		if err != nil {
			t.Fatal(err)
		}
		if ws.Subprotocol() != binframe.Subprotocol {
			t.Fatalf("subprotocol %q", ws.Subprotocol())
		}
		ws.SetReadLimit(1 << 20)
		if typ, b, err := ws.Read(ctx); err != nil || typ != websocket.MessageBinary || !bytes.Equal(b, []byte{wire.FrameSynced}) {
			t.Fatalf("first frame %v % x %v, want synced", typ, b, err)
		}
		return ws
	}
	send, err := messaging.AppendSendFrame(nil, "r1", &messaging.SendRequest{To: messaging.SendTo{AccountID: bob.AccountID},
		ClientID: "c1", Class: "message", Envelopes: []messaging.SendEnvelope{{DeviceID: bob.DeviceID, Data: []byte("ciphertext")}}})
	if err != nil {
		t.Fatal(err)
	}
	closedWith := func(ws *websocket.Conn, typ websocket.MessageType, frame []byte, code websocket.StatusCode) {
		t.Helper()
		defer ws.CloseNow()
		if err := ws.Write(ctx, typ, frame); err != nil {
			t.Fatal(err)
		}
		_, b, err := ws.Read(ctx)
		if got := websocket.CloseStatus(err); got != code {
			t.Fatalf("frame % x…: read % x %v, want close %d", frame[:min(len(frame), 8)], b, err, code)
		}
	}
	closedWith(dial(), websocket.MessageBinary, append(slices.Clone(send), 0), websocket.StatusPolicyViolation)
	closedWith(dial(), websocket.MessageBinary, append([]byte{0x7f}, send[1:]...), websocket.StatusPolicyViolation)
	closedWith(dial(), websocket.MessageText, []byte(`{"type":"ack","ids":[]}`), websocket.StatusUnsupportedData)
	closedWith(dial(), websocket.MessageBinary, append(slices.Clone(send), make([]byte, mailbox.MaxFrame)...), websocket.StatusMessageTooBig)

	// Nothing of those is in bob's mailbox: his stream's backlog is empty.
	bs, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in, bad, err := bs.Backlog(ctx)
	bs.Close()
	if err != nil || len(in)+len(bad) != 0 {
		t.Fatalf("bob's backlog after malformed frames: %d messages, %v, %v", len(in), bad, err)
	}

	ws := dial()
	defer ws.CloseNow()
	ids := make([]string, mailbox.MaxAckBatch+1)
	for i := range ids {
		ids[i] = "e" + strconv.Itoa(i)
	}
	ack, _ := wire.AppendAck(nil, ids)
	if err := ws.Write(ctx, websocket.MessageBinary, ack); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || len(b) == 0 || b[0] != wire.FrameProblem {
		t.Fatalf("an ack of %d ids: % x %v, want a problem frame", len(ids), b, err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, send); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref, resp, err := messaging.DecodeSentFrame(b)
	if err != nil || ref != "r1" || resp.EnvelopeIDs[bob.DeviceID] == "" {
		t.Fatalf("the well-formed send: %q %+v %v", ref, resp, err)
	}
	bs, err = bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	_, bad, err = bs.Backlog(ctx)
	if err != nil || len(bad) != 1 { // "ciphertext" does not decrypt: one ReceiveError, stored once
		t.Fatalf("bob's backlog after the send: %v %v", bad, err)
	}
}
