//go:build !js

package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Attacks by the holder of a stolen session token, who opened a stream with
// it and keeps it open after the session is over. The hub's side: a stream
// is bound to its session and closes with it, on every node. (identity's
// side, which tells the hub, is attacked through the real binary in
// cmd/kanald.)

func sessionHeader(device, account, family string) http.Header {
	return http.Header{"Kanal-Test-Device": {device}, "Kanal-Test-Account": {account}, "Kanal-Test-Family": {family}}
}

// closeOf reads until the server closes and returns its close error.
func (c *client) closeOf() (websocket.StatusCode, string) {
	c.t.Helper()
	for {
		if _, err := c.next(); err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return websocket.CloseStatus(err), ""
		}
	}
}

// TestStreamsCloseWithTheirSession: a session end published on one node
// closes the matching streams on both, by login, by account (sparing the
// login that made the change) and by device, and nothing else.
func TestStreamsCloseWithTheirSession(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		acc := uniqueDevice("acc")
		d1, d2, d3 := uniqueDevice("dev_1"), uniqueDevice("dev_2"), uniqueDevice("dev_3")
		stranger := uniqueDevice("dev_s")
		// The thief's login of d1, on both nodes; the owner's login on d2;
		// a third device of the account; another account's device.
		thiefA := dialSession(t, a, sessionHeader(d1, acc, "fam_thief_"+acc))
		thiefB := dialSession(t, b, sessionHeader(d1, acc, "fam_thief_"+acc))
		owner := dialSession(t, b, sessionHeader(d2, acc, "fam_owner_"+acc))
		third := dialSession(t, a, sessionHeader(d3, acc, "fam_third_"+acc))
		other := dialSession(t, b, sessionHeader(stranger, "acc_"+stranger, "fam_thief_"+acc+"x"))
		for _, c := range []*client{thiefA, thiefB, owner, third, other} {
			if f, err := c.next(); err != nil || f.Type != "synced" {
				t.Fatalf("want synced, got %+v %v", f, err)
			}
		}
		waitConnected(t, a, d1)
		waitConnected(t, b, d1)
		// The thief holds an envelope, unacknowledged.
		held := []mailbox.Envelope{env(d1, "dev_a", "held")}
		if err := store.Append(ctx, held); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(held)
		thiefA.collect(1, false)
		thiefB.collect(1, false)

		// Logged out, on node a: the login's streams close on both nodes.
		if err := a.hub.EndSessions(mailbox.SessionEnd{Reason: "logged out", Family: "fam_thief_" + acc}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*client{thiefA, thiefB} {
			if code, reason := c.closeOf(); code != mailbox.StatusSessionEnded || reason != "logged out" {
				t.Fatalf("the thief's stream closed with %d %q, want %d", code, reason, mailbox.StatusSessionEnded)
			}
			// An ack on the closed stream deletes nothing.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c.ws.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"type":"ack","ids":[%q]}`, held[0].ID)))
			cancel()
		}
		if n, err := store.Depth(ctx, d1); err != nil || n != 1 {
			t.Fatalf("after the session ended the held envelope is gone (%d, %v)", n, err)
		}
		// Everyone else is still connected and receiving.
		alive := func(c *client, dev string) {
			t.Helper()
			e := []mailbox.Envelope{env(dev, "dev_a", "alive")}
			if err := store.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
			b.hub.Deliver(e)
			if got := c.collect(1, true); got[0].ID != e[0].ID {
				t.Fatalf("%s got %+v", dev, got)
			}
		}
		alive(owner, d2)
		alive(third, d3)
		alive(other, stranger)

		// The password changed, through the owner's login: every other
		// login of the account ends, the owner's stays.
		if err := b.hub.EndSessions(mailbox.SessionEnd{Reason: "password changed", Account: acc, KeepFamily: "fam_owner_" + acc}); err != nil {
			t.Fatal(err)
		}
		if code, _ := third.closeOf(); code != mailbox.StatusSessionEnded {
			t.Fatalf("the account's other login closed with %d", code)
		}
		alive(owner, d2)
		alive(other, stranger)

		// The device is revoked: StatusRevoked.
		if err := a.hub.Disconnect(d2); err != nil {
			t.Fatal(err)
		}
		if code, _ := owner.closeOf(); code != mailbox.StatusRevoked {
			t.Fatalf("the revoked device's stream closed with %d", code)
		}
		alive(other, stranger)
		// Both nodes told their Ended hook of the revocation (kanald drops
		// the device from the send path's memory there): node a at once,
		// node b from the bus.
		for _, n := range []*node{a, b} {
			deadline := time.Now().Add(5 * time.Second)
			for {
				n.mu.Lock()
				told := slices.ContainsFunc(n.ended, func(e mailbox.SessionEnd) bool { return e.Revoked && e.Device == d2 })
				n.mu.Unlock()
				if told {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("a node was not told that %s was revoked", d2)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
}

// TestStreamClosesAtSessionExpiry: a stream whose session expires closes
// then, by itself, and an ack sent after that deletes nothing.
func TestStreamClosesAtSessionExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_exp")
		held := []mailbox.Envelope{env(dev, "dev_a", "held")}
		if err := store.Append(ctx, held); err != nil {
			t.Fatal(err)
		}
		h := sessionHeader(dev, "acc_"+dev, "fam_"+dev)
		h.Set("Kanal-Test-Expires", fmt.Sprint(time.Now().Add(1500*time.Millisecond).UnixMilli()))
		c := dialSession(t, b, h)
		c.collect(1, false)
		if code, reason := c.closeOf(); code != mailbox.StatusSessionEnded || reason != "session expired" {
			t.Fatalf("the expired session's stream closed with %d %q", code, reason)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c.ws.Write(wctx, websocket.MessageText, []byte(fmt.Sprintf(`{"type":"ack","ids":[%q]}`, held[0].ID)))
		cancel()
		if n, err := store.Depth(ctx, dev); err != nil || n != 1 {
			t.Fatalf("after expiry the held envelope is gone (%d, %v)", n, err)
		}
	})
}

// TestLostSessionEndIsCaught: the word that a session ended never reaches
// the node (lost on the bus, or the node was cut off): the stream's own
// session check closes it.
func TestLostSessionEndIsCaught(t *testing.T) {
	store, bb := sqliteNode(t)
	n := newNodeWith(t, store, bb, 0, 200*time.Millisecond, nil)
	for _, c := range []struct {
		verdict error
		code    websocket.StatusCode
	}{
		{fmt.Errorf("%w: revoked", mailbox.ErrSessionEnded), mailbox.StatusSessionEnded},
		{fmt.Errorf("%w: gone", mailbox.ErrDeviceRevoked), mailbox.StatusRevoked},
	} {
		dev := uniqueDevice("dev_lost")
		cl := dialSession(t, n, sessionHeader(dev, "acc_"+dev, "fam_"+dev))
		if f, err := cl.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		n.setVerdict("fam_"+dev, c.verdict)
		if code, _ := cl.closeOf(); code != c.code {
			t.Fatalf("verdict %v: closed with %d, want %d", c.verdict, code, c.code)
		}
	}
	// A session that ended before its stream registered is refused at once.
	dev := uniqueDevice("dev_late")
	n.setVerdict("fam_"+dev, mailbox.ErrSessionEnded)
	if code, _ := dialSession(t, n, sessionHeader(dev, "acc_"+dev, "fam_"+dev)).closeOf(); code != mailbox.StatusSessionEnded {
		t.Fatalf("a stream of an ended session closed with %d", code)
	}
}

// TestGatheredSessionRechecks: with CheckSessions set, the streams'
// periodic rechecks are asked together — 40 streams, one call per round
// rather than 40 — and still close what a lost session end left open:
// an ended session with 4002, a revoked device with 4001. A session the
// check could not tell about stays, as do the live ones; the check when
// a stream registers is still its own.
func TestGatheredSessionRechecks(t *testing.T) {
	store, bb := sqliteNode(t)
	var singles, calls, checked atomic.Int64
	n := newNodeOpts(t, store, bb, 0, 200*time.Millisecond, nil, 0, 0, func(n *node, o *mailbox.HubOptions) {
		check := o.Check
		o.Check = func(ctx context.Context, s mailbox.Session) error { singles.Add(1); return check(ctx, s) }
		o.CheckSessions = func(_ context.Context, ss []mailbox.Session) ([]error, error) {
			calls.Add(1)
			checked.Add(int64(len(ss)))
			n.mu.Lock()
			defer n.mu.Unlock()
			out := make([]error, len(ss))
			for i, s := range ss {
				out[i] = n.verdict[s.Ref]
			}
			return out, nil
		}
	})
	const streams = 40
	devs := make([]string, streams)
	cls := make([]*client, streams)
	for i := range devs {
		devs[i] = uniqueDevice(fmt.Sprintf("dev_g%d", i))
		cls[i] = dialSession(t, n, sessionHeader(devs[i], "acc_"+devs[i], "fam_"+devs[i]))
		if f, err := cls[i].next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
	}
	if got := singles.Load(); got != streams {
		t.Fatalf("%d single checks, want one per stream at registration (%d)", got, streams)
	}
	// Let a round of rechecks pass with every session live.
	for deadline := time.Now().Add(10 * time.Second); checked.Load() < streams; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions rechecked in 10 s", checked.Load())
		}
	}
	n.setVerdict("fam_"+devs[0], fmt.Errorf("%w: logged out", mailbox.ErrSessionEnded))
	n.setVerdict("fam_"+devs[1], fmt.Errorf("%w: gone", mailbox.ErrDeviceRevoked))
	n.setVerdict("fam_"+devs[2], errors.New("database unreachable"))
	for i, want := range []websocket.StatusCode{mailbox.StatusSessionEnded, mailbox.StatusRevoked} {
		if code, _ := cls[i].closeOf(); code != want {
			t.Fatalf("stream %d closed with %d, want %d", i, code, want)
		}
	}
	for _, dev := range devs[2:] {
		if !n.hub.Connected(dev) {
			t.Fatalf("%s's stream closed with its session live or not known", dev)
		}
	}
	if singles.Load() != streams {
		t.Fatalf("%d single checks after the rechecks, want %d", singles.Load(), streams)
	}
	if c, k := calls.Load(), checked.Load(); c*4 > k || n.hub.Stats().SessionChecks != uint64(c) {
		t.Fatalf("%d calls for %d session checks (stats %d): not gathered", c, k, n.hub.Stats().SessionChecks)
	}
}

