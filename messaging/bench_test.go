package messaging_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kanal-server/kanal/internal/benchcpu"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// benchEngine is a database engine to benchmark on.
type benchEngine struct {
	name string
	open func(testing.TB, ...db.Migrations) *db.DB
}

// benchEngines returns SQLite, and PostgreSQL when KANAL_TEST_POSTGRES is
// set.
func benchEngines() []benchEngine {
	es := []benchEngine{{"sqlite", dbtest.SQLite}}
	if os.Getenv(dbtest.PostgresEnv) != "" {
		es = append(es, benchEngine{"postgres", dbtest.Postgres})
	}
	return es
}

// BenchmarkClaimBundle measures one claim of one device's bundle: the rate
// limit upsert, the directory lookup (in memory here) and the transaction
// that takes one one-time prekey of each kind ("one-time"), or finds none
// and serves the last-resort key ("last-resort"). Each claim comes from
// another account so the rate limit never refuses.
func BenchmarkClaimBundle(b *testing.B) {
	for _, e := range benchEngines() {
		engine, open := e.name, e.open
		for _, oneTime := range []bool{true, false} {
			name := engine + "/last-resort"
			if oneTime {
				name = engine + "/one-time"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				d := open(b, messaging.Migrations())
				now := testNow
				dir := newFakeDir(b)
				s := newService(b, d, dir, &now)
				bob := dir.enroll(b, "bob", "bob-phone", false)
				if _, err := s.Publish(ctx, bob.caller(), bob.publishRequest(b)); err != nil {
					b.Fatal(err)
				}
				next := uint32(1)
				refill := func() {
					for range messaging.MaxStoredPrekeys / messaging.MaxPrekeyBatch {
						if _, err := s.AddPrekeys(ctx, bob.caller(), bob.batch(b, next, messaging.MaxPrekeyBatch, messaging.MaxPrekeyBatch)); err != nil {
							b.Fatal(err)
						}
						next += messaging.MaxPrekeyBatch
					}
				}
				if oneTime {
					refill()
				}
				req := &messaging.ClaimRequest{AccountID: "bob"}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if oneTime && i > 0 && i%messaging.MaxStoredPrekeys == 0 {
						b.StopTimer()
						refill()
						b.StartTimer()
					}
					resp, err := s.Claim(ctx, messaging.Caller{AccountID: fmt.Sprint("c", i), DeviceID: "d"}, req)
					if err != nil {
						b.Fatal(err)
					}
					if len(resp.Bundles) != 1 || resp.Bundles[0].Bundle.HasOneTimePrekey() != oneTime {
						b.Fatalf("claim %d: %+v", i, resp)
					}
				}
			})
		}
	}
}

