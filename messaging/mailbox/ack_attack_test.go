//go:build !js

package mailbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestAckFloodIsNotAWritePerFrame: a citizen with a session of their own
// floods their stream with ack frames — naming an envelope they were sent
// over and over, envelope ids they made up, and the ids of another
// device's envelopes — to turn each frame into a database write. The
// acks of envelopes the stream sent are written together, the rest not
// at all, and the other device's envelopes stay.
func TestAckFloodIsNotAWritePerFrame(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev, other := uniqueDevice("dev_flood"), uniqueDevice("dev_other")
		theirs := []mailbox.Envelope{env(other, "dev_a", "theirs")}
		mine := []mailbox.Envelope{env(dev, "dev_a", "1"), env(dev, "dev_a", "2"), env(dev, "dev_a", "3")}
		for _, es := range [][]mailbox.Envelope{theirs, mine} {
			if err := store.Append(ctx, es); err != nil {
				t.Fatal(err)
			}
		}
		c := dial(t, b, dev)
		got := c.collect(len(mine), false)
		if len(got) != len(mine) {
			t.Fatalf("got %d envelopes", len(got))
		}
		before := b.hub.Stats().AckWrites
		const frames = 2000
		for i := range frames {
			var ids []string
			switch i % 3 {
			case 0:
				ids = []string{mine[0].ID}
			case 1:
				ids = []string{fmt.Sprint("made-up-", i)}
			case 2:
				ids = []string{theirs[0].ID}
			}
			c.send(map[string]any{"type": "ack", "ids": ids})
		}
		c.send(map[string]any{"type": "ack", "ids": []string{mine[1].ID, mine[2].ID}})
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if n, err := store.Depth(ctx, dev); err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				n, _ := store.Depth(ctx, dev)
				t.Fatalf("%d acknowledged envelopes still stored", n)
			}
		}
		// One write for the first ack, one for the rest gathered.
		if w := b.hub.Stats().AckWrites - before; w > 2 {
			t.Fatalf("%d ack frames made %d writes, want at most 2", frames+1, w)
		}
		if n, err := store.Depth(ctx, other); err != nil || n != 1 {
			t.Fatalf("the other device's mailbox holds %d (%v), want its envelope", n, err)
		}
		// The stream is still fine: a new envelope comes and is acked.
		next := []mailbox.Envelope{env(dev, "dev_a", "4")}
		if err := store.Append(ctx, next); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(next)
		if got := c.collect(1, true); got[0].ID != next[0].ID {
			t.Fatalf("after the flood the stream sent %+v", got)
		}
	})
}

// TestAcksWrittenRoundAfterRound: a device that takes one envelope after
// another and acknowledges each has every one of them deleted, the acks
// that come within AckInterval of the last write included (they wait for
// the stream's timer, which each round arms again).
func TestAcksWrittenRoundAfterRound(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_rounds")
		c := dial(t, b, dev)
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		for i := range 6 {
			es := []mailbox.Envelope{env(dev, "dev_a", fmt.Sprint(i))}
			if err := store.Append(ctx, es); err != nil {
				t.Fatal(err)
			}
			a.hub.Deliver(es)
			if got := c.collect(1, true); got[0].ID != es[0].ID {
				t.Fatalf("round %d: got %+v", i, got)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				n, err := store.Depth(ctx, dev)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the acknowledged envelope is still stored", i)
				}
			}
		}
	})
}
