//go:build !js

package mailbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kanal-server/kanal/internal/benchcpu"
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
	d := dbtest.Open(b, engine, mailbox.Migrations())
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

// BenchmarkPingRead: the mailbox read that follows each ping of an idle
// stream (PingInterval), on a mailbox that has nothing new — what an idle
// stream costs the node every 30 s. 10,000 devices, each read asks for
// what follows a device's cursor, as the stream's pump does.
func BenchmarkPingRead(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			d := dbtest.Open(b, engine, mailbox.Migrations())
			s := mailbox.NewStore(d, mailbox.StoreOptions{})
			ctx := context.Background()
			const devices = 10000
			var envs []mailbox.Envelope
			for i := range devices {
				envs = append(envs, mailbox.Envelope{Recipient: fmt.Sprintf("dev_%05d", i), Sender: "dev_s", Conversation: "c", Class: "message", Ciphertext: []byte("x")})
			}
			if err := s.Append(ctx, envs); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			done := benchcpu.Start(b)
			for i := range b.N {
				got, err := s.Fetch(ctx, fmt.Sprintf("dev_%05d", i%devices), 1, mailbox.FetchBatch)
				if err != nil || len(got) != 0 {
					b.Fatalf("%d envelopes (%v), want none after the cursor", len(got), err)
				}
			}
			done()
		})
	}
}

// BenchmarkAppendShared measures storing one broadcast for 50,000
// devices: the body once and a reference row in each device's mailbox
// (with its head row), in one transaction — the write side of a council
// announcement. Reported per device.
func BenchmarkAppendShared(b *testing.B) {
	const devices = 50000
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			d := dbtest.Open(b, engine, mailbox.Migrations())
			s := mailbox.NewStore(d, mailbox.StoreOptions{})
			devs := make([]string, devices)
			for i := range devs {
				devs[i] = fmt.Sprintf("dev_%06d", i)
			}
			body := make([]byte, 4096)
			cpu0 := benchcpu.Process()
			b.ResetTimer()
			for i := range b.N {
				e := mailbox.Envelope{ID: fmt.Sprintf("bc_%d", i), Sender: "dev_clerk", Conversation: "b_council", Ciphertext: body}
				if _, err := s.AppendShared(context.Background(), e, devs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*devices), "µs/device")
			// The machine may be shared: CPU time says more than the
			// clock (for PostgreSQL, only the client's side).
			b.ReportMetric(float64((benchcpu.Process()-cpu0).Microseconds())/float64(b.N*devices), "cpu-µs/device")
		})
	}
}
