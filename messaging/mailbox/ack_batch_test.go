//go:build !js

package mailbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Acks through the group commit: concurrent acks of many devices delete
// exactly their own envelopes, report their own counts, and a device still
// cannot delete another device's envelopes.
func TestAckGroupCommit(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewBatcher(16)
		defer b.Close()
		s := mailbox.NewStore(d, mailbox.StoreOptions{Batcher: b})
		const devices = 12
		ids := make([][]string, devices)
		for i := range devices {
			dev := fmt.Sprintf("dev_%d", i)
			envs := []mailbox.Envelope{env(dev, "dev_x", "1"), env(dev, "dev_x", "2"), env(dev, "dev_x", "3")}
			if err := s.Append(ctx, envs); err != nil {
				t.Fatal(err)
			}
			for _, e := range envs {
				ids[i] = append(ids[i], e.ID)
			}
		}
		// dev_0 names dev_1's envelopes: nothing is deleted.
		if n, err := s.Ack(ctx, "dev_0", ids[1]); err != nil || n != 0 {
			t.Fatalf("foreign ack deleted %d (%v)", n, err)
		}
		var wg sync.WaitGroup
		counts := make([]int64, devices)
		errs := make([]error, devices)
		for i := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				counts[i], errs[i] = s.Ack(ctx, fmt.Sprintf("dev_%d", i), append(ids[i][:2:2], "unknown"))
			}()
		}
		wg.Wait()
		for i := range devices {
			if errs[i] != nil || counts[i] != 2 {
				t.Fatalf("dev_%d: ack deleted %d (%v), want 2", i, counts[i], errs[i])
			}
			dev := fmt.Sprintf("dev_%d", i)
			left, err := s.Fetch(ctx, dev, 0, 10)
			if err != nil || len(left) != 1 || left[0].ID != ids[i][2] {
				t.Fatalf("%s keeps %+v (%v), want only its third envelope", dev, left, err)
			}
			// The acks of one commit are deleted together; each device's
			// quota counters still give back exactly what it deleted.
			var depth, size int64
			if err := d.QueryRow(ctx, `SELECT depth, bytes FROM mailbox_heads WHERE device_id = $1`, dev).Scan(&depth, &size); err != nil {
				t.Fatal(err)
			}
			if depth != 1 || size != int64(len(left[0].Ciphertext)) {
				t.Fatalf("%s: head counts %d envelopes of %d bytes, want 1 of %d", dev, depth, size, len(left[0].Ciphertext))
			}
		}
	})
}

// The acks of one group commit, written together: an id two acks name
// counts for the first, an id named twice in one ack once, an unknown id
// and another device's ids delete nothing, and each head gives back
// exactly what its device lost.
func TestAckOneCommit(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewBatcher(16)
		defer b.Close()
		s := mailbox.NewStore(d, mailbox.StoreOptions{Batcher: b})
		ids := map[string][]string{}
		for _, dev := range []string{"dev_a", "dev_b", "dev_c"} {
			envs := []mailbox.Envelope{env(dev, "dev_x", "1"), env(dev, "dev_x", "22"), env(dev, "dev_x", "333")}
			if err := s.Append(ctx, envs); err != nil {
				t.Fatal(err)
			}
			for _, e := range envs {
				ids[dev] = append(ids[dev], e.ID)
			}
		}
		// A body holds the batch worker, so that the acks queued meanwhile
		// are the next batch, in the order queued.
		running, hold := make(chan struct{}), make(chan struct{})
		go b.Do(ctx, func(*sql.Tx) error { close(running); <-hold; return nil })
		<-running
		acks := []struct {
			device string
			ids    []string
			want   int64
		}{
			{"dev_a", ids["dev_a"][:2], 2},
			{"dev_a", []string{ids["dev_a"][1], ids["dev_a"][2], "unknown"}, 1},
			{"dev_b", []string{ids["dev_a"][0], ids["dev_c"][0], ids["dev_b"][0]}, 1},
			{"dev_c", []string{ids["dev_c"][1], ids["dev_c"][1]}, 1},
		}
		got := make([]int64, len(acks))
		errs := make([]error, len(acks))
		var wg sync.WaitGroup
		for i, a := range acks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = s.Ack(ctx, a.device, a.ids)
			}()
			for b.Stats().Queued < i+2 {
				time.Sleep(time.Millisecond)
			}
		}
		close(hold)
		wg.Wait()
		for i, a := range acks {
			if errs[i] != nil || got[i] != a.want {
				t.Fatalf("ack %d of %s: deleted %d (%v), want %d", i, a.device, got[i], errs[i], a.want)
			}
		}
		for dev, want := range map[string][]string{"dev_a": nil, "dev_b": ids["dev_b"][1:], "dev_c": {ids["dev_c"][0], ids["dev_c"][2]}} {
			left, err := s.Fetch(ctx, dev, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var size int64
			var have []string
			for _, e := range left {
				have = append(have, e.ID)
				size += int64(len(e.Ciphertext))
			}
			if fmt.Sprint(have) != fmt.Sprint(want) {
				t.Fatalf("%s keeps %v, want %v", dev, have, want)
			}
			var depth, bytes int64
			if err := d.QueryRow(ctx, `SELECT depth, bytes FROM mailbox_heads WHERE device_id = $1`, dev).Scan(&depth, &bytes); err != nil {
				t.Fatal(err)
			}
			if depth != int64(len(left)) || bytes != size {
				t.Fatalf("%s: head counts %d envelopes of %d bytes, want %d of %d", dev, depth, bytes, len(left), size)
			}
		}
	})
}

