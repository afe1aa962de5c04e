//go:build !js

package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/benchcpu"
	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// BenchmarkBroadcastDelivery: one announcement to 500 or 2,000
// connected devices on one node, end to end — the body stored once and a
// reference for each device (AppendShared), the fan-out on the bus, each
// device's stream writing it (binary frames), each device acknowledging
// it, and the acknowledgements deleted through the group commit (as
// kanald does, batches of 64) until every mailbox is empty. One op is the
// whole broadcast; cpu-µs/device is the process's CPU per delivered
// device, the devices' own reading and acking included (they run in this
// process: about a tenth of it), and allocs/device likewise. SQLite with
// the embedded NATS, and PostgreSQL with it.
func BenchmarkBroadcastDelivery(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, n := range []int{500, 2000} {
			b.Run(fmt.Sprintf("%s/streams=%d", engine, n), func(b *testing.B) { benchBroadcast(b, engine, n) })
		}
	}
}

func benchBroadcast(b *testing.B, engine string, broadcastStreams int) {
	ctx := context.Background()
	d := dbtest.Open(b, engine, mailbox.Migrations())
	batch := d.NewBatcher(64)
	defer batch.Close()
	store := mailbox.NewStore(d, mailbox.StoreOptions{Batcher: batch})
	bs, err := bus.Open(ctx, bus.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	tracker := &web.Tracker{}
	h, err := mailbox.NewHub(mailbox.HubOptions{Store: store, Bus: bs, Tracker: tracker, BusKey: testBusKey,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Session: testSession, Check: func(context.Context, mailbox.Session) error { return nil },
		BinaryFrames: func(context.Context, string, []byte) (any, error) { return nil, errors.New("no sends here") }})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer func() { tracker.CloseAll(); srv.Close(); h.Close() }()

	prefix := uniqueDevice("dev_bc")
	devices := make([]string, broadcastStreams)
	got := make(chan error, broadcastStreams)
	var wg sync.WaitGroup
	defer wg.Wait()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range devices {
		devices[i] = fmt.Sprintf("%s_%04d", prefix, i)
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
			Subprotocols: []string{binframe.Subprotocol}, HTTPHeader: http.Header{"Kanal-Test-Device": {devices[i]}}})
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(1 << 22)
		defer ws.CloseNow()
		if f := benchRead(b, ws, true); f.Type != "synced" {
			b.Fatalf("first frame %q", f.Type)
		}
		// The device: each envelopes frame is decoded and acknowledged.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := ws.Read(cctx)
				if err != nil {
					return
				}
				if len(data) == 0 || data[0] != wire.FrameEnvelopes {
					continue
				}
				es, err := wire.DecodeEnvelopes(data)
				if err == nil {
					ids := make([]string, len(es))
					for i, e := range es {
						ids[i] = e.ID
					}
					var ack []byte
					if ack, err = wire.AppendAck(nil, ids); err == nil {
						err = ws.Write(cctx, websocket.MessageBinary, ack)
					}
				}
				got <- err
			}
		}()
	}
	body := make([]byte, 3200) // an announcement with its certificates
	b.ReportAllocs()
	b.ResetTimer()
	done := benchcpu.Start(b)
	cpu0 := benchcpu.Process()
	for i := range b.N {
		e := mailbox.Envelope{ID: fmt.Sprintf("bc_%s_%d", prefix[len(prefix)-8:], i), Sender: "dev_clerk", Conversation: "b_council", Ciphertext: body}
		refs, err := store.AppendShared(ctx, e, devices)
		if err != nil {
			b.Fatal(err)
		}
		h.Fanout(refs, body)
		for range devices {
			if err := <-got; err != nil {
				b.Fatal(err)
			}
		}
		// Every acknowledgement written: the mailboxes are empty.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM mailbox WHERE device_id LIKE $1`, prefix+"%").Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d references not acknowledged after 30 s", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cpu := benchcpu.Process() - cpu0
	done()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*broadcastStreams), "cpu-µs/device")
	b.ReportMetric(float64(h.Stats().Read)/float64(b.N*broadcastStreams), "read-fraction")
}
