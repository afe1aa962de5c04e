//go:build !js

package mailbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// node is one kanald's share of the mailbox: a hub behind an httptest
// server. The session is taken from headers here, and its check is the
// node's verdicts; identity, which gives both in kanald, is tested with
// the real binary (cmd/kanald).
type node struct {
	mu      sync.Mutex
	verdict map[string]error      // by Session.Ref; none: live
	holds   map[string]*heldCheck // by Session.Ref: the next check waits
	ended   []mailbox.SessionEnd  // what HubOptions.Ended was told
	// What HubOptions.StreamEnded was told, each device with whether the
	// hub still counted it connected then.
	streamEnds []streamEnd

	hub     *mailbox.Hub
	srv     *httptest.Server
	tracker *web.Tracker
	bus     *bus.Bus
	natsURL string // the external NATS, "" on the embedded server
}

func newNode(t *testing.T, store *mailbox.Store, b *bus.Bus, writeTimeout time.Duration) *node {
	return newNodeWith(t, store, b, writeTimeout, 0, nil)
}

// newNodeWithPing is newNode with a ping every interval.
func newNodeWithPing(t *testing.T, store *mailbox.Store, b *bus.Bus, writeTimeout, interval time.Duration) *node {
	return newNodeOpts(t, store, b, writeTimeout, 0, nil, interval, 0)
}

// newNodeWith is newNode with a session check every recheck (zero: the
// default) and a clock (nil: time.Now).
func newNodeWith(t *testing.T, store *mailbox.Store, b *bus.Bus, writeTimeout, recheck time.Duration, now func() time.Time) *node {
	t.Helper()
	return newNodeOpts(t, store, b, writeTimeout, recheck, now, 0, 0)
}

func newNodeOpts(t *testing.T, store *mailbox.Store, b *bus.Bus, writeTimeout, recheck time.Duration, now func() time.Time, ping, frame time.Duration, mods ...func(*node, *mailbox.HubOptions)) *node {
	t.Helper()
	n := &node{tracker: &web.Tracker{}, bus: b, verdict: map[string]error{}, holds: map[string]*heldCheck{}}
	// The hub's log, shown only when the test fails (why a socket closed).
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub log:\n%s", logs.String())
		}
	})
	o := mailbox.HubOptions{
		Store: store, Bus: b, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Tracker: n.tracker,
		Session: testSession,
		Check: func(_ context.Context, s mailbox.Session) error {
			n.mu.Lock()
			h := n.holds[s.Ref]
			delete(n.holds, s.Ref)
			n.mu.Unlock()
			if h != nil {
				close(h.entered)
				<-h.release
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.verdict[s.Ref]
		},
		Ended: func(e mailbox.SessionEnd) {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.ended = append(n.ended, e)
		},
		StreamEnded: func(device string) {
			connected := n.hub.Connected(device)
			n.mu.Lock()
			defer n.mu.Unlock()
			n.streamEnds = append(n.streamEnds, streamEnd{device, connected})
		},
		SessionRecheck: recheck,
		Now:            now,
		BusKey:         testBusKey,
		WriteTimeout:   writeTimeout,
		PingInterval:   ping,
		FrameTimeout:   frame,
		// Binary frames are offered (a stream may speak them); a node
		// here takes no sends.
		BinaryFrames: func(context.Context, string, []byte) (any, error) { return nil, errors.New("no sends here") },
	}
	for _, m := range mods {
		m(n, &o)
	}
	h, err := mailbox.NewHub(o)
	if err != nil {
		t.Fatal(err)
	}
	n.hub = h
	n.srv = httptest.NewServer(h)
	t.Cleanup(func() { n.tracker.CloseAll(); n.srv.Close(); h.Close() })
	return n
}

type streamEnd struct {
	device    string
	connected bool
}

// testBusKey is the deployment's bus key in these tests: every node has it.
var testBusKey = bytes.Repeat([]byte("k"), mailbox.MinBusKey)

