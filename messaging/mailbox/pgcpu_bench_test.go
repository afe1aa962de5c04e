//go:build !js

package mailbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// BenchmarkPostgresCPU measures PostgreSQL's own CPU per envelope for the
// direct scenario's writes, without kanald around them: 64 writers each
// append one 256-byte envelope to one of 200 devices through the group
// commit (a pipelined merged append, as sends are written) and then
// acknowledge it, so batches mix appends and acks. pg-µs/envelope is the
// CPU of the benchmark's PostgreSQL backends (read from /proc: the server
// must run on this machine) per envelope appended and acknowledged. The
// sub-benchmarks change the schema first, to compare candidate cuts.
func BenchmarkPostgresCPU(b *testing.B) {
	variants := []struct{ name, ddl string }{
		{"as-is", ""},
		{"no-expiry-index", `DROP INDEX mailbox_expiry`},
		{"heads-fillfactor-50", `ALTER TABLE mailbox_heads SET (fillfactor = 50)`},
		// Byte comparisons instead of the database's collation for the
		// id columns every index descent compares.
		{"ids-collate-c", `ALTER TABLE mailbox ALTER COLUMN device_id TYPE TEXT COLLATE "C", ALTER COLUMN envelope_id TYPE TEXT COLLATE "C";
			ALTER TABLE mailbox_heads ALTER COLUMN device_id TYPE TEXT COLLATE "C"`},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) { benchPostgresCPU(b, v.ddl) })
	}
}

func benchPostgresCPU(b *testing.B, ddl string) {
	base := dbtest.PostgresURL(b)
	var r [4]byte
	_, _ = rand.Read(r[:])
	app := "kanal_pgcpu_" + hex.EncodeToString(r[:])
	url := dbtest.WithSchema(b, base, dbtest.NewSchema(b, base))
	url += "&application_name=" + app
	ctx := context.Background()
	d, err := db.OpenPostgres(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(ctx, mailbox.Migrations()); err != nil {
		b.Fatal(err)
	}
	if ddl != "" {
		if _, err := d.Exec(ctx, ddl); err != nil {
			b.Fatal(err)
		}
	}
	batch := d.NewBatcher(256)
	defer batch.Close()
	s := mailbox.NewStore(d, mailbox.StoreOptions{Batcher: batch})
	m := appendMerger{s}
	body := make([]byte, 256)
	const writers, devices = 64, 200
	next := make(chan int)
	go func() {
		for i := 0; i < b.N; i++ {
			next <- i
		}
		close(next)
	}()
	cpu0 := backendCPU(b, d, app)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				envs := []mailbox.Envelope{{Recipient: fmt.Sprintf("dev_%d", i%devices), Sender: "dev_s", Conversation: "c", Class: "message", Ciphertext: body}}
				if err := batch.DoMerged(ctx, m, envs, func(tx *sql.Tx) error { return s.AppendTx(ctx, tx, envs) }); err != nil {
					b.Error(err)
					return
				}
				if _, err := s.Ack(ctx, envs[0].Recipient, []string{envs[0].ID}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu := backendCPU(b, d, app) - cpu0
	b.ReportMetric(cpu/float64(b.N)*1e6, "pg-µs/envelope")
}

// appendMerger writes appends of one commit together, as messaging's
// sends are written (db.Pipeliner, db.Locker).
type appendMerger struct{ s *mailbox.Store }

func (m appendMerger) all(items []any) []mailbox.Envelope {
	var all []mailbox.Envelope
	for _, it := range items {
		all = append(all, it.([]mailbox.Envelope)...)
	}
	return all
}

func (m appendMerger) MergeTx(ctx context.Context, tx *sql.Tx, items []any) error {
	all := m.all(items)
	if err := m.s.AppendTx(ctx, tx, all); err != nil {
		return err
	}
	m.back(items, all)
	return nil
}

func (m appendMerger) QueueTx(p *db.Pipeline, items []any) error {
	all := m.all(items)
	if err := m.s.QueueAppend(p, all, mailbox.Quota{}); err != nil {
		return err
	}
	m.back(items, all)
	return nil
}

// back copies the ids given to all back to the items' envelopes.
func (m appendMerger) back(items []any, all []mailbox.Envelope) {
	for _, it := range items {
		envs := it.([]mailbox.Envelope)
		n := copy(envs, all)
		all = all[n:]
	}
}

func (m appendMerger) LockItems(ls *db.Locks, items []any) {
	for _, it := range items {
		m.s.LockAppend(ls, it.([]mailbox.Envelope))
	}
}

// backendCPU returns the CPU seconds the backends of application app have
// used, from /proc.
func backendCPU(b *testing.B, d *db.DB, app string) float64 {
	rows, err := d.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var total float64
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Skipf("PostgreSQL's backends are not readable here: %v", err)
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += (ut + st) / 100 // clock ticks (USER_HZ 100)
	}
	return total
}
