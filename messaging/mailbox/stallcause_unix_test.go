//go:build unix

package mailbox_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestPingTimeoutCauseUnsent: the device stopped reading with a small
// receive window, so the envelopes the node wrote wait in the node's send
// queue, and the ping behind them.
func TestPingTimeoutCauseUnsent(t *testing.T) {
	n, store := pingNode(t, nil)
	ctx := context.Background()
	// More than the device's window (4 KiB asked; Linux doubles it) and
	// far less than the node's send buffer: the writes complete, the
	// bytes wait.
	if err := store.Append(ctx, []mailbox.Envelope{env("dev_unsent", "dev_a", strings.Repeat("x", 32<<10))}); err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
		return errors.Join(err, serr)
	}}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(n.srv.URL, "http"), &websocket.DialOptions{
		HTTPHeader: http.Header{"Kanal-Test-Device": {"dev_unsent"}},
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	waitConnected(t, n, "dev_unsent")
	for deadline := time.Now().Add(30 * time.Second); n.hub.Connected("dev_unsent"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("stalled socket never cut")
		}
	}
	wantStallCause(t, n.hub.Stats().PingTimeouts, mailbox.StallUnsent)
}