// One append to more devices than one statement takes (the store splits
// it) numbers each device's envelopes from its own head, in order.
func TestAppendManyDevices(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s := mailbox.NewStore(d, mailbox.StoreOptions{})
		if err := s.Append(ctx, []mailbox.Envelope{env("dev_007", "dev_x", "earlier")}); err != nil {
			t.Fatal(err)
		}
		var envs []mailbox.Envelope
		for i := range 300 {
			envs = append(envs, env(fmt.Sprintf("dev_%03d", i), "dev_x", "a"))
			if i%100 == 7 {
				envs = append(envs, env(fmt.Sprintf("dev_%03d", i), "dev_x", "b"))
			}
		}
		if err := s.Append(ctx, envs); err != nil {
			t.Fatal(err)
		}
		for _, dev := range []string{"dev_000", "dev_007", "dev_107", "dev_299"} {
			got, err := s.Fetch(ctx, dev, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var bodies string
			for i, e := range got {
				if e.Seq != int64(i+1) {
					t.Fatalf("%s: envelope %d has seq %d", dev, i, e.Seq)
				}
				bodies += string(e.Ciphertext) + " "
			}
			want := map[string]string{"dev_000": "a ", "dev_007": "earlier a b ", "dev_107": "a b ", "dev_299": "a "}[dev]
			if bodies != want {
				t.Fatalf("%s holds %q, want %q", dev, bodies, want)
			}
		}
	})
}

