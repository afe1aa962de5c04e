package bus_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/bus"
)

const natsEnv = "KANAL_TEST_NATS"

// each runs fn against the embedded server and, when KANAL_TEST_NATS is set,
// against the external one.
func each(t *testing.T, fn func(t *testing.T, open func() *bus.Bus)) {
	t.Run("embedded", func(t *testing.T) {
		b := mustOpen(t, bus.Options{Name: "test"})
		fn(t, func() *bus.Bus { return b })
	})
	t.Run("external", func(t *testing.T) {
		u := os.Getenv(natsEnv)
		if u == "" {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not set under CI: the external NATS suite must run", natsEnv)
			}
			t.Skipf("%s not set: external NATS variant not run", natsEnv)
		}
		fn(t, func() *bus.Bus { return mustOpen(t, bus.Options{URL: u, Name: "test"}) })
	})
}

func mustOpen(t *testing.T, o bus.Options) *bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// uniqueSubject keeps parallel test runs on a shared server apart.
func uniqueSubject(t *testing.T) string {
	return "kanaltest." + strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + "." + time.Now().Format("150405.000000000")
}

func TestPublishSubscribe(t *testing.T) {
	each(t, func(t *testing.T, open func() *bus.Bus) {
		a, b := open(), open()
		subj := uniqueSubject(t)
		got := make(chan string, 10)
		sub, err := b.Subscribe(subj+".*", func(m *bus.Msg) { got <- m.Subject + "=" + string(m.Data) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := b.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		if err := a.Publish(subj+".dev1", []byte("wake")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m != subj+".dev1=wake" {
				t.Fatalf("got %q", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
		}
	})
}

func TestRequestReply(t *testing.T) {
	each(t, func(t *testing.T, open func() *bus.Bus) {
		a, b := open(), open()
		subj := uniqueSubject(t)
		sub, err := b.Subscribe(subj, func(m *bus.Msg) { _ = m.Respond(append([]byte("re:"), m.Data...)) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		_ = b.Conn().Flush()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := a.Request(ctx, subj, []byte("ping"))
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != "re:ping" {
			t.Fatalf("reply %q", m.Data)
		}
		if err := a.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
	})
}

func TestQueueSubscribeDeliversOnce(t *testing.T) {
	each(t, func(t *testing.T, open func() *bus.Bus) {
		a, b := open(), open()
		subj := uniqueSubject(t)
		var n atomic.Int32
		for i := 0; i < 3; i++ {
			sub, err := b.QueueSubscribe(subj, "workers", func(*bus.Msg) { n.Add(1) })
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
		}
		_ = b.Conn().Flush()
		for i := 0; i < 50; i++ {
			_ = a.Publish(subj, []byte("x"))
		}
		_ = a.Conn().Flush()
		deadline := time.Now().Add(5 * time.Second)
		for n.Load() < 50 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		if got := n.Load(); got != 50 {
			t.Fatalf("delivered %d times, want 50", got)
		}
	})
}

func TestCloseDrainsPending(t *testing.T) {
	each(t, func(t *testing.T, open func() *bus.Bus) {
		b, peer := open(), open() // the same bus on the embedded server
		subj := uniqueSubject(t)
		var n atomic.Int32
		if _, err := b.Subscribe(subj, func(*bus.Msg) { time.Sleep(time.Millisecond); n.Add(1) }); err != nil {
			t.Fatal(err)
		}
		_ = b.Conn().Flush()
		for i := 0; i < 20; i++ {
			_ = peer.Publish(subj, nil)
		}
		// The server has queued the 20 for b before it answers peer's
		// flush, and so before it answers b's.
		_ = peer.Conn().Flush()
		_ = b.Conn().Flush()
		if err := b.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if got := n.Load(); got != 20 {
			t.Fatalf("handled %d before close returned, want 20", got)
		}
	})
}

func TestBadURLs(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:4222", "nats://", "nats://[::1", "127.0.0.1:4222"} {
		if _, err := bus.Open(context.Background(), bus.Options{URL: u}); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
}

func TestUnreachable(t *testing.T) {
	_, err := bus.Open(context.Background(), bus.Options{URL: "nats://user:hunter2@127.0.0.1:1"})
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error should name the address and hide the password: %v", err)
	}
}

// TestPublishLocal: on the embedded bus a local publish reaches the
// channels subscribed to its subject's prefix, in order, and no NATS
// subscriber; a full channel drops (at most once, as NATS does for a slow
// consumer); after unsubscribing nothing arrives. On an external bus it
// is an ordinary publish.
func TestPublishLocal(t *testing.T) {
	each(t, func(t *testing.T, open func() *bus.Bus) {
		// peer is another node's connection on the external bus (which
		// does not echo), the same one on the embedded bus.
		b, peer := open(), open()
		subj := uniqueSubject(t)
		viaNATS := make(chan *bus.Msg, 10)
		sub, err := peer.ChanSubscribe(subj+".*", viaNATS)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := peer.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		local, other := make(chan *bus.Msg, 2), make(chan *bus.Msg, 2)
		unsubscribe := b.LocalSubscribe(subj+".", local)
		defer b.LocalSubscribe(subj+"x.", other)()
		for _, d := range []string{"1", "2", "3"} {
			if err := b.PublishLocal(subj+".dev"+d, []byte(d)); err != nil {
				t.Fatal(err)
			}
		}
		if !b.Embedded() {
			// External: NATS carries all three, nothing is local.
			for _, want := range []string{"1", "2", "3"} {
				select {
				case m := <-viaNATS:
					if string(m.Data) != want {
						t.Fatalf("got %q, want %q", m.Data, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no message over NATS")
				}
			}
			if len(local) != 0 {
				t.Fatal("a local subscription took a message on the external bus")
			}
			return
		}
		if len(local) != 2 {
			t.Fatalf("local channel holds %d messages, want 2 (the third dropped: full)", len(local))
		}
		for _, want := range []string{"1", "2"} {
			if m := <-local; m.Subject != subj+".dev"+want || string(m.Data) != want {
				t.Fatalf("got %s=%q, want the publishes in order", m.Subject, m.Data)
			}
		}
		if len(other) != 0 {
			t.Fatal("a subscription to another prefix got a message")
		}
		unsubscribe()
		if err := b.PublishLocal(subj+".dev4", []byte("4")); err != nil {
			t.Fatal(err)
		}
		if len(local) != 0 {
			t.Fatal("a message reached the channel after unsubscribing")
		}
		if err := b.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		if len(viaNATS) != 0 {
			t.Fatal("a local publish went through NATS")
		}
	})
}

// TestEchoes: what a node publishes reaches the other nodes, and reaches
// its own subscriptions only on the embedded bus, whose one connection the
// hubs of a process share. On an external bus the server writes nothing
// back to the publisher (the mailbox hub hands its own wake-ups to its
// streams itself), so Echoes must say so, or the hub's streams would get
// each wake-up twice, or never.
func TestEchoes(t *testing.T) {
	each(t, func(t *testing.T, open func() *bus.Bus) {
		self, other := open(), open()
		subj := uniqueSubject(t)
		own, theirs := make(chan *bus.Msg, 4), make(chan *bus.Msg, 4)
		for _, s := range []struct {
			b  *bus.Bus
			ch chan *bus.Msg
		}{{self, own}, {other, theirs}} {
			sub, err := s.b.ChanSubscribe(subj, s.ch)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := s.b.Conn().Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if err := self.Publish(subj, []byte("wake")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-theirs:
			if string(m.Data) != "wake" {
				t.Fatalf("the other node got %q", m.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the other node got nothing")
		}
		// The server answers the publisher's flush after anything it wrote
		// to that connection for the publish, and ChanSubscribe fills the
		// channel in the client's read loop, before the answer is read.
		if err := self.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		echoed := len(own) // on the embedded bus self is other: its own subscription is one of two
		if want := self.Echoes(); (echoed > 0) != want {
			t.Fatalf("Echoes() = %v, but the publisher's own subscription got %d copies", want, echoed)
		}
	})
}
