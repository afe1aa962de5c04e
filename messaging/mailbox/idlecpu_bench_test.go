//go:build !js

package mailbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/benchcpu"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// BenchmarkIdleStreamCPU: what a connected, idle stream costs the node's
// CPU over time — its ping, the mailbox read that follows each ping, and
// its timer. 1,000 synced streams held for a second per op with the ping
// made every 200 ms instead of every PingInterval (30 s), so that one op
// is 5,000 pings; cpu-µs/ping is the process's CPU per ping with its read,
// the devices' pongs included (their clients run in this process), and
// what one stream costs per second at the real interval is that divided
// by 30. The session's recheck (every 2 minutes) is a no-op here; kanald's
// is one session look-up in the database.
func BenchmarkIdleStreamCPU(b *testing.B) {
	b.Run("sqlite+embedded", func(b *testing.B) { benchIdleCPU(b, bus.Options{}) })
	b.Run("postgres+nats", func(b *testing.B) {
		u := os.Getenv("KANAL_TEST_NATS")
		if u == "" {
			b.Skip("KANAL_TEST_NATS not set")
		}
		benchIdleCPU(b, bus.Options{URL: u})
	})
}

func benchIdleCPU(b *testing.B, bo bus.Options) {
	const (
		streams = 1000
		every   = 200 * time.Millisecond
	)
	ctx := context.Background()
	d := dbtest.SQLite(b, mailbox.Migrations())
	if bo.URL != "" {
		d = dbtest.Postgres(b, mailbox.Migrations())
	}
	store := mailbox.NewStore(d, mailbox.StoreOptions{})
	bs, err := bus.Open(ctx, bo)
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	tracker := &web.Tracker{}
	h, err := mailbox.NewHub(mailbox.HubOptions{Store: store, Bus: bs, Tracker: tracker, BusKey: testBusKey,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Session: testSession, Check: func(context.Context, mailbox.Session) error { return nil },
		PingInterval: every})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer func() { tracker.CloseAll(); srv.Close(); h.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range streams {
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
			HTTPHeader: http.Header{"Kanal-Test-Device": {uniqueDevice(fmt.Sprintf("dev_idlecpu%d", i))}}})
		if err != nil {
			b.Fatal(err)
		}
		defer ws.CloseNow()
		if f := benchRead(b, ws, false); f.Type != "synced" {
			b.Fatalf("first frame %q", f.Type)
		}
		// The device reads, which is what answers the server's pings.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(2 * every) // every stream's timer has run once
	b.ResetTimer()
	cpu0 := benchcpu.Process()
	for range b.N {
		time.Sleep(time.Second)
	}
	cpu := benchcpu.Process() - cpu0
	// The pings made: each stream's every interval, over the time
	// measured (a loaded machine sleeps longer than asked).
	pings := streams * float64(b.Elapsed()) / float64(every)
	perPing := float64(cpu.Microseconds()) / pings
	b.ReportMetric(perPing, "cpu-µs/ping")
	b.ReportMetric(perPing/mailbox.PingInterval.Seconds(), "cpu-µs/stream/s")
}
