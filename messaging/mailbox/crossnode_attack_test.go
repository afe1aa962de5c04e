//go:build !js

package mailbox_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Two kanald nodes on one PostgreSQL, each with its own group commit,
// commit batches that write the same mailbox heads in opposite orders:
// node 0 a batch that acknowledges an envelope of dev_b and then appends
// to dev_a, node 1 one that acknowledges an envelope of dev_a and then
// appends to dev_b (a plain body after merged acks, as a group change's
// notices come after a stream's acks). Taken body by body, node 0 holds
// dev_b's head and wants dev_a's while node 1 holds dev_a's and wants
// dev_b's: a deadlock, which PostgreSQL breaks after deadlock_timeout by
// failing one batch. The same with two appends to devices that have no
// head row yet. No batch's transaction may fail: each takes its rows in
// one ordered pass, so the second waits for the first.
//
// A body between the two writes holds each batch there until the other
// node's batch has reached the same point or is waiting for this one —
// whichever comes first — so the interleaving that deadlocks is the one
// that runs whenever the rows are not locked up front.
func TestAttackCrossNodeDeadlock(t *testing.T) {
	ctx := context.Background()
	open, admin := dbtest.Nodes(t, mailbox.Migrations())
	type node struct {
		b      *db.Batcher
		s      *mailbox.Store
		mu     sync.Mutex
		failed []error
	}
	nodes := make([]*node, 2)
	for i := range nodes {
		n := &node{b: open().NewBatcher(16)}
		n.s = mailbox.NewStore(open(), mailbox.StoreOptions{Batcher: n.b})
		n.b.Observe(db.BatchObserver{Failed: func(err error) {
			n.mu.Lock()
			n.failed = append(n.failed, err)
			n.mu.Unlock()
		}})
		t.Cleanup(n.b.Close)
		nodes[i] = n
	}
	seed := func(dev string) string {
		e := []mailbox.Envelope{env(dev, "dev_x", "seed")}
		if err := nodes[0].s.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		return e[0].ID
	}

	// A step is one write of a batch: an ack of an envelope or an append.
	type step struct {
		ack    string // device whose envelope id is acknowledged…
		id     string
		append string // …or device appended to
	}
	run := func(t *testing.T, batches [2][2]step) {
		for _, n := range nodes {
			n.failed = nil
		}
		var bs [2]*db.Batcher
		var bodies [2][2]func() error
		for i, n := range nodes {
			bs[i] = n.b
			for k, st := range batches[i] {
				bodies[i][k] = func() error { return write(ctx, n.s, st.ack, st.id, st.append) }
			}
		}
		for _, err := range dbtest.Crossed(ctx, admin, bs, bodies) {
			t.Error(err)
		}
		for i, n := range nodes {
			for _, err := range n.failed {
				t.Errorf("node %d: a batch's transaction failed and ran again: %v", i, err)
			}
		}
	}

	t.Run("existing heads", func(t *testing.T) {
		a, b := seed("dev_a"), seed("dev_b")
		run(t, [2][2]step{
			{{ack: "dev_b", id: b}, {append: "dev_a"}},
			{{ack: "dev_a", id: a}, {append: "dev_b"}},
		})
		for _, dev := range []string{"dev_a", "dev_b"} {
			heads(t, admin, dev, 2, 1)
		}
	})
	t.Run("new heads", func(t *testing.T) {
		run(t, [2][2]step{
			{{append: "dev_new_2"}, {append: "dev_new_1"}},
			{{append: "dev_new_1"}, {append: "dev_new_2"}},
		})
		for _, dev := range []string{"dev_new_1", "dev_new_2"} {
			heads(t, admin, dev, 2, 2)
		}
	})
}

// write acknowledges envelope id of device ack, or appends an envelope to
// device to.
func write(ctx context.Context, s *mailbox.Store, ack, id, to string) error {
	if ack != "" {
		n, err := s.Ack(ctx, ack, []string{id})
		if err == nil && n != 1 {
			err = fmt.Errorf("ack of %s deleted %d envelopes", ack, n)
		}
		return err
	}
	return s.Append(ctx, []mailbox.Envelope{env(to, "dev_x", "hello")})
}

// heads checks a device's head row: the last seq given out and the
// envelopes its mailbox holds.
func heads(t *testing.T, d *db.DB, dev string, last, depth int64) {
	t.Helper()
	var l, n int64
	if err := d.QueryRow(context.Background(), `SELECT last_seq, depth FROM mailbox_heads WHERE device_id = $1`, dev).Scan(&l, &n); err != nil {
		t.Fatal(err)
	}
	if l != last || n != depth {
		t.Errorf("%s: last seq %d, depth %d; want %d and %d", dev, l, n, last, depth)
	}
}
