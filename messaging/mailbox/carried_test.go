//go:build !js

package mailbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestCarriedWakeUps: envelopes carried by the wake-up reach the device
// in mailbox order exactly once, whatever order the wake-ups arrive in,
// when a wake-up is lost, and when an envelope is too large to carry.
// Carried envelopes in order are written without a mailbox read.
func TestCarriedWakeUps(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_b")
		c := dialEmpty(t, b, dev)
		appendOne := func(body string) mailbox.Envelope {
			t.Helper()
			es := []mailbox.Envelope{env(dev, "dev_a", body)}
			if err := store.Append(ctx, es); err != nil {
				t.Fatal(err)
			}
			return es[0]
		}
		want := func(bodies ...string) {
			t.Helper()
			got := c.collect(len(bodies), true)
			for i, e := range got {
				if i >= len(bodies) || string(e.Ciphertext) != bodies[i] {
					t.Fatalf("envelope %d: %q, want %q (all: %d)", i, e.Ciphertext, bodies, len(got))
				}
			}
		}

		// In order: written from the wake-up alone.
		before := b.hub.Stats()
		e1 := appendOne("1")
		a.hub.Deliver([]mailbox.Envelope{e1})
		want("1")
		after := b.hub.Stats()
		if after.Carried != before.Carried+1 || after.Read != before.Read || after.Forged != before.Forged {
			t.Fatalf("stats %+v → %+v: the in-order envelope should come from its wake-up, its tag (or, on the embedded bus, its lack of one) accepted", before, after)
		}

		// Out of order: the later wake-up first. The gap sends the pump to
		// the mailbox; the earlier wake-up then finds nothing new.
		e2, e3 := appendOne("2"), appendOne("3")
		a.hub.Deliver([]mailbox.Envelope{e3})
		a.hub.Deliver([]mailbox.Envelope{e2})
		want("2", "3")

		// A lost wake-up: the next one's gap brings both.
		appendOne("4")
		e5 := appendOne("5")
		a.hub.Deliver([]mailbox.Envelope{e5})
		want("4", "5")

		// Too large to carry: a plain wake-up, read from the mailbox.
		big := appendOne(strings.Repeat("x", 20<<10))
		a.hub.Deliver([]mailbox.Envelope{big})
		want(string(big.Ciphertext))

		// No duplicate came of any of it: the next envelope is the next one.
		e7 := appendOne("7")
		a.hub.Deliver([]mailbox.Envelope{e7})
		want("7")
		if s := b.hub.Stats(); s.Carried+s.Read != 7 {
			t.Fatalf("stats %+v: %d envelopes written for 7", s, s.Carried+s.Read)
		}
	})
}

// TestOwnWakeUpsOnce: a node's own wake-up reaches its stream once and
// carried, on both buses. On the external bus it is handed to the stream
// in the node, not sent back by NATS: without the hand-over it would come
// only from a ping's read of the mailbox, and with an echo as well the
// stream's device would be woken twice.
func TestOwnWakeUpsOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_b")
		c := dialEmpty(t, b, dev)
		deliver := func(by *node, body string) {
			t.Helper()
			es := []mailbox.Envelope{env(dev, "dev_a", body)}
			if err := store.Append(ctx, es); err != nil {
				t.Fatal(err)
			}
			by.hub.Deliver(es)
			if got := c.collect(1, true); len(got) != 1 || string(got[0].Ciphertext) != body {
				t.Fatalf("got %+v, want %q", got, body)
			}
		}
		before := b.hub.Stats()
		deliver(b, "own")
		// An echo of that wake-up, if NATS sent one, reaches b before
		// the answer to this flush, and so before the wake-up a publishes
		// next: b takes both from NATS in the order they came.
		flush, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := b.bus.Ping(flush); err != nil {
			t.Fatal(err)
		}
		deliver(a, "other's")
		after := b.hub.Stats()
		if woken := after.WakeUps - before.WakeUps; woken != 2 {
			t.Fatalf("the device was woken %d times for 2 envelopes (stats %+v → %+v)", woken, before, after)
		}
		if after.Carried != before.Carried+2 || after.Read != before.Read || after.Forged != before.Forged {
			t.Fatalf("stats %+v → %+v: both envelopes should come from their wake-ups", before, after)
		}
	})
}

