package mailbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// BenchmarkAppend measures durable envelopes per second: one send of one
// 1 KiB envelope per transaction, committed (fsynced on SQLite) before the
// next, from 8 concurrent senders to 100 devices.
// With group commit, 64 senders share commits.
func BenchmarkAppend(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, group := range []bool{false, true} {
			name := engine + "/tx-per-send"
			if group {
				name = engine + "/group-commit"
			}
			b.Run(name, func(b *testing.B) { benchAppend(b, engine, group) })
		}
	}
}

func benchAppend(b *testing.B, engine string, group bool) {
	var d *db.DB
	if engine == "sqlite" {
		d = dbtest.SQLite(b, mailbox.Migrations())
	} else {
		d = dbtest.Postgres(b, mailbox.Migrations())
	}
	o := mailbox.StoreOptions{}
	parallel := 4
	if group {
		o.Batcher = d.NewBatcher(64)
		defer o.Batcher.Close()
		parallel = 32
	}
	s := mailbox.NewStore(d, o)
	body := make([]byte, 1024)
	b.SetParallelism(parallel)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			e := mailbox.Envelope{Recipient: fmt.Sprintf("dev_%d", i%100), Sender: "dev_s", Conversation: "c", Class: "message", Ciphertext: body}
			if err := s.Append(context.Background(), []mailbox.Envelope{e}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
}