// BenchmarkSend measures the send path without HTTP: the device-set check
// (kept in memory as kanald keeps it, DefaultDeviceSetTTL), the
// idempotency row and the envelopes, committed before Send returns, with
// 64 concurrent senders sharing commits through db.Batcher as kanald does. One op is one send
// of one 1 KiB envelope between two of 200 devices.
func BenchmarkSend(b *testing.B) {
	for _, e := range benchEngines() {
		engine, open := e.name, e.open
		b.Run(engine, func(b *testing.B) {
			ctx := context.Background()
			s, _, _, devs := benchService(b, open, 64)
			n := int64(len(devs))
			ct := base64.StdEncoding.EncodeToString(make([]byte, 1024))
			var seq atomic.Int64
			b.SetParallelism(32) // 64 senders on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			done := benchcpu.Start(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					from, to := devs[i%n], devs[(i+1)%n]
					req := &messaging.SendRequest{To: messaging.SendTo{AccountID: to.account}, ClientID: client.SendClientID(client.NewMessageID()), Class: "message",
						Envelopes: []messaging.SendEnvelope{{DeviceID: to.id, Ciphertext: ct}}}
					if _, _, err := s.Send(ctx, from.caller(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			done()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
		})
	}
}

// BenchmarkSendAck is BenchmarkSend with the acknowledgement that follows
// each delivery: one op is one send of one 1 KiB envelope and the
// recipient device's ack of it, each through the group commit as kanald
// runs them — what the database does per delivered envelope (the
// mailbox row inserted and deleted, its head advanced and released, the
// idempotency row), without the streams.
func BenchmarkSendAck(b *testing.B) {
	for _, e := range benchEngines() {
		b.Run(e.name, func(b *testing.B) { benchSendAck(b, e.open, 64, 32, 1024) })
	}
}

// BenchmarkSendAckCommitSize is BenchmarkSendAck with 200 concurrent
// callers (as many as kanal-bench's direct devices), 400-byte envelopes
// (a 256-byte message encrypted) and at most max writes per group commit:
// what a commit's size does to the database's work per delivered
// envelope. kanald commits up to 256 writes at once.
func BenchmarkSendAckCommitSize(b *testing.B) {
	for _, m := range []int{64, 128, 256} {
		b.Run(fmt.Sprintf("sqlite/max=%d", m), func(b *testing.B) { benchSendAck(b, dbtest.SQLite, m, 100, 400) })
	}
}

// benchService is the send path as kanald runs it (device sets kept in
// memory for DefaultDeviceSetTTL, a group commit of at most maxBatch
// writes) on a database from open, with 200 enrolled devices that have
// published their prekeys.
func benchService(b *testing.B, open func(testing.TB, ...db.Migrations) *db.DB, maxBatch int) (*messaging.Service, *mailbox.Store, *db.Batcher, []*device) {
	d := open(b, sendSets...)
	dir := newFakeDir(b)
	batch := d.NewBatcher(maxBatch)
	b.Cleanup(batch.Close)
	store := mailbox.NewStore(d, mailbox.StoreOptions{Batcher: batch})
	s, err := messaging.New(messaging.Options{DB: d, Directory: dir, Auth: testAuth(), Batcher: batch,
		Mailbox: store, MaxSendsPerWindow: 1 << 30, Notary: dir.notary(b),
		DeviceSetTTL: messaging.DefaultDeviceSetTTL})
	if err != nil {
		b.Fatal(err)
	}
	devs := make([]*device, 200)
	for i := range devs {
		devs[i] = dir.enroll(b, fmt.Sprint("acc", i), fmt.Sprint("dev", i), i%2 == 0)
		if _, err := s.Publish(context.Background(), devs[i].caller(), devs[i].publishRequest(b)); err != nil {
			b.Fatal(err)
		}
	}
	return s, store, batch, devs
}

// benchSendAck runs BenchmarkSendAck's ops from par × GOMAXPROCS
// goroutines through a group commit of at most maxBatch writes, with
// ciphertexts of size bytes.
func benchSendAck(b *testing.B, open func(testing.TB, ...db.Migrations) *db.DB, maxBatch, par, size int) {
	ctx := context.Background()
	s, store, batch, devs := benchService(b, open, maxBatch)
	n := int64(len(devs))
	ct := base64.StdEncoding.EncodeToString(make([]byte, size))
	var seq atomic.Int64
	b.SetParallelism(par)
	b.ReportAllocs()
	b.ResetTimer()
	done := benchcpu.Start(b)
	io0 := processIO()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			from, to := devs[i%n], devs[(i+1)%n]
			// Client ids as the SDK makes them: the time first.
			req := &messaging.SendRequest{To: messaging.SendTo{AccountID: to.account}, ClientID: client.SendClientID(client.NewMessageID()), Class: "message",
				Envelopes: []messaging.SendEnvelope{{DeviceID: to.id, Ciphertext: ct}}}
			resp, _, err := s.Send(ctx, from.caller(), req)
			if err != nil {
				b.Error(err)
				return
			}
			if k, err := store.Ack(ctx, to.id, []string{resp.EnvelopeIDs[to.id]}); err != nil || k != 1 {
				b.Errorf("ack: %d deleted, %v", k, err)
				return
			}
		}
	})
	done()
	if io0 != nil {
		io1 := processIO()
		// The WAL's frames and the fsyncs' bookkeeping: what the
		// commits wrote, in bytes and write calls, per envelope.
		b.ReportMetric(float64(io1["wchar"]-io0["wchar"])/float64(b.N), "written-B/op")
		b.ReportMetric(float64(io1["syscw"]-io0["syscw"])/float64(b.N), "writes/op")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
	st := batch.Stats()
	b.ReportMetric(float64(st.Bodies)/float64(st.Batches), "bodies/commit")
}

// processIO returns the process's I/O counters from /proc/self/io (Linux;
// nil elsewhere): wchar is the bytes passed to write calls, syscw their
// number, whatever the load on the machine.
func processIO() map[string]int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err == nil {
			out[k] = n
		}
	}
	return out
}