// TestCarriedWakeUpsForSeveralDevices: one Deliver with the envelopes of
// several devices wakes each with its own.
func TestCarriedWakeUpsForSeveralDevices(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		var devs []string
		var clients []*client
		for i := range 3 {
			d := uniqueDevice(fmt.Sprintf("dev_%d", i))
			devs = append(devs, d)
			c := dial(t, b, d)
			if f, err := c.next(); err != nil || f.Type != "synced" {
				t.Fatalf("want synced, got %+v %v", f, err)
			}
			clients = append(clients, c)
		}
		var envs []mailbox.Envelope
		for _, d := range devs {
			envs = append(envs, env(d, "dev_a", "for "+d))
		}
		if err := store.Append(ctx, envs); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(envs)
		for i, c := range clients {
			if got := c.collect(1, true); string(got[0].Ciphertext) != "for "+devs[i] || got[0].ID != envs[i].ID {
				t.Fatalf("device %s got %+v", devs[i], got[0])
			}
		}

		// The devices' envelopes interleaved, as when several sends of one
		// commit reach the same devices: each device's wake-up carries its
		// own in their order, and none is read back from the mailbox.
		envs = envs[:0]
		for round := range 3 {
			for _, d := range devs[:2] {
				envs = append(envs, env(d, "dev_a", fmt.Sprintf("%d for %s", round, d)))
			}
		}
		if err := store.Append(ctx, envs); err != nil {
			t.Fatal(err)
		}
		before := b.hub.Stats()
		a.hub.Deliver(envs)
		for i, c := range clients[:2] {
			got := c.collect(3, true)
			for round, e := range got {
				if want := fmt.Sprintf("%d for %s", round, devs[i]); string(e.Ciphertext) != want {
					t.Fatalf("device %s, envelope %d: %q, want %q", devs[i], round, e.Ciphertext, want)
				}
			}
		}
		if after := b.hub.Stats(); after.Carried != before.Carried+6 || after.Read != before.Read {
			t.Fatalf("stats %+v → %+v: the six envelopes should come from their wake-ups", before, after)
		}
	})
}

// TestInFlightLimit: a device that does not acknowledge gets at most
// MaxInFlight envelopes; an envelope that arrives meanwhile, carried or
// not, waits in the mailbox, and acknowledging lets everything through
// in order.
func TestInFlightLimit(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_b")
		const backlog = mailbox.MaxInFlight + 88
		for i := range backlog {
			if err := store.Append(ctx, []mailbox.Envelope{env(dev, "dev_a", fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
		c := dial(t, b, dev)
		first := c.collect(mailbox.MaxInFlight, false)
		if len(first) != mailbox.MaxInFlight {
			t.Fatalf("%d envelopes before any ack, want %d", len(first), mailbox.MaxInFlight)
		}
		live := []mailbox.Envelope{env(dev, "dev_a", fmt.Sprint(backlog))}
		if err := store.Append(ctx, live); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(live)
		ids := make([]string, len(first))
		for i, e := range first {
			if string(e.Ciphertext) != fmt.Sprint(i) {
				t.Fatalf("envelope %d: %q", i, e.Ciphertext)
			}
			ids[i] = e.ID
		}
		c.send(map[string]any{"type": "ack", "ids": ids})
		rest := c.collect(backlog+1-mailbox.MaxInFlight, true)
		for i, e := range rest {
			if want := fmt.Sprint(mailbox.MaxInFlight + i); string(e.Ciphertext) != want {
				t.Fatalf("after the ack, envelope %d: %q, want %q", i, e.Ciphertext, want)
			}
		}
	})
}

// TestLostWakeUpIsReadAfterPing: an envelope whose wake-up was lost (the
// node's queue overflowed under load, or NATS dropped it) and that no later
// wake-up follows reaches the open stream after its next ping, which reads
// the mailbox — it does not wait for the device to reconnect.
func TestLostWakeUpIsReadAfterPing(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, _ *node) {
		ctx := context.Background()
		n := newNodeWithPing(t, store, busBeside(t, a), 0, 200*time.Millisecond)
		dev := uniqueDevice("dev_lost")
		c := dialEmpty(t, n, dev)
		// Committed, and its wake-up never published: the last envelope
		// of a burst whose wake-up was dropped.
		lost := []mailbox.Envelope{env(dev, "dev_a", "lost")}
		if err := store.Append(ctx, lost); err != nil {
			t.Fatal(err)
		}
		got := c.collect(1, true)
		if got[0].ID != lost[0].ID {
			t.Fatalf("got %+v, want the envelope whose wake-up was lost", got[0])
		}
		waitDepth(t, store, dev, 0)
	})
}

