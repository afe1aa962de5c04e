package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// dialFrameSink dials a server that hands every frame it reads to the
// returned channel.
func dialFrameSink(t *testing.T) (context.Context, *websocket.Conn, <-chan []byte) {
	frames := make(chan []byte, 8)
	ctx, ws := dialServer(t, func(ws *websocket.Conn, req *http.Request) {
		for {
			_, b, err := ws.Read(req.Context())
			if err != nil {
				return
			}
			frames <- b
		}
	})
	return ctx, ws, frames
}

// A broadcast device that reconnected gets the announcement again from its
// mailbox (it was not acknowledged before the close): the copy is
// acknowledged, with the first in one gathered ack frame, and not counted
// as a second delivery.
func TestBroadcastRedeliveryCountedOnce(t *testing.T) {
	ctx, ws, acks := dialFrameSink(t)

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
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.process(ctx, d, frames, func(*device, string, byte, time.Time, time.Time) { handled++ })
	}()
	// Both copies acknowledged, gathered into one frame as the SDK does.
	select {
	case b := <-acks:
		if string(b) != `{"ids":["e1","e1"],"type":"ack"}` {
			t.Fatalf("ack frame %s", b)
		}
	case <-ctx.Done():
		t.Fatal("the copies were not acknowledged")
	}
	close(frames)
	<-done
	if handled != 1 || r.redelivered.Load() != 1 {
		t.Fatalf("handled %d, counted as sent again %d; want the announcement once and its copy once", handled, r.redelivered.Load())
	}
	if n := r.errs.total(); n != 0 {
		t.Fatalf("%d errors: %v", n, r.errs.snapshot())
	}
}

// The load generator acknowledges as the SDK's Receive does: gathered
// (one frame for what arrives within client.AckDelay), at once when
// client.AckAtOnce wait, and never more than wire.MaxAckBatch ids in a
// frame, which the server would refuse.
func TestAcksGatheredAndSplit(t *testing.T) {
	ctx, ws, acks := dialFrameSink(t)
	r := &runner{o: &options{scenario: "direct"}, errs: &errCounter{}, reconnects: &errCounter{}}
	d := &device{ws: ws}
	frame := func(from, n int) envelopesFrame {
		var envs []mailbox.Envelope
		for i := from; i < from+n; i++ {
			// Server notices: acknowledged without being decrypted.
			envs = append(envs, mailbox.Envelope{ID: fmt.Sprint("e", i), Sender: messaging.NoticeSender})
		}
		return envelopesFrame{envs: envs}
	}
	frames := make(chan envelopesFrame, 4)
	frames <- frame(0, 3)
	frames <- frame(3, client.AckAtOnce-4) // one short of AckAtOnce
	frames <- frame(client.AckAtOnce-1, 400)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.process(ctx, d, frames, func(*device, string, byte, time.Time, time.Time) {})
	}()
	next := func() []string {
		t.Helper()
		select {
		case b := <-acks:
			var f struct {
				Type string   `json:"type"`
				IDs  []string `json:"ids"`
			}
			if err := json.Unmarshal(b, &f); err != nil || f.Type != "ack" {
				t.Fatalf("ack frame %s: %v", b, err)
			}
			return f.IDs
		case <-ctx.Done():
			t.Fatal("no ack frame")
			return nil
		}
	}
	total := client.AckAtOnce - 1 + 400
	first, second := next(), next()
	if len(first) != wire.MaxAckBatch || len(second) != total-wire.MaxAckBatch {
		t.Fatalf("ack frames of %d and %d ids, want %d and %d", len(first), len(second), wire.MaxAckBatch, total-wire.MaxAckBatch)
	}
	for i, id := range append(first, second...) {
		if id != fmt.Sprint("e", i) {
			t.Fatalf("id %d is %s", i, id)
		}
	}
	frames <- frame(total, 2)
	if got := next(); len(got) != 2 {
		t.Fatalf("the last two acknowledged as %v", got)
	}
	close(frames)
	<-done
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

// The last delivery is the latest of all recorded, whatever order the
// devices' goroutines record them in: the broadcast's time is read from
// it.
func TestLastDeliveryIsTheLatest(t *testing.T) {
	r := &runner{}
	base := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine records its deliveries latest first.
			for i := 1000; i >= 0; i-- {
				r.deliveredAt(base.Add(time.Duration(i*8+g) * time.Microsecond))
			}
		}()
	}
	wg.Wait()
	if got, want := r.lastDeliv.Load(), base.Add(8007*time.Microsecond).UnixNano(); got != want {
		t.Fatalf("last delivery %v after the first, want %v", time.Duration(got-base.UnixNano()), 8007*time.Microsecond)
	}
}

// A device is synced once it has taken its backlog: the envelopes frames
// the server sent before "synced" are handled before the device counts
// as synced. A broadcast's measurement begins at the sync, so otherwise a
// backlog's announcement — an earlier run's, kept for a follower that was
// offline then (-keep) — still being handled would count as a delivery
// of the measured post.
func TestSyncedAfterTheBacklog(t *testing.T) {
	e := mailbox.Envelope{ID: "e1", Sender: "dev_clerk", Class: mailbox.ClassBroadcast, Ciphertext: []byte("an earlier announcement")}
	ctx, ws := dialServer(t, func(ws *websocket.Conn, req *http.Request) {
		backlog, err := json.Marshal(map[string]any{"type": "envelopes", "envelopes": []mailbox.Envelope{e}})
		if err != nil {
			return
		}
		// The backlog, the sync, then an answer the test waits for: once
		// it is answered, the read loop has read "synced".
		for _, f := range [][]byte{backlog, []byte(`{"type":"synced"}`), []byte(`{"type":"sent","ref":"r1"}`)} {
			if ws.Write(req.Context(), websocket.MessageText, f) != nil {
				return
			}
		}
		for {
			if _, _, err := ws.Read(req.Context()); err != nil {
				return
			}
		}
	})
	r := &runner{o: &options{scenario: "broadcast"}, errs: &errCounter{}, reconnects: &errCounter{}}
	r.verified.store(string(e.Ciphertext), e.Sender) // checked once, as the bench does
	answered := make(chan error, 1)
	d := &device{ws: ws, seen: r.seenMap(), synced: make(chan struct{}), pending: map[string]chan error{"r1": answered}}
	d.markSynced = sync.OnceFunc(func() { close(d.synced) })
	handling, release := make(chan struct{}), make(chan struct{})
	go r.readLoop(ctx, d, ws, func(*device, string, byte, time.Time, time.Time) {
		close(handling)
		<-release
	})
	select {
	case <-handling:
	case <-ctx.Done():
		t.Fatal("the backlog's envelope was not handled")
	}
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the frame after synced was not read")
	}
	select {
	case <-d.synced:
		t.Fatal("the device counted as synced while its backlog was still being handled")
	default:
	}
	close(release)
	select {
	case <-d.synced:
	case <-ctx.Done():
		t.Fatal("the device did not count as synced after its backlog")
	}
}