// testSession reads the stream's session from the request's headers: the
// device, and optionally its account, login (family) and expiry (Unix
// milliseconds); Ref is the family.
func testSession(r *http.Request) (mailbox.Session, bool) {
	d := r.Header.Get("Kanal-Test-Device")
	s := mailbox.Session{Device: d, Account: "acc_" + d, Family: "fam_" + d, Expires: time.Now().Add(time.Hour)}
	if v := r.Header.Get("Kanal-Test-Account"); v != "" {
		s.Account = v
	}
	if v := r.Header.Get("Kanal-Test-Family"); v != "" {
		s.Family = v
	}
	if v := r.Header.Get("Kanal-Test-Expires"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return mailbox.Session{}, false
		}
		s.Expires = time.UnixMilli(ms)
	}
	s.Ref = s.Family
	return s, d != ""
}

// setVerdict makes the node's session check answer err for the login.
func (n *node) setVerdict(family string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.verdict[family] = err
}

// heldCheck holds a session check: entered is closed when it starts, and
// it answers once release is closed.
type heldCheck struct{ entered, release chan struct{} }

// holdCheck makes the node's next check of the login's session wait.
func (n *node) holdCheck(family string) *heldCheck {
	h := &heldCheck{entered: make(chan struct{}), release: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.holds[family] = h
	return h
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func dial(t *testing.T, n *node, device string) *client {
	t.Helper()
	return dialSession(t, n, http.Header{"Kanal-Test-Device": {device}})
}

// dialSession opens a stream with the session the headers describe.
func dialSession(t *testing.T, n *node, h http.Header) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.srv.URL, "http"), &websocket.DialOptions{
		HTTPHeader: h,
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 22)
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws}
}

type frame struct {
	Type      string             `json:"type"`
	Envelopes []mailbox.Envelope `json:"envelopes"`
	Problem   map[string]any     `json:"problem"`
}

func (c *client) next() (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := c.ws.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("server sent non-JSON: %s", data)
	}
	return f, nil
}

// collect reads until n envelopes arrived, acking each batch if ack is set.
func (c *client) collect(n int, ack bool) []mailbox.Envelope {
	c.t.Helper()
	var got []mailbox.Envelope
	for len(got) < n {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("after %d of %d envelopes: %v", len(got), n, err)
		}
		if f.Type != "envelopes" {
			continue
		}
		got = append(got, f.Envelopes...)
		if ack {
			ids := make([]string, len(f.Envelopes))
			for i, e := range f.Envelopes {
				ids[i] = e.ID
			}
			c.send(map[string]any{"type": "ack", "ids": ids})
		}
	}
	return got
}

func (c *client) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.sendRaw(b)
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// closeCode reads until the server closes and returns its status code.
func (c *client) closeCode() websocket.StatusCode {
	c.t.Helper()
	for {
		if _, err := c.next(); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// eachBackend runs fn with two nodes sharing one database and one bus: on
// SQLite with the embedded NATS, and on PostgreSQL with the external NATS.
func eachBackend(t *testing.T, fn func(t *testing.T, store *mailbox.Store, a, b *node)) {
	t.Run("sqlite+embedded", func(t *testing.T) {
		d := dbtest.SQLite(t, mailbox.Migrations())
		run(t, d, bus.Options{}, fn)
	})
	t.Run("postgres+nats", func(t *testing.T) {
		d := dbtest.Postgres(t, mailbox.Migrations())
		u := os.Getenv("KANAL_TEST_NATS")
		if u == "" {
			if os.Getenv("CI") != "" {
				t.Fatal("KANAL_TEST_NATS is not set under CI")
			}
			t.Skip("KANAL_TEST_NATS not set")
		}
		run(t, d, bus.Options{URL: u}, fn)
	})
}

func run(t *testing.T, d *db.DB, bo bus.Options, fn func(t *testing.T, store *mailbox.Store, a, b *node)) {
	ctx := context.Background()
	store := mailbox.NewStore(d, mailbox.StoreOptions{})
	// Two bus connections, as two nodes have; on the embedded server the
	// second node shares the first one's connection (it has no listener).
	ba, err := bus.Open(ctx, bo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ba.Close() })
	bb := ba
	if bo.URL != "" {
		if bb, err = bus.Open(ctx, bo); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bb.Close() })
	}
	na, nb := newNode(t, store, ba, 0), newNode(t, store, bb, 0)
	na.natsURL, nb.natsURL = bo.URL, bo.URL
	fn(t, store, na, nb)
}

