//go:build !js

package mailbox_test

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestQuotaCounters: the depth and bytes kept beside each head follow
// appends, acks, expiry and a refused append exactly, so the quota counts
// what a mailbox really holds.
func TestQuotaCounters(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
		s := mailbox.NewStore(d, mailbox.StoreOptions{Now: func() time.Time { return now }, Retention: time.Hour})
		check := func(dev string) {
			t.Helper()
			var depth, size, realDepth, realSize int64
			if err := d.QueryRow(ctx, `SELECT depth, bytes FROM mailbox_heads WHERE device_id = $1`, dev).Scan(&depth, &size); err != nil {
				t.Fatal(err)
			}
			if err := d.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(LENGTH(ciphertext)), 0) FROM mailbox WHERE device_id = $1`, dev).Scan(&realDepth, &realSize); err != nil {
				t.Fatal(err)
			}
			if depth != realDepth || size != realSize {
				t.Fatalf("%s: head says %d envelopes, %d bytes; the mailbox holds %d, %d", dev, depth, size, realDepth, realSize)
			}
		}
		q := mailbox.Quota{MaxEnvelopes: 4, MaxBytes: 100}
		within := func(envs ...mailbox.Envelope) error {
			return d.Tx(ctx, func(tx *sql.Tx) error { return s.AppendWithinTx(ctx, tx, envs, q) })
		}
		if err := within(env("dev_b", "dev_a", "one"), env("dev_c", "dev_a", strings.Repeat("c", 90))); err != nil {
			t.Fatal(err)
		}
		check("dev_b")
		check("dev_c")
		// Too many bytes for dev_c: refused whole, dev_b's copy included.
		var full *mailbox.FullError
		err := within(env("dev_b", "dev_a", "two"), env("dev_c", "dev_a", strings.Repeat("c", 11)))
		if !errors.As(err, &full) || !reflect.DeepEqual(full.Devices, []string{"dev_c"}) {
			t.Fatalf("over the byte quota: %v", err)
		}
		check("dev_b")
		check("dev_c")
		for range 3 {
			if err := within(env("dev_b", "dev_a", "more")); err != nil {
				t.Fatal(err)
			}
		}
		if err := within(env("dev_b", "dev_a", "fifth")); !errors.As(err, &full) {
			t.Fatalf("over the envelope quota: %v", err)
		}
		check("dev_b")
		got, err := s.Fetch(ctx, "dev_b", 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Ack(ctx, "dev_b", []string{got[0].ID, got[1].ID, "nonexistent"}); err != nil || n != 2 {
			t.Fatalf("ack %d %v", n, err)
		}
		check("dev_b")
		if err := within(env("dev_b", "dev_a", "fits again")); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Hour)
		if n, err := s.Expire(ctx); err != nil || n != 4 {
			t.Fatalf("expire %d %v", n, err)
		}
		check("dev_b")
		check("dev_c")
	})
}