// TestWakeUpAfterThePingedLook: a ping's look at the device's head can
// fall between an envelope's commit and its wake-up's arrival (under a
// broadcast's load, a second or more). The stream does not read its
// mailbox for it: it waits for the wake-up and sends the envelope the
// wake-up carries. One whose wake-up never comes is read after the grace
// (TestLostWakeUpIsReadAfterPing, TestIdlePingsReadNoMailbox).
func TestWakeUpAfterThePingedLook(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, _ *node) {
		ctx := context.Background()
		n := newNodeOpts(t, store, busBeside(t, a), 0, 0, nil, 100*time.Millisecond, 0, func(_ *node, o *mailbox.HubOptions) {
			mailbox.SetWakeGrace(o, time.Minute)
		})
		dev := uniqueDevice("dev_late")
		c := dialEmpty(t, n, dev)
		// The device reads on (answering pings) and reports envelopes.
		got := make(chan mailbox.Envelope, 4)
		go func() {
			for {
				_, data, err := c.ws.Read(ctx)
				if err != nil {
					return
				}
				var f frame
				if json.Unmarshal(data, &f) == nil {
					for _, e := range f.Envelopes {
						got <- e
					}
				}
			}
		}()
		es := []mailbox.Envelope{env(dev, "dev_a", "late")}
		if err := store.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
		// Two looks after the commit: at least one read the new head.
		before := n.hub.Stats()
		for deadline := time.Now().Add(20 * time.Second); n.hub.Stats().HeadLooks < before.HeadLooks+2; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no look at the head in 20 s")
			}
		}
		select {
		case e := <-got:
			t.Fatalf("%s was sent before its wake-up: the look read the mailbox", e.ID)
		default:
		}
		a.hub.Deliver(es)
		select {
		case e := <-got:
			if e.ID != es[0].ID {
				t.Fatalf("got %s, want %s", e.ID, es[0].ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the wake-up's envelope did not arrive")
		}
		after := n.hub.Stats()
		if after.Fetches != before.Fetches || after.Carried != before.Carried+1 || after.LateReads != before.LateReads {
			t.Fatalf("stats %+v → %+v: want the envelope from its wake-up, no read of the mailbox", before, after)
		}
	})
}

// TestIdlePingsReadNoMailbox: after each ping an idle stream's device's
// mailbox head is looked at with the other pinged streams' — the mailbox
// itself is read only when it holds more than the stream has sent. Idle
// streams read their mailboxes once, for the backlog, however many pings
// pass; a stream whose envelope's wake-up was lost still gets it after
// its next ping, and only that stream reads.
func TestIdlePingsReadNoMailbox(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, _ *node) {
		ctx := context.Background()
		n := newNodeWithPing(t, store, busBeside(t, a), 0, 100*time.Millisecond)
		const streams = 4
		devs := make([]string, streams)
		cs := make([]*client, streams)
		for i := range cs {
			devs[i] = uniqueDevice(fmt.Sprintf("dev_idleping%d", i))
			// Each device has had an envelope, acknowledged: its head
			// exists and its stream has sent everything.
			if err := store.Append(ctx, []mailbox.Envelope{env(devs[i], "dev_a", "old")}); err != nil {
				t.Fatal(err)
			}
			cs[i] = dial(t, n, devs[i])
			got := cs[i].collect(1, true)
			if got[0].Seq != 1 {
				t.Fatalf("%s: backlog %+v", devs[i], got)
			}
			waitDepth(t, store, devs[i], 0)
		}
		// Pings are answered while the devices read; they acknowledge
		// what comes.
		for i := range cs {
			go func() {
				for {
					_, data, err := cs[i].ws.Read(ctx)
					if err != nil {
						return
					}
					var f frame
					if json.Unmarshal(data, &f) != nil || len(f.Envelopes) == 0 {
						continue
					}
					ack, _ := json.Marshal(map[string]any{"type": "ack", "ids": []string{f.Envelopes[0].ID}})
					if cs[i].ws.Write(ctx, websocket.MessageText, ack) != nil {
						return
					}
				}
			}()
		}
		before := n.hub.Stats()
		for deadline := time.Now().Add(20 * time.Second); n.hub.Stats().HeadLooks < before.HeadLooks+3*streams; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d pinged streams looked at in 20 s, want %d", n.hub.Stats().HeadLooks-before.HeadLooks, 3*streams)
			}
		}
		if st := n.hub.Stats(); st.Fetches != before.Fetches {
			t.Fatalf("idle streams read their mailboxes %d times over %d pings, want none", st.Fetches-before.Fetches, st.HeadLooks-before.HeadLooks)
		}
		// Committed, its wake-up lost: the stream reads after its ping.
		lost := []mailbox.Envelope{env(devs[2], "dev_a", "lost")}
		if err := store.Append(ctx, lost); err != nil {
			t.Fatal(err)
		}
		waitDepth(t, store, devs[2], 0) // delivered and acknowledged
		if st := n.hub.Stats(); st.Fetches == before.Fetches || st.LateReads == before.LateReads {
			t.Fatalf("stats %+v → %+v: the lost envelope was delivered without a late read of the mailbox", before, st)
		}
	})
}

// dialEmpty opens a stream for dev on n, whose mailbox is empty: the
// first frame must be "synced".
func dialEmpty(t *testing.T, n *node, dev string) *client {
	t.Helper()
	c := dial(t, n, dev)
	if f, err := c.next(); err != nil || f.Type != "synced" {
		t.Fatalf("want synced on an empty mailbox, got %+v %v", f, err)
	}
	return c
}
