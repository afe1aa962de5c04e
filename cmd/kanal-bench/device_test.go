package main

import (
	"context"
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ws, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			_, b, err := ws.Read(req.Context())
			if err != nil {
				return
			}
			acks <- b
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+srv.URL[len("http"):], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	r := &runner{o: &options{scenario: "broadcast"}, errs: &errCounter{}, reconnects: &errCounter{}}
	d := &device{ws: ws, seen: r.seenMap()}
	if d.seen == nil {
		t.Fatal("a broadcast device keeps no record of what it took, so a reconnect would count the announcement twice")
	}
	e := mailbox.Envelope{ID: "e1", Sender: "dev_clerk", Class: mailbox.ClassBroadcast, Ciphertext: []byte("announcement")}
	r.verified.Store(string(e.Ciphertext), e.Sender) // checked once, as the bench does
	var handled int
	frames := make(chan []mailbox.Envelope, 2)
	frames <- []mailbox.Envelope{e}
	frames <- []mailbox.Envelope{e} // again, after a reconnect
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
