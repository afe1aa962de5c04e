package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging/mailbox"
)

// A broadcast device that reconnected gets the announcement again from its
// mailbox (it was not acknowledged before the close): the copy is
// acknowledged, not counted as a second delivery.
func TestBroadcastRedeliveryCountedOnce(t *testing.T) {
	acks := make(chan []byte, 4)
	ctx, ws := dialServer(t, func(ws *websocket.Conn, req *http.Request) {
		for {
			_, b, err := ws.Read(req.Context())
			if err != nil {
				return
			}
			acks <- b
		}
	})

	r := &runner{o: &options{scenario: "broadcast"}, errs: &errCounter{}, reconnects: &errCounter{}}
	d := &device{ws: ws, seen: r.seenMap()}
	if d.seen == nil {
		t.Fatal("a broadcast device keeps no record of what it took, so a reconnect would count the announcement twice")
	}
	e := mailbox.Envelope{ID: "e1", Sender: "dev_clerk", Class: mailbox.ClassBroadcast, Ciphertext: []byte("announcement")}
	r.verified.store(string(e.Ciphertext), e.Sender) // checked once, as the bench does
	var handled int
	frames := make(chan envelopesFrame, 2)
	frames <- envelopesFrame{envs: []mailbox.Envelope{e}}
	frames <- envelopesFrame{envs: []mailbox.Envelope{e}} // again, after a reconnect
	close(frames)
	r.process(ctx, d, frames, func(*device, string, byte, time.Time, time.Time) { handled++ })
	if handled != 1 || r.redelivered.Load() != 1 {
		t.Fatalf("handled %d, counted as sent again %d; want the announcement once and its copy once", handled, r.redelivered.Load())
	}
	for range 2 { // both copies acknowledged
		select {
		case b := <-acks:
			if string(b) != `{"ids":["e1"],"type":"ack"}` {
				t.Fatalf("ack frame %s", b)
			}
		case <-ctx.Done():
			t.Fatal("a copy was not acknowledged")
		}
	}
	if n := r.errs.total(); n != 0 {
		t.Fatalf("%d errors: %v", n, r.errs.snapshot())
	}
}

// readFrame returns each message whole, whatever its size against the
// pooled buffer's, and a buffer handed back is not seen in the next
// message.
func TestReadFrameIntoPooledBuffers(t *testing.T) {
	sizes := []int{1, 4095, 4096, 4097, 70000, 3}
	msgs := make([][]byte, len(sizes))
	for i, n := range sizes {
		msgs[i] = make([]byte, n)
		rand.Read(msgs[i])
	}
	ctx, ws := dialServer(t, func(ws *websocket.Conn, req *http.Request) {
		for _, m := range msgs {
			if err := ws.Write(req.Context(), websocket.MessageBinary, m); err != nil {
				return
			}
		}
		ws.Close(websocket.StatusNormalClosure, "")
	})
	ws.SetReadLimit(1 << 20)
	for i, want := range msgs {
		typ, buf, err := readFrame(ctx, ws)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(*buf, want) {
			t.Fatalf("message %d of %d bytes: got %d bytes, type %v", i, len(want), len(*buf), typ)
		}
		frameBufs.Put(buf)
	}
	if _, _, err := readFrame(ctx, ws); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after the last message: %v", err)
	}
}

// dialServer starts a websocket server that runs serve on each connection
// and dials it; both end with the test.
func dialServer(t *testing.T, serve func(*websocket.Conn, *http.Request)) (context.Context, *websocket.Conn) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ws, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		serve(ws, req)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, "ws"+srv.URL[len("http"):], nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ctx, ws
}
