//go:build !js

package mailbox_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// sealWake seals a wake-up payload for device as docs/api-messaging.md
// ("Between nodes") says a node does, with the nodes' key.
func sealWake(device string, payload []byte) []byte {
	m := hmac.New(sha256.New, testBusKey)
	m.Write([]byte("kanal mailbox wake-up v1\x00kanal.mbox.wake." + device + "\x00"))
	m.Write(payload)
	return append(m.Sum(nil), payload...)
}

// binClient is a stream that speaks binary frames (kanal.bin.v1).
type binClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialBinary(t *testing.T, n *node, device string) *binClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.srv.URL, "http"), &websocket.DialOptions{
		Subprotocols: []string{binframe.Subprotocol}, HTTPHeader: http.Header{"Kanal-Test-Device": {device}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if ws.Subprotocol() != binframe.Subprotocol {
		t.Fatalf("subprotocol %q", ws.Subprotocol())
	}
	ws.SetReadLimit(1 << 22)
	t.Cleanup(func() { ws.CloseNow() })
	return &binClient{t: t, ws: ws}
}

// collect reads until n envelopes arrived, or fails.
func (c *binClient) collect(n int) []mailbox.Envelope {
	c.t.Helper()
	var got []mailbox.Envelope
	for len(got) < n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		typ, data, err := c.ws.Read(ctx)
		cancel()
		if err != nil {
			c.t.Fatalf("after %d of %d envelopes: %v", len(got), n, err)
		}
		if typ != websocket.MessageBinary || len(data) == 0 {
			c.t.Fatalf("frame of type %v, %d bytes", typ, len(data))
		}
		if data[0] != wire.FrameEnvelopes {
			continue
		}
		es, err := wire.DecodeEnvelopes(data)
		if err != nil {
			c.t.Fatal(err)
		}
		got = append(got, es...)
	}
	return got
}

func sameEnvelopes(t *testing.T, where string, got, want []mailbox.Envelope) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d envelopes, want %d", where, len(got), len(want))
	}
	for i := range want {
		x, y := want[i], got[i]
		if x.ID != y.ID || x.Seq != y.Seq || x.Conversation != y.Conversation || x.Sender != y.Sender ||
			x.Recipient != y.Recipient || x.Class != y.Class || !x.ServerTime.Equal(y.ServerTime) || !bytes.Equal(x.Ciphertext, y.Ciphertext) {
			t.Fatalf("%s: envelope %d is %+v, want %+v", where, i, y, x)
		}
	}
}

// TestCarriedWakeUpOnEveryKindOfStream: envelopes carried in a wake-up
// (binary on the bus) reach a device's binary streams, written as the
// wake-up carried them, and its JSON stream, on the node that stored them
// and on the other, field for field as stored, without a mailbox read.
func TestCarriedWakeUpOnEveryKindOfStream(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_kinds")
		b1, b2, a1 := dialBinary(t, b, dev), dialBinary(t, b, dev), dialBinary(t, a, dev)
		j := dial(t, b, dev)
		if f, err := j.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		waitStreams(t, b, dev, 3)
		waitStreams(t, a, dev, 1)
		// synced on the binary streams, before anything is stored
		for _, c := range []*binClient{b1, b2, a1} {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, data, err := c.ws.Read(ctx)
			cancel()
			if err != nil || len(data) != 1 || data[0] != wire.FrameSynced {
				t.Fatalf("want synced, got %x %v", data, err)
			}
		}
		beforeA, beforeB := a.hub.Stats(), b.hub.Stats()
		es := []mailbox.Envelope{env(dev, "dev_a", "first"), env(dev, "dev_a", strings.Repeat("€", 3000))}
		if err := store.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(es)
		sameEnvelopes(t, "binary stream on the other node", b1.collect(2), es)
		sameEnvelopes(t, "second binary stream there", b2.collect(2), es)
		sameEnvelopes(t, "binary stream on the storing node", a1.collect(2), es)
		sameEnvelopes(t, "JSON stream", j.collect(2, false), es)
		afterA, afterB := a.hub.Stats(), b.hub.Stats()
		if afterB.Carried-beforeB.Carried != 6 || afterA.Carried-beforeA.Carried != 2 || afterA.Read != beforeA.Read || afterB.Read != beforeB.Read {
			t.Fatalf("stats A %+v → %+v, B %+v → %+v: every stream should write the carried envelopes", beforeA, afterA, beforeB, afterB)
		}
	})
}

// TestUndecodableWakeUpReadsTheMailbox: a wake-up with a genuine tag whose
// envelopes do not decode — the JSON array a node of an earlier version
// publishes during a rolling upgrade, or a payload cut short or with
// another device's envelope — writes none of what it carries, and is
// not dropped either: the stream reads the mailbox and gets the envelope
// stored there, once.
func TestUndecodableWakeUpReadsTheMailbox(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		nc := publisher(t, b)
		dev := uniqueDevice("dev_upgrade")
		c := dial(t, b, dev)
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		waitConnected(t, b, dev)
		payloads := []func(e mailbox.Envelope) []byte{
			func(e mailbox.Envelope) []byte { p, _ := json.Marshal([]mailbox.Envelope{e}); return p },
			func(e mailbox.Envelope) []byte {
				p, _ := wire.AppendEnvelopes(nil, []mailbox.Envelope{e})
				return p[:len(p)-1]
			},
			func(e mailbox.Envelope) []byte {
				e.Recipient, e.Ciphertext = "dev_other", []byte("not yours")
				p, _ := wire.AppendEnvelopes(nil, []mailbox.Envelope{e})
				return p
			},
		}
		for i, payload := range payloads {
			before := b.hub.Stats()
			es := []mailbox.Envelope{env(dev, "dev_a", "stored")}
			if err := store.Append(ctx, es); err != nil {
				t.Fatal(err)
			}
			publish(t, nc, "kanal.mbox.wake."+dev, sealWake(dev, payload(es[0])))
			sameEnvelopes(t, "after an undecodable wake-up", c.collect(1, true), es)
			after := b.hub.Stats()
			if after.Undecodable != before.Undecodable+1 || after.Read != before.Read+1 || after.Carried != before.Carried || after.Forged != before.Forged {
				t.Fatalf("payload %d: stats %+v → %+v: want one undecodable wake-up and one envelope read from the mailbox", i, before, after)
			}
			waitDepth(t, store, dev, 0)
		}
	})
}
