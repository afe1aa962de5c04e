package mailbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// An unanswered ping closes the stream with 4008, and a write past its
// deadline drops it, whichever side was slow;
// kanal_stream_ping_timeouts_total and kanal_stream_write_timeouts_total
// say which, from what the socket held. These tests make each side the
// slow one and check the cause counted (a device that answers nothing,
// "quiet", is TestUnansweredPingClosesWith4008's; a write the device does
// not take, TestStalledSocketDoesNotSlowOthers'). Off Linux the queues
// are not asked: "unknown".

// TestPingTimeoutCauseUnread: the device answers, but the node's read
// loop waits in a frame handler (as a send waits for its commit), so the
// pong stays unread in the node's socket. The node was the slow side.
func TestPingTimeoutCauseUnread(t *testing.T) {
	entered := make(chan struct{}, 1)
	n, _ := pingNode(t, func(ctx context.Context, _ string, typ string, _ json.RawMessage) (any, error) {
		if typ != "hold" {
			return nil, errors.New("unknown frame")
		}
		entered <- struct{}{}
		<-ctx.Done() // until the stream closes
		return nil, ctx.Err()
	})
	cl := dial(t, n, "dev_unread")
	waitConnected(t, n, "dev_unread")
	codes := make(chan websocket.StatusCode, 1)
	go func() { codes <- cl.closeCode() }() // reads, so answers pings
	cl.send(map[string]any{"type": "hold"})
	<-entered
	if code := <-codes; code != mailbox.StatusTooSlow {
		t.Fatalf("close %d, want %d", code, mailbox.StatusTooSlow)
	}
	wantStallCause(t, n.hub.Stats().PingTimeouts, mailbox.StallUnread)
}

// pingNode is a node on SQLite and the embedded bus that pings every
// 100 ms and waits 500 ms for the pong, with frames handled by frames.
func pingNode(t *testing.T, frames mailbox.FrameHandler) (*node, *mailbox.Store) {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	store := mailbox.NewStore(dbtest.SQLite(t, mailbox.Migrations()), mailbox.StoreOptions{})
	return newNodeOpts(t, store, b, 500*time.Millisecond, 0, nil, 100*time.Millisecond, 0, func(_ *node, o *mailbox.HubOptions) {
		o.Frames = frames
	}), store
}

// wantStallCause checks that got (a node's ping or write timeouts)
// counted one stream, of cause want (off Linux: unknown).
func wantStallCause(t *testing.T, got [4]uint64, want mailbox.StallCause) {
	t.Helper()
	if runtime.GOOS != "linux" {
		want = mailbox.StallUnknown
	}
	for _, c := range mailbox.StallCauses {
		w := uint64(0)
		if c == want {
			w = 1
		}
		if got[c] != w {
			t.Errorf("%s: %d, want %d (all: %v)", c, got[c], w, got)
		}
	}
}
