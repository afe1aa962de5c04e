//go:build !js

package mailbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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

// BenchmarkStreamsPerEnvelope: what a device's further streams cost per
// envelope. One op is one 1 KiB envelope stored, woken over the bus (carried
// in the wake-up) and read by each of the device's streams on the node — 1
// or MaxStreams (8) — with one of them acknowledging it (the others' windows
// are freed by that ack). SQLite and the embedded NATS, one node.
func BenchmarkStreamsPerEnvelope(b *testing.B) {
	for _, frames := range []string{"json", "binary"} {
		for _, k := range []int{1, mailbox.MaxStreams} {
			b.Run(fmt.Sprintf("frames=%s/streams=%d", frames, k), func(b *testing.B) { benchStreams(b, k, frames == "binary") })
		}
	}
}

func benchStreams(b *testing.B, k int, bin bool) {
	ctx := context.Background()
	d := dbtest.SQLite(b, mailbox.Migrations())
	store := mailbox.NewStore(d, mailbox.StoreOptions{})
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

	dev := uniqueDevice("dev_bench")
	streams := make([]*websocket.Conn, k)
	for i := range streams {
		var protocols []string
		if bin {
			protocols = []string{binframe.Subprotocol}
		}
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
			Subprotocols: protocols, HTTPHeader: http.Header{"Kanal-Test-Device": {dev}}})
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(1 << 22)
		defer ws.CloseNow()
		streams[i] = ws
		if f := benchRead(b, ws, bin); f.Type != "synced" {
			b.Fatalf("first frame %q", f.Type)
		}
	}
	body := make([]byte, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	done := benchcpu.Start(b)
	for range b.N {
		e := []mailbox.Envelope{{Recipient: dev, Sender: "dev_s", Conversation: "c", Class: "message", Ciphertext: body}}
		if err := store.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
		h.Deliver(e)
		for i, ws := range streams {
			f := benchRead(b, ws, bin)
			for len(f.Envelopes) == 0 {
				f = benchRead(b, ws, bin)
			}
			if i == 0 {
				typ := websocket.MessageText
				ack, _ := json.Marshal(map[string]any{"type": "ack", "ids": []string{f.Envelopes[0].ID}})
				if bin {
					typ = websocket.MessageBinary
					ack, _ = wire.AppendAck(nil, []string{f.Envelopes[0].ID})
				}
				if err := ws.Write(ctx, typ, ack); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	done()
	b.ReportMetric(float64(b.N*k)/b.Elapsed().Seconds(), "deliveries/s")
	st := h.Stats()
	b.ReportMetric(float64(st.Read)/float64(b.N*k), "read-fraction")
}

func benchRead(b *testing.B, ws *websocket.Conn, bin bool) frame {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, data, err := ws.Read(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var f frame
	if bin {
		switch data[0] {
		case wire.FrameSynced:
			f.Type = "synced"
		case wire.FrameEnvelopes:
			f.Type = "envelopes"
			if f.Envelopes, err = wire.DecodeEnvelopes(data); err != nil {
				b.Fatal(err)
			}
		}
		return f
	}
	if err := json.Unmarshal(data, &f); err != nil {
		b.Fatal(err)
	}
	return f
}