// TestNothingBeforeTheSessionCheck: the thief's stream is registered, and
// the login logged out before the stream's session check. An envelope
// for the device is stored and its wake-up reaches the stream while the
// check runs: nothing of the mailbox is written to the stream, which
// closes with 4002 once the check answers.
func TestNothingBeforeTheSessionCheck(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		dev := uniqueDevice("dev_check")
		fam := "fam_thief_" + dev
		held := b.holdCheck(fam)
		thief := dialSession(t, b, sessionHeader(dev, "acc_"+dev, fam))
		select {
		case <-held.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the stream's session was not checked")
		}
		b.setVerdict(fam, fmt.Errorf("%w: logged out", mailbox.ErrSessionEnded))
		woken := b.hub.Stats().WakeUps
		e := []mailbox.Envelope{env(dev, "dev_a", "not for the thief")}
		if err := store.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(e)
		for deadline := time.Now().Add(10 * time.Second); b.hub.Stats().WakeUps == woken; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the wake-up did not reach the stream's node")
			}
		}
		// The check answers a moment later: a stream that wrote the
		// mailbox on the wake-up has written it by then.
		time.AfterFunc(200*time.Millisecond, func() { close(held.release) })
		var got []mailbox.Envelope
		for {
			f, err := thief.next()
			if err != nil {
				if code := websocket.CloseStatus(err); code != mailbox.StatusSessionEnded {
					t.Fatalf("closed with %d (%v), want %d", code, err, mailbox.StatusSessionEnded)
				}
				break
			}
			got = append(got, f.Envelopes...)
		}
		if len(got) != 0 {
			t.Fatalf("the stream of an ended session was sent %d envelopes", len(got))
		}
		if n, err := store.Depth(ctx, dev); err != nil || n != 1 {
			t.Fatalf("mailbox holds %d (%v), want the envelope still", n, err)
		}
	})
}
