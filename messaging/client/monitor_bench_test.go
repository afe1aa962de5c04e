package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging/client"
)

// othersEntries are n device entries of other accounts, what a device's
// monitor reads and passes over.
func othersEntries(n int) []transparency.Entry {
	es := make([]transparency.Entry, n)
	now := time.Now().Unix()
	for i := range es {
		es[i] = transparency.Entry{Kind: transparency.KindDevice, Account: fmt.Sprintf("acc_other%07d", i),
			Device: fmt.Sprintf("dev_other%07d", i), Cert: transparency.Fingerprint{byte(i), byte(i >> 8), byte(i >> 16), 1}, Time: now}
	}
	return es
}

// benchEntries is the size of the log the monitor benchmarks read.
const benchEntries = 20000

// BenchmarkMonitorPoll: one poll of a device's monitor that reads
// benchEntries entries logged since its last poll (other accounts'
// devices), fetched from kanald (SQLite) and each checked against the
// checkpoint through the hash tiles. ns/entry is the time per entry.
func BenchmarkMonitorPoll(b *testing.B) {
	ctx := context.Background()
	srv := &server{Server: kanaldtest.Start(b, kanaldBin)}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ben := srv.SignUp(b, "ben@example.org", key)
	store := client.NewMemoryStore()
	sdk := monitored(b, ben, srv.URL, store, nil)
	if _, err := sdk.Publish(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := sdk.Monitor(ctx); err != nil {
		b.Fatal(err)
	}
	state, err := store.Get("monitor/state")
	if err != nil {
		b.Fatal(err)
	}
	_, appendLog := attackerLog(b, srv)
	es := othersEntries(benchEntries)
	for i := 0; i < len(es); i += 1000 {
		appendLog(es[i:min(i+1000, len(es))]...)
	}
	if _, err := sdk.UpdateLog(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		store.Put("monitor/state", state) // back to before the entries
		b.StartTimer()
		if got, err := sdk.Monitor(ctx); err != nil || len(got) != 0 {
			b.Fatalf("%+v %v", got, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEntries, "ns/entry")
}

// BenchmarkMonitorFirstPoll: the first poll of a device enrolled after
// benchEntries entries: it starts at its own enrolment entry, so it
// reads a handful of entries, whatever the log's size. Each iteration is
// a new device state (pinning the log key, the directory's list with its
// proofs, the checkpoint, the entries since the enrolment).
func BenchmarkMonitorFirstPoll(b *testing.B) {
	ctx := context.Background()
	srv := &server{Server: kanaldtest.Start(b, kanaldBin)}
	_, appendLog := attackerLog(b, srv)
	es := othersEntries(benchEntries)
	for i := 0; i < len(es); i += 1000 {
		appendLog(es[i:min(i+1000, len(es))]...)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ben := srv.SignUp(b, "ben@example.org", key)
	store := client.NewMemoryStore()
	if _, err := monitored(b, ben, srv.URL, store, nil).Publish(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		fresh := client.NewMemoryStore()
		for _, name := range []string{"identity", "meta"} {
			if v, err := store.Get(name); err == nil {
				fresh.Put(name, v)
			}
		}
		sdk := monitored(b, ben, srv.URL, fresh, nil)
		b.StartTimer()
		if got, err := sdk.Monitor(ctx); err != nil || len(got) != 0 {
			b.Fatalf("%+v %v", got, err)
		}
	}
}
