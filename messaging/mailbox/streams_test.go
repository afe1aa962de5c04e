//go:build !js

package mailbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// tryDial opens a stream for device, or returns the HTTP status and
// problem the server refused it with.
func tryDial(t *testing.T, n *node, device string) (*client, int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.srv.URL, "http"), &websocket.DialOptions{
		HTTPHeader: http.Header{"Kanal-Test-Device": {device}},
	})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		var p map[string]any
		if jerr := json.Unmarshal(body, &p); jerr != nil {
			t.Fatalf("refusal %d is not problem+json: %q", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("refusal content type %q", ct)
		}
		return nil, resp.StatusCode, p
	}
	ws.SetReadLimit(1 << 22)
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws}, http.StatusSwitchingProtocols, nil
}

func waitStreams(t *testing.T, n *node, dev string, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.hub.Streams(dev) != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("device has %d streams on the node, want %d", n.hub.Streams(dev), want)
		}
	}
}

func waitDepth(t *testing.T, store *mailbox.Store, dev string, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, err := store.Depth(context.Background(), dev)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailbox holds %d envelopes (%v), want %d", n, err, want)
		}
	}
}

func ids(es []mailbox.Envelope) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// TestSeveralStreamsPerDevice: two streams of one device are open at once
// on one node and a third on the other; each gets the backlog and every
// live envelope; an ack on one deletes the envelope for all, so a stream
// opened afterwards does not get it again.
func TestSeveralStreamsPerDevice(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_multi")
		backlog := []mailbox.Envelope{env(dev, "dev_a", "while away")}
		if err := store.Append(ctx, backlog); err != nil {
			t.Fatal(err)
		}
		one, two, three := dial(t, a, dev), dial(t, a, dev), dial(t, b, dev)
		waitStreams(t, a, dev, 2)
		waitStreams(t, b, dev, 1)
		streams := []*client{one, two, three}
		for i, c := range streams {
			if got := c.collect(1, false); got[0].ID != backlog[0].ID {
				t.Fatalf("stream %d: backlog %+v", i, got)
			}
		}
		for i := range 3 {
			live := []mailbox.Envelope{env(dev, "dev_a", fmt.Sprint("live ", i))}
			if err := store.Append(ctx, live); err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				b.hub.Deliver(live) // carried in the wake-up
			} else {
				b.hub.Notify(dev) // a plain wake-up: each stream reads the mailbox
			}
			for j, c := range streams {
				if got := c.collect(1, false); got[0].ID != live[0].ID {
					t.Fatalf("stream %d: live envelope %d: %+v", j, i, got)
				}
			}
		}
		// One wake-up per envelope reached each node, however many
		// streams the device holds there (they share one subscription).
		if w := a.hub.Stats().WakeUps; w != 3 {
			t.Errorf("node A dispatched %d wake-ups for 3 envelopes", w)
		}
		if a.hub.Streams(dev) != 2 || b.hub.Streams(dev) != 1 {
			t.Fatalf("a stream closed: %d on A, %d on B", a.hub.Streams(dev), b.hub.Streams(dev))
		}
		// Stream two acknowledges the backlog envelope: it is gone for
		// all; a new stream starts with the three live ones.
		two.send(map[string]any{"type": "ack", "ids": ids(backlog)})
		waitDepth(t, store, dev, 3)
		four := dial(t, b, dev)
		got := four.collect(3, true)
		for _, e := range got {
			if e.ID == backlog[0].ID {
				t.Fatal("an acknowledged envelope came again on a new stream")
			}
		}
		waitDepth(t, store, dev, 0)
		// Closing one stream leaves the others open.
		one.ws.Close(websocket.StatusNormalClosure, "")
		waitStreams(t, a, dev, 1)
		live := []mailbox.Envelope{env(dev, "dev_a", "after one left")}
		if err := store.Append(ctx, live); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(live)
		for j, c := range []*client{two, three, four} {
			if got := c.collect(1, false); got[0].ID != live[0].ID {
				t.Fatalf("stream %d after one left: %+v", j, got)
			}
		}
	})
}

// TestTooManyStreams: the stream after MaxStreams on one node is refused
// before the upgrade with 429 too-many-streams; the open ones stay open and
// keep receiving; the limit is per node, and a closed stream frees its
// place. Another device is not affected.
func TestTooManyStreams(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_many")
		var open []*client
		for range mailbox.MaxStreams {
			c, code, p := tryDial(t, a, dev)
			if c == nil {
				t.Fatalf("stream %d refused: %d %v", len(open)+1, code, p)
			}
			open = append(open, c)
		}
		waitStreams(t, a, dev, mailbox.MaxStreams)
		c, code, p := tryDial(t, a, dev)
		if c != nil || code != http.StatusTooManyRequests || p["type"] != string(mailbox.TypeTooManyStreams) {
			t.Fatalf("stream %d: %d %v, want 429 %s", mailbox.MaxStreams+1, code, p, mailbox.TypeTooManyStreams)
		}
		if p["max_streams"] != float64(mailbox.MaxStreams) || !strings.Contains(fmt.Sprint(p["detail"]), "close one") {
			t.Errorf("problem does not say the limit: %v", p)
		}
		if other, code, p := tryDial(t, a, uniqueDevice("dev_other")); other == nil {
			t.Fatalf("another device refused: %d %v", code, p)
		}
		// The refused request changed nothing: all open streams get the
		// next envelope.
		waitStreams(t, a, dev, mailbox.MaxStreams)
		live := []mailbox.Envelope{env(dev, "dev_a", "to all")}
		if err := store.Append(ctx, live); err != nil {
			t.Fatal(err)
		}
		b.hub.Deliver(live)
		for i, c := range open {
			if got := c.collect(1, false); got[0].ID != live[0].ID {
				t.Fatalf("stream %d: %+v", i, got)
			}
		}
		// Per node: the other node takes one more.
		if c, code, p := tryDial(t, b, dev); c == nil {
			t.Fatalf("other node refused: %d %v", code, p)
		}
		// A closed stream frees its place.
		open[0].ws.Close(websocket.StatusNormalClosure, "")
		waitStreams(t, a, dev, mailbox.MaxStreams-1)
		if c, code, p := tryDial(t, a, dev); c == nil {
			t.Fatalf("after a close: %d %v", code, p)
		}
	})
}