// TestSlowAckWriteKeepsTheStreamReading: while an acknowledgement's write
// waits for the database (under load it queues behind the sends' group
// commit), the stream goes on reading the device's frames — its pings are
// answered, so the stream is not closed as stalled — and the write lands
// once the database is free.
func TestSlowAckWriteKeepsTheStreamReading(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b, err := bus.Open(ctx, bus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		store := mailbox.NewStore(d, mailbox.StoreOptions{})
		n := newNode(t, store, b, 0)
		dev := uniqueDevice("dev_slowack")
		es := []mailbox.Envelope{env(dev, "dev_a", "1")}
		if err := store.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
		c := dial(t, n, dev)
		got := c.collect(1, false)

		// Another writer holds what the acknowledgement must write.
		held, release := make(chan struct{}), make(chan struct{})
		go d.Tx(ctx, func(tx *sql.Tx) error {
			var err error
			if d.Dialect() == db.Postgres {
				_, err = tx.ExecContext(ctx, `SELECT 1 FROM mailbox WHERE device_id = $1 FOR UPDATE`, dev)
			} else {
				_, err = tx.ExecContext(ctx, `DELETE FROM mailbox WHERE device_id = 'nobody'`)
			}
			close(held)
			<-release
			if err != nil {
				return err
			}
			return errors.New("rolled back")
		})
		<-held
		c.send(map[string]any{"type": "ack", "ids": []string{got[0].ID}})
		// The ack's write now waits. The stream still reads: a ping from
		// the device is answered, which only the stream's reader does.
		// (The device reads on, as its pongs come with what it reads.)
		go func() {
			for {
				if _, _, err := c.ws.Read(ctx); err != nil {
					return
				}
			}
		}()
		time.Sleep(200 * time.Millisecond)
		for range 3 {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := c.ws.Ping(pctx)
			cancel()
			if err != nil {
				close(release)
				t.Fatalf("ping while the ack's write waits: %v", err)
			}
		}
		if depth, err := store.Depth(ctx, dev); err != nil || depth != 1 {
			t.Fatalf("depth %d (%v) while the writer holds the lock, want 1", depth, err)
		}
		close(release)
		waitDepth(t, store, dev, 0)
	})
}

// TestBroadcastAcksReleaseHeads: a broadcast's references acknowledged by
// more devices at once than one statement takes (they share group
// commits, and the heads are given back in chunks) leave each device's
// quota counters exactly what its mailbox holds, and an ack naming
// another device's envelope neither deletes it nor changes either head.
func TestBroadcastAcksReleaseHeads(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewBatcher(1000)
		defer b.Close()
		s := mailbox.NewStore(d, mailbox.StoreOptions{Batcher: b})
		const devices = 600
		devs := make([]string, devices)
		direct := make([]string, devices) // each device's own envelope
		for i := range devs {
			devs[i] = fmt.Sprintf("dev_%03d", i)
			e := []mailbox.Envelope{env(devs[i], "dev_x", fmt.Sprintf("direct to %d", i))}
			if err := s.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
			direct[i] = e[0].ID
		}
		bc := mailbox.Envelope{ID: "bc_council_1", Sender: "dev_clerk", Conversation: "b_council", Ciphertext: []byte("announcement")}
		if _, err := s.AppendShared(ctx, bc, devs); err != nil {
			t.Fatal(err)
		}
		heads := func(dev string) (depth, size int64) {
			t.Helper()
			if err := d.QueryRow(ctx, `SELECT depth, bytes FROM mailbox_heads WHERE device_id = $1`, dev).Scan(&depth, &size); err != nil {
				t.Fatal(err)
			}
			return depth, size
		}
		d1, s1 := heads("dev_001")
		// dev_000 names dev_001's direct envelope: nothing happens.
		if n, err := s.Ack(ctx, "dev_000", []string{direct[1]}); err != nil || n != 0 {
			t.Fatalf("foreign ack deleted %d (%v)", n, err)
		}
		if d, s := heads("dev_001"); d != d1 || s != s1 || d != 2 {
			t.Fatalf("dev_001's head after a foreign ack: %d envelopes, %d bytes; before %d, %d", d, s, d1, s1)
		}
		var wg sync.WaitGroup
		counts := make([]int64, devices)
		errs := make([]error, devices)
		for i := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				counts[i], errs[i] = s.Ack(ctx, devs[i], []string{bc.ID})
			}()
		}
		wg.Wait()
		for i, dev := range devs {
			if errs[i] != nil || counts[i] != 1 {
				t.Fatalf("%s: ack of its reference deleted %d (%v), want 1", dev, counts[i], errs[i])
			}
			left, err := s.Fetch(ctx, dev, 0, 10)
			if err != nil || len(left) != 1 || left[0].ID != direct[i] {
				t.Fatalf("%s keeps %+v (%v), want only its direct envelope", dev, left, err)
			}
			if depth, size := heads(dev); depth != 1 || size != int64(len(left[0].Ciphertext)) {
				t.Fatalf("%s: head counts %d envelopes of %d bytes, want 1 of %d", dev, depth, size, len(left[0].Ciphertext))
			}
		}
	})
}
