//go:build !js

package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

func env(to, from string, body string) mailbox.Envelope {
	return mailbox.Envelope{Recipient: to, Sender: from, Conversation: "conv_1", Class: "message", Ciphertext: []byte(body)}
}

func TestStoreOrderAckExpire(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
		s := mailbox.NewStore(d, mailbox.StoreOptions{Now: func() time.Time { return now }, Retention: time.Hour})

		batch := []mailbox.Envelope{env("dev_b", "dev_a", "1"), env("dev_c", "dev_a", "1c"), env("dev_b", "dev_a", "2")}
		if err := s.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if batch[0].Seq != 1 || batch[2].Seq != 2 || batch[1].Seq != 1 || batch[0].ID == "" || batch[0].ID == batch[2].ID {
			t.Fatalf("seq/id assignment: %+v", batch)
		}
		if err := s.Append(ctx, []mailbox.Envelope{env("dev_b", "dev_a", "3")}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Fetch(ctx, "dev_b", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || string(got[0].Ciphertext) != "1" || string(got[2].Ciphertext) != "3" || got[2].Seq != 3 {
			t.Fatalf("fetch: %+v", got)
		}
		if after, _ := s.Fetch(ctx, "dev_b", 2, 10); len(after) != 1 || after[0].Seq != 3 {
			t.Fatalf("fetch after 2: %+v", after)
		}

		// dev_c cannot ack dev_b's envelopes.
		if n, err := s.Ack(ctx, "dev_c", []string{got[0].ID}); err != nil || n != 0 {
			t.Fatalf("foreign ack deleted %d (%v)", n, err)
		}
		if n, err := s.Ack(ctx, "dev_b", []string{got[0].ID, got[1].ID, "unknown"}); err != nil || n != 2 {
			t.Fatalf("ack deleted %d (%v), want 2", n, err)
		}
		if depth, _ := s.Depth(ctx, "dev_b"); depth != 1 {
			t.Fatalf("depth %d, want 1", depth)
		}

		// After the retention the envelope is neither served nor kept.
		now = now.Add(time.Hour + time.Second)
		if left, _ := s.Fetch(ctx, "dev_b", 0, 10); len(left) != 0 {
			t.Fatalf("expired envelope served: %+v", left)
		}
		if n, err := s.Expire(ctx); err != nil || n != 2 {
			t.Fatalf("expired %d (%v), want 2 (dev_b's last and dev_c's)", n, err)
		}
	})
}

func TestStoreRejectsBadEnvelopes(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s := mailbox.NewStore(d, mailbox.StoreOptions{})
		bad := []mailbox.Envelope{
			env("", "dev_a", "x"),
			env("dev b", "dev_a", "x"),
			env("dev_b", "dev_a/../x", "x"),
			env("dev_b", "dev_a", ""),
			{Recipient: "dev_b", Sender: "dev_a", Conversation: "conv_1", Class: "message", Ciphertext: bytes.Repeat([]byte{1}, mailbox.MaxCiphertext+1)},
			{Recipient: "dev_b", Sender: "dev_a", Class: "message", Ciphertext: []byte("x")},
		}
		for i, e := range bad {
			// A good envelope first: one bad envelope must fail the whole send.
			err := s.Append(ctx, []mailbox.Envelope{env("dev_b", "dev_a", "good"), e})
			if !errors.Is(err, mailbox.ErrInvalid) {
				t.Errorf("case %d: got %v, want ErrInvalid", i, err)
			}
		}
		if depth, _ := s.Depth(ctx, "dev_b"); depth != 0 {
			t.Fatalf("a rejected send stored %d envelopes", depth)
		}
		if _, err := s.Ack(ctx, "dev_b", make([]string, mailbox.MaxAckBatch+1)); !errors.Is(err, mailbox.ErrInvalid) {
			t.Fatalf("oversized ack: %v", err)
		}
	})
}

// TestStoreConcurrentAppend: senders racing into one mailbox get distinct,
// gap-free sequence numbers, so a reader resuming "after N" misses nothing.
func TestStoreConcurrentAppend(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s := mailbox.NewStore(d, mailbox.StoreOptions{})
		const senders, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for i := 0; i < senders; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < each; j++ {
					// Each send also touches a second device, in varying order,
					// which would deadlock without ordered head locking.
					other := fmt.Sprintf("dev_%d", (i+j)%3)
					if err := s.Append(ctx, []mailbox.Envelope{env(other, "dev_s", "o"), env("dev_target", fmt.Sprintf("dev_s%d", i), fmt.Sprint(j))}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := s.Fetch(ctx, "dev_target", 0, senders*each+10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != senders*each {
			t.Fatalf("%d envelopes, want %d", len(got), senders*each)
		}
		last := map[string]int{}
		for i, e := range got {
			if e.Seq != int64(i+1) {
				t.Fatalf("seq %d at position %d: gap or duplicate", e.Seq, i)
			}
			// Per-sender order is kept.
			var n int
			fmt.Sscan(string(e.Ciphertext), &n)
			if prev, ok := last[e.Sender]; ok && n != prev+1 {
				t.Fatalf("sender %s: %d after %d", e.Sender, n, prev)
			}
			last[e.Sender] = n
		}
	})
}