// TestAttackStreamBurstStaysWithinLimit: many stream requests of one device
// at the same moment open at most MaxStreams; the rest get 429 and none of
// the open ones is closed.
func TestAttackStreamBurstStaysWithinLimit(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, _ *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_burst")
		const burst = 4 * mailbox.MaxStreams
		var (
			mu     sync.Mutex
			opened []*client
			codes  = map[int]int{}
			wg     sync.WaitGroup
			start  = make(chan struct{})
		)
		for range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				c, code, p := tryDial(t, a, dev)
				mu.Lock()
				defer mu.Unlock()
				codes[code]++
				if c != nil {
					opened = append(opened, c)
				} else if p["type"] != string(mailbox.TypeTooManyStreams) {
					t.Errorf("refused with %v", p)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(opened) != mailbox.MaxStreams || codes[http.StatusTooManyRequests] != burst-mailbox.MaxStreams {
			t.Fatalf("burst of %d: %d opened, statuses %v; want %d opened, the rest 429", burst, len(opened), codes, mailbox.MaxStreams)
		}
		waitStreams(t, a, dev, mailbox.MaxStreams)
		live := []mailbox.Envelope{env(dev, "dev_a", "after the burst")}
		if err := store.Append(ctx, live); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(live)
		for i, c := range opened {
			if got := c.collect(1, false); got[0].ID != live[0].ID {
				t.Fatalf("stream %d after the burst: %+v", i, got)
			}
		}
	})
}

// TestAttackSiblingAcksFreeInFlightRoom: a device holds two streams; one
// never acknowledges, the other acknowledges everything it gets, twice,
// plus ids only its sibling was sent, plus made-up ids. An ack frees room
// in a sibling's window only for an envelope actually deleted, so the
// silent stream never holds more than MaxInFlight envelopes that are
// still in the mailbox — acks cannot buy a stream unbounded room.
func TestAttackSiblingAcksFreeInFlightRoom(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, _ *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_sib")
		const total = 3 * mailbox.MaxInFlight
		envs := make([]mailbox.Envelope, total)
		for i := range envs {
			envs[i] = env(dev, "dev_a", fmt.Sprint(i))
		}
		if err := store.Append(ctx, envs); err != nil {
			t.Fatal(err)
		}
		silent := dial(t, a, dev)
		// The silent stream takes its full window first.
		held := silent.collect(mailbox.MaxInFlight, false)
		acker := dial(t, a, dev)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for n := 0; n < total; {
				f, err := acker.next()
				if err != nil {
					return
				}
				if f.Type != "envelopes" {
					continue
				}
				n += len(f.Envelopes)
				got := ids(f.Envelopes)
				made := []string{"env_madeup" + fmt.Sprint(n), got[0] + "x"}
				acker.send(map[string]any{"type": "ack", "ids": got})
				acker.send(map[string]any{"type": "ack", "ids": got})
				acker.send(map[string]any{"type": "ack", "ids": append(ids(held[:min(len(held), 64)]), made...)})
			}
		}()
		seen := map[string]bool{}
		for _, e := range held {
			seen[e.ID] = true
		}
		// The acker runs ahead and its acks delete envelopes the silent
		// stream was never sent: it does not get those. It reads until the
		// test closes it, once the acker is through.
		silentDone := make(chan struct{})
		go func() {
			defer close(silentDone)
			for {
				f, err := silent.next()
				if err != nil {
					return
				}
				if f.Type != "envelopes" {
					continue
				}
				for _, e := range f.Envelopes {
					seen[e.ID] = true
				}
				depth, err := store.Depth(ctx, dev)
				if err != nil {
					t.Error(err)
					return
				}
				// Envelopes the silent stream was sent that are still
				// stored: at most its window.
				if outstanding := len(seen) - (total - depth); outstanding > mailbox.MaxInFlight {
					t.Errorf("silent stream holds %d envelopes still in the mailbox, more than %d", outstanding, mailbox.MaxInFlight)
					return
				}
			}
		}()
		<-done
		waitDepth(t, store, dev, 0)
		silent.ws.CloseNow()
		<-silentDone
		if len(seen) > total {
			t.Fatalf("silent stream saw %d envelopes of %d", len(seen), total)
		}
	})
}

// TestStreamRefusedWithoutBus: while the node has lost the bus, a stream
// is refused before the upgrade with 503 unavailable (it would get no live
// envelopes), not opened half-working.
func TestStreamRefusedWithoutBus(t *testing.T) {
	d := dbtest.SQLite(t, mailbox.Migrations())
	b, err := bus.Open(context.Background(), bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := newNode(t, mailbox.NewStore(d, mailbox.StoreOptions{}), b, 0)
	b.Conn().Close()
	c, code, p := tryDial(t, n, "dev_nobus")
	if c != nil || code != http.StatusServiceUnavailable || p["type"] != string(web.TypeUnavailable) {
		t.Fatalf("without the bus: %d %v, want 503 %s", code, p, web.TypeUnavailable)
	}
	if n.hub.Streams("dev_nobus") != 0 {
		t.Fatal("a refused stream was registered")
	}
}