// busBeside gives a node added beside a its own connection to the bus a
// uses, as a node of its own has: on an external bus a node does not hear
// what it publishes itself (bus.Echoes). On the embedded server, which
// has no listener, it is a's connection.
func busBeside(t *testing.T, a *node) *bus.Bus {
	t.Helper()
	if a.natsURL == "" {
		return a.bus
	}
	b, err := bus.Open(context.Background(), bus.Options{URL: a.natsURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// sqliteNode is a store on a fresh SQLite file and an embedded bus, for
// tests that build their nodes themselves.
func sqliteNode(t *testing.T) (*mailbox.Store, *bus.Bus) {
	t.Helper()
	d := dbtest.SQLite(t, mailbox.Migrations())
	bb, err := bus.Open(context.Background(), bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	return mailbox.NewStore(d, mailbox.StoreOptions{}), bb
}

// uniqueDevice keeps runs on the shared external NATS apart.
func uniqueDevice(name string) string {
	return fmt.Sprintf("%s_%d", name, time.Now().UnixNano())
}

func TestBacklogThenLiveAcrossNodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_b")
		// 100 envelopes while the device is offline.
		for i := 0; i < 100; i++ {
			if err := store.Append(ctx, []mailbox.Envelope{env(dev, "dev_a", fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
		c := dial(t, b, dev)
		got := c.collect(100, true)
		for i, e := range got {
			if string(e.Ciphertext) != fmt.Sprint(i) {
				t.Fatalf("backlog out of order at %d: %q", i, e.Ciphertext)
			}
		}
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced after the backlog, got %+v %v", f, err)
		}
		// Live: stored through node A's side, woken over the bus, delivered by B.
		live := []mailbox.Envelope{env(dev, "dev_a", "live")}
		if err := store.Append(ctx, live); err != nil {
			t.Fatal(err)
		}
		a.hub.Notify(dev)
		if e := c.collect(1, true); string(e[0].Ciphertext) != "live" || e[0].ID != live[0].ID {
			t.Fatalf("live envelope: %+v", e)
		}
		// Acked envelopes are gone from the mailbox.
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, _ := store.Depth(ctx, dev)
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d acked envelopes still stored", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestUnackedAreRedeliveredOnReconnect(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_r")
		for i := 0; i < 3; i++ {
			store.Append(ctx, []mailbox.Envelope{env(dev, "dev_a", fmt.Sprint(i))})
		}
		c := dial(t, a, dev)
		first := c.collect(3, false) // delivered, never acked
		c.ws.Close(websocket.StatusNormalClosure, "")
		again := dial(t, b, dev).collect(3, true)
		for i := range first {
			if first[i].ID != again[i].ID {
				t.Fatalf("redelivery differs at %d", i)
			}
		}
	})
}

// TestBadFramesCloseTheStream: a frame that is not UTF-8 text closes with
// 1007 (RFC 6455 §8.1), one that breaks the protocol — an unknown type, an
// ack with an unknown field, a key in another case, a key twice — with
// 1008, as docs/api-messaging.md says, and the envelope the bad ack named
// stays in the mailbox. A well-formed ack the server refuses (an empty id)
// gets a problem frame and the stream stays open.
func TestBadFramesCloseTheStream(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, _ *node) {
		ctx := context.Background()
		cases := []struct {
			name  string
			frame func(id string) string
			code  websocket.StatusCode
		}{
			{"not JSON", func(string) string { return `not json` }, websocket.StatusInvalidFramePayloadData},
			{"invalid UTF-8", func(id string) string { return "{\"type\":\"ack\",\"ids\":[\"" + id + "\xff\"]}" }, websocket.StatusInvalidFramePayloadData},
			{"invalid UTF-8 in an unknown frame", func(string) string { return "{\"type\":\"l\xc0unch\"}" }, websocket.StatusInvalidFramePayloadData},
			{"unknown type", func(string) string { return `{"type":"launch"}` }, websocket.StatusPolicyViolation},
			{"ack with an unknown field", func(id string) string { return `{"type":"ack","ids":["` + id + `"],"extra":true}` }, websocket.StatusPolicyViolation},
			{"ack with a key in capitals", func(id string) string { return `{"type":"ack","IDS":["` + id + `"]}` }, websocket.StatusPolicyViolation},
			{"ack with a key twice", func(id string) string { return `{"type":"ack","ids":["` + id + `"],"ids":["` + id + `"]}` }, websocket.StatusPolicyViolation},
		}
		for _, c := range cases {
			dev := uniqueDevice("dev_x")
			if err := store.Append(ctx, []mailbox.Envelope{env(dev, "dev_a", "hello")}); err != nil {
				t.Fatal(err)
			}
			cl := dial(t, a, dev)
			got := cl.collect(1, false)
			cl.sendRaw([]byte(c.frame(got[0].ID)))
			if code := cl.closeCode(); code != c.code {
				t.Errorf("%s: close %d, want %d", c.name, code, c.code)
			}
			if n, err := store.Depth(ctx, dev); err != nil || n != 1 {
				t.Errorf("%s: mailbox holds %d envelopes (%v), want 1", c.name, n, err)
			}
		}
		// A refused ack is answered with a problem; the stream stays open.
		cl := dial(t, a, uniqueDevice("dev_y"))
		cl.send(map[string]any{"type": "ack", "ids": []string{""}})
		for {
			f, err := cl.next()
			if err != nil {
				t.Fatalf("stream closed on a refused ack: %v", err)
			}
			if f.Type == "problem" {
				if f.Problem["type"] != string(web.TypeValidation) {
					t.Fatalf("problem %v", f.Problem)
				}
				break
			}
		}
	})
}

// TestUnansweredPingClosesWith4008: a device that stops reading while its
// socket can still take a frame is told why it is cut off — close 4008,
// as docs/api-messaging.md says — not dropped without a close frame.
func TestUnansweredPingClosesWith4008(t *testing.T) {
	d := dbtest.SQLite(t, mailbox.Migrations())
	b, err := bus.Open(context.Background(), bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := newNodeWithPing(t, mailbox.NewStore(d, mailbox.StoreOptions{}), b, time.Second, 100*time.Millisecond)
	cl := dial(t, n, "dev_silent") // reads nothing, so answers no ping
	waitConnected(t, n, "dev_silent")
	for deadline := time.Now().Add(30 * time.Second); n.hub.Connected("dev_silent"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("silent socket never cut")
		}
	}
	if code := cl.closeCode(); code != mailbox.StatusTooSlow {
		t.Fatalf("close %d, want %d", code, mailbox.StatusTooSlow)
	}
	// The device had taken every byte and answered nothing.
	wantStallCause(t, n.hub.Stats().PingTimeouts, mailbox.StallQuiet)
}

// TestStreamsOpenedTogetherPingApart: streams that open at once — a
// node's devices coming back after its restart — are not pinged at once
// for as long as they live. Each stream's first ping comes at a random
// point of its first interval, never later than a whole one (a lost
// wake-up still waits at most PingInterval for the look that follows a
// ping), and the next a whole interval after it, so the streams keep
// apart.
func TestStreamsOpenedTogetherPingApart(t *testing.T) {
	const streams, interval = 24, 2 * time.Second
	d := dbtest.SQLite(t, mailbox.Migrations())
	b, err := bus.Open(context.Background(), bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := newNodeWithPing(t, mailbox.NewStore(d, mailbox.StoreOptions{}), b, time.Second, interval)

	// pinged[i] holds when stream i was pinged, from its dial's return.
	var mu sync.Mutex
	pinged := make([][]time.Duration, streams)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range streams {
		var opened time.Time
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.srv.URL, "http"), &websocket.DialOptions{
			HTTPHeader: http.Header{"Kanal-Test-Device": {fmt.Sprintf("dev_ping%d", i)}},
			OnPingReceived: func(context.Context, []byte) bool {
				mu.Lock()
				defer mu.Unlock()
				pinged[i] = append(pinged[i], time.Since(opened))
				return true // answered
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		opened = time.Now()
		t.Cleanup(func() { ws.CloseNow() })
		go func() { // reads, so that pings are answered
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
			}
		}()
	}
	twice := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pinged {
			if len(p) < 2 {
				return false
			}
		}
		return true
	}
	for !twice() {
		if ctx.Err() != nil {
			t.Fatal("not every stream was pinged twice")
		}
		time.Sleep(20 * time.Millisecond)
	}

	mu.Lock()
	defer mu.Unlock()
	// The dial returns before the node starts the stream's clock, and a
	// ping is read a little after it is due: 700 ms of slack for a
	// loaded machine (a first ping due up to two intervals late would
	// still show in most of the 24).
	const slack = 700 * time.Millisecond
	first, last := time.Duration(1<<62), time.Duration(0)
	for i, p := range pinged {
		if p[0] > interval+slack {
			t.Errorf("stream %d: first ping after %v, more than the interval %v", i, p[0], interval)
		}
		if gap := p[1] - p[0]; gap < interval-slack {
			t.Errorf("stream %d: second ping %v after the first, want a whole interval (%v)", i, gap, interval)
		}
		first, last = min(first, p[0]), max(last, p[0])
	}
	// At once, all 24 first pings would fall within a few milliseconds of
	// each other (their times measured from each one's own dial); spread
	// over the interval, they span a third of it or less with a
	// probability under 10⁻⁹.
	if last-first < interval/3 {
		t.Fatalf("first pings between %v and %v after the streams opened: not spread over the interval %v", first, last, interval)
	}
}

// TestReplacedAndRevokedAndShutdown: a second stream of the device no
// longer replaces the first (4000 is retired; see streams_test.go), a
// revocation closes them all, and shutdown closes with 1001.
func TestReplacedAndRevokedAndShutdown(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		dev := uniqueDevice("dev_z")
		first := dial(t, a, dev)
		waitConnected(t, a, dev)
		second := dial(t, a, dev) // the same device again on the same node
		waitStreams(t, a, dev, 2)
		// Let both go, so that "connected" below means the third.
		first.ws.Close(websocket.StatusNormalClosure, "")
		second.ws.Close(websocket.StatusNormalClosure, "")
		for deadline := time.Now().Add(5 * time.Second); a.hub.Connected(dev); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("closed connection still registered")
			}
		}
		// Revocation decided on node B closes the socket on node A.
		third := dial(t, a, dev)
		waitConnected(t, a, dev)
		if err := b.hub.Disconnect(dev); err != nil {
			t.Fatal(err)
		}
		if code := third.closeCode(); code != mailbox.StatusRevoked {
			t.Fatalf("revoked connection closed with %d", code)
		}
		// Shutdown closes tracked sockets with "going away".
		other := dial(t, b, uniqueDevice("dev_w"))
		codes := make(chan websocket.StatusCode, 1)
		go func() { codes <- other.closeCode() }() // a live client reads while the server closes
		b.tracker.CloseAll()
		if code := <-codes; code != websocket.StatusGoingAway {
			t.Fatalf("shutdown closed with %d", code)
		}
	})
}

