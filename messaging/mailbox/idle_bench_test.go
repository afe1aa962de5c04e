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
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// BenchmarkIdleStreams: the memory one idle, synced stream holds, as the
// live heap and goroutine stacks after a collection, per stream, with 2,000
// streams of 2,000 devices open on one hub. The devices' websocket clients
// live in the same process, so the figures include their side of each
// connection (about 6 KiB of heap: coder/websocket's 4 KiB read and write
// buffers and its state); what a change on the server saves shows as the
// difference between two runs. kanal-bench's connections scenario gives
// kanald's RSS per stream, the figure of the target.
//
// On SQLite with the embedded NATS the hub holds one subscription to all
// wake-ups; on PostgreSQL with the external NATS one per device.
func BenchmarkIdleStreams(b *testing.B) {
	b.Run("sqlite+embedded", func(b *testing.B) {
		benchIdle(b, bus.Options{})
	})
	b.Run("postgres+nats", func(b *testing.B) {
		u := os.Getenv("KANAL_TEST_NATS")
		if u == "" {
			b.Skip("KANAL_TEST_NATS not set")
		}
		benchIdle(b, bus.Options{URL: u})
	})
}

func benchIdle(b *testing.B, bo bus.Options) {
	const streams = 2000
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
		Session: testSession, Check: func(context.Context, mailbox.Session) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer func() { tracker.CloseAll(); srv.Close(); h.Close() }()
	var heap, stack, goroutines float64
	for range b.N {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		g0 := runtime.NumGoroutine()
		conns := make([]*websocket.Conn, 0, streams)
		for i := range streams {
			ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
				HTTPHeader: http.Header{"Kanal-Test-Device": {uniqueDevice(fmt.Sprintf("dev_idle%d", i))}}})
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, ws)
			if f := benchRead(b, ws, false); f.Type != "synced" {
				b.Fatalf("first frame %q", f.Type)
			}
		}
		// The streams' setup goroutines end once they are synced.
		for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > g0+streams && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap += float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / streams
		stack += float64(int64(m1.StackInuse)-int64(m0.StackInuse)) / streams
		goroutines += float64(runtime.NumGoroutine()-g0) / streams
		for _, ws := range conns {
			ws.CloseNow()
		}
		for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > g0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	n := float64(b.N)
	b.ReportMetric(heap/n, "heap-B/stream")
	b.ReportMetric(stack/n, "stack-B/stream")
	b.ReportMetric(goroutines/n, "goroutines/stream")
}