func waitConnected(t *testing.T, n *node, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !n.hub.Connected(dev) {
		if time.Now().After(deadline) {
			t.Fatal("device never registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStalledSocketDoesNotSlowOthers: a device that stops reading is cut
// off after the write timeout, while another device keeps getting its
// envelopes meanwhile; the stalled one catches up from its mailbox.
func TestStalledSocketDoesNotSlowOthers(t *testing.T) {
	d := dbtest.SQLite(t, mailbox.Migrations())
	ctx := context.Background()
	store := mailbox.NewStore(d, mailbox.StoreOptions{})
	b, err := bus.Open(ctx, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Short, so that the stalled socket is cut soon; no pings, whose
	// answers would have the same deadline. Only the burst runs on this
	// node: the hub gives its acknowledgement writes that deadline too,
	// which a loaded machine's SQLite writer can miss.
	n := newNodeOpts(t, store, b, 2*time.Second, 0, nil, time.Hour, 0)

	stalled := dial(t, n, "dev_stalled") // never reads
	waitConnected(t, n, "dev_stalled")
	healthy := dial(t, n, "dev_healthy")
	waitConnected(t, n, "dev_healthy")
	big := strings.Repeat("x", mailbox.MaxCiphertext)
	// Enough to fill the socket buffers of the stalled device many times over.
	const sends = 300 // ~19 MiB for the stalled device, far past socket buffers
	// The healthy device reads while the sends happen, as a live client
	// does. It does not acknowledge (300 is within MaxInFlight, so the
	// server does not wait for acks), for the reason above.
	appended := make(chan error, 1)
	go func() {
		for i := 0; i < sends; i++ {
			if err := store.Append(ctx, []mailbox.Envelope{env("dev_stalled", "dev_a", big), env("dev_healthy", "dev_a", fmt.Sprint(i))}); err != nil {
				appended <- err
				return
			}
			n.hub.Notify("dev_stalled", "dev_healthy")
		}
		appended <- nil
	}()
	got := healthy.collect(sends, false)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if string(got[sends-1].Ciphertext) != fmt.Sprint(sends-1) {
		t.Fatalf("healthy device got %q last", got[sends-1].Ciphertext)
	}
	// The stalled stream ends by itself: its pump's write runs past the
	// write timeout.
	deadline := time.Now().Add(time.Minute) // only against a hang
	for n.hub.Connected("dev_stalled") {
		if time.Now().After(deadline) {
			t.Fatal("stalled socket never cut")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stalled.ws.CloseNow()
	// It is counted as dropped for a write the device did not take:
	// the node's send queue was full when the deadline cut the write.
	wantStallCause(t, n.hub.Stats().WriteTimeouts, mailbox.StallUnsent)
	// Its mailbox still holds every envelope, for its next stream (the
	// backlog's delivery is TestUnackedAreRedeliveredOnReconnect's; read
	// here through a stream, ~19 MiB under the race detector on a loaded
	// machine ran past the client's and the server's deadlines).
	caught, after := 0, int64(0)
	for {
		batch, err := store.Fetch(ctx, "dev_stalled", after, mailbox.FetchBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		caught += len(batch)
		after = batch[len(batch)-1].Seq
	}
	if caught != sends {
		t.Fatalf("stalled device's mailbox holds %d of %d", caught, sends)
	}
}

// TestUnfinishedFrameIsCut: a device that starts a frame and never
// finishes it — holding the server to the bytes it sent while it answers
// pings — is cut off after the frame time with 4008, as one that does
// not answer pings is; what it sent of the frame is dropped with it. The
// frames it finished before do not use the time up (each frame's is
// counted from its start).
func TestUnfinishedFrameIsCut(t *testing.T) {
	d := dbtest.SQLite(t, mailbox.Migrations())
	b, err := bus.Open(context.Background(), bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := newNodeOpts(t, mailbox.NewStore(d, mailbox.StoreOptions{}), b, 0, 0, nil, 0, 300*time.Millisecond)
	cl := dial(t, n, "dev_trickle")
	waitConnected(t, n, "dev_trickle")
	for i := range 5 {
		cl.send(map[string]any{"type": "ack", "ids": []string{fmt.Sprint("made-up-", i)}})
	}
	ctx := context.Background()
	w, err := cl.ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	// Past the client's write buffer, so that the frame's start is sent.
	if _, err := w.Write([]byte(`{"type":"ack","ids":["` + strings.Repeat("x", 64<<10))); err != nil {
		t.Fatal(err)
	}
	// The rest of the frame never comes; the client keeps reading (and
	// so answers pings) until the server closes.
	if code := cl.closeCode(); code != mailbox.StatusTooSlow {
		t.Fatalf("close %d, want %d", code, mailbox.StatusTooSlow)
	}
}

// TestStreamEndedAfterUnregister: HubOptions.StreamEnded hears of every
// stream that ends, once per stream, after Connected stopped counting it
// (web push skips connected devices and relies on this to look at what a
// device left waiting); a device's other stream is still counted.
func TestStreamEndedAfterUnregister(t *testing.T) {
	d := dbtest.SQLite(t, mailbox.Migrations())
	b, err := bus.Open(context.Background(), bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	n := newNode(t, mailbox.NewStore(d, mailbox.StoreOptions{}), b, 0)
	dev := uniqueDevice("dev_ends")
	one, two := dial(t, n, dev), dial(t, n, dev)
	for _, c := range []*client{one, two} {
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("first frame %+v, %v", f, err)
		}
	}
	ends := func() []streamEnd {
		n.mu.Lock()
		defer n.mu.Unlock()
		return slices.Clone(n.streamEnds)
	}
	waitEnds := func(k int) []streamEnd {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(ends()) < k {
			if time.Now().After(deadline) {
				t.Fatalf("StreamEnded told %v, want %d", ends(), k)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return ends()
	}
	one.ws.Close(websocket.StatusNormalClosure, "")
	if got := waitEnds(1); got[0] != (streamEnd{dev, true}) {
		t.Fatalf("first end %+v, want the device still connected by its other stream", got[0])
	}
	two.ws.Close(websocket.StatusNormalClosure, "")
	if got := waitEnds(2); len(got) != 2 || got[1] != (streamEnd{dev, false}) {
		t.Fatalf("ends %+v, want the device no longer connected at its last stream's end", got)
	}
}
