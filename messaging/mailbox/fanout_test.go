//go:build !js

package mailbox_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// TestFanoutAcrossNodes: an envelope stored once for four devices — two
// with streams on the other node, one with a stream on the publishing
// node, one offline — reaches the three streams from the fan-out alone
// (no mailbox read), with its body and each device's own seq, and the
// offline device reads the body from its mailbox when it connects. The
// publishing node's own device gets it from that node, not from NATS,
// which does not echo a node's publications on an external bus.
// Acknowledging removes only the device's own reference.
func TestFanoutAcrossNodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		on1, on2, off, here := uniqueDevice("dev_on1"), uniqueDevice("dev_on2"), uniqueDevice("dev_off"), uniqueDevice("dev_here")
		// on1 has an envelope already, so its seq differs from on2's.
		first := []mailbox.Envelope{env(on1, "dev_a", "before")}
		if err := store.Append(ctx, first); err != nil {
			t.Fatal(err)
		}
		c1, c2, ch := dial(t, b, on1), dial(t, b, on2), dial(t, a, here)
		if got := c1.collect(1, true); got[0].ID != first[0].ID {
			t.Fatalf("backlog: %+v", got)
		}
		for _, c := range []*client{c1, c2, ch} {
			for {
				f, err := c.next()
				if err != nil {
					t.Fatal(err)
				}
				if f.Type == "synced" {
					break
				}
			}
		}
		waitConnected(t, b, on1)
		waitConnected(t, b, on2)
		waitConnected(t, a, here)
		before, beforeHere := b.hub.Stats(), a.hub.Stats()

		body := []byte("the announcement, stored once")
		refs, err := store.AppendShared(ctx, mailbox.Envelope{ID: "bc_1", Conversation: "b_council", Sender: "dev_clerk", Ciphertext: body},
			[]string{on1, on2, off, here})
		if err != nil {
			t.Fatal(err)
		}
		a.hub.Fanout(refs, body)
		for _, c := range []struct {
			c   *client
			dev string
			seq int64
		}{{c1, on1, 2}, {c2, on2, 1}, {ch, here, 1}} {
			got := c.c.collect(1, true)
			if len(got) != 1 || got[0].ID != "bc_1" || string(got[0].Ciphertext) != string(body) || got[0].Recipient != c.dev ||
				got[0].Seq != c.seq || got[0].Class != mailbox.ClassBroadcast || got[0].Conversation != "b_council" {
				t.Fatalf("%s got %+v", c.dev, got)
			}
		}
		if st := b.hub.Stats(); st.Carried-before.Carried != 2 || st.Read != before.Read {
			t.Fatalf("stats %+v → %+v: want both written from the fan-out", before, st)
		}
		if st := a.hub.Stats(); st.Carried-beforeHere.Carried != 1 || st.Read != beforeHere.Read {
			t.Fatalf("publishing node's stats %+v → %+v: want its device's written from the fan-out", beforeHere, st)
		}
		c3 := dial(t, b, off)
		got := c3.collect(1, true)
		if got[0].ID != "bc_1" || string(got[0].Ciphertext) != string(body) {
			t.Fatalf("offline device read %+v", got)
		}
		// Acks are written within mailbox.AckInterval.
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := 0
			for _, d := range []string{on1, on2, off, here} {
				n, err := store.Depth(ctx, d)
				if err != nil {
					t.Fatal(err)
				}
				left += n
			}
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d references left after every device acknowledged", left)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestForgedFanoutIsNotWritten: a NATS publisher (see bus_attack_test.go)
// sends a fan-out, binary and in the JSON of earlier versions, naming the victim with the seq its stream expects next
// and a body of their choosing, with no tag and with a made-up one. The
// victim's socket gets only what its mailbox holds.
func TestForgedFanoutIsNotWritten(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		evil := publisher(t, b)
		victim := uniqueDevice("dev_victim")
		c := dial(t, b, victim)
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		waitConnected(t, b, victim)
		forged, _ := json.Marshal(map[string]any{
			"envelope": map[string]any{"id": "bc_forged", "seq": 0, "conversation": "b_council", "sender_device": "dev_clerk",
				"recipient_device": "", "class": "broadcast", "ciphertext": []byte("Evakuierung! (forged)"), "server_ts": time.Now().UTC()},
			"devices": []map[string]any{{"d": victim, "s": 1}},
		})
		bin := fanoutPayload(t, mailbox.Envelope{ID: "bc_forged", Conversation: "b_council", Sender: "dev_clerk", Class: "broadcast",
			Ciphertext: []byte("Evakuierung! (forged)"), ServerTime: time.Now().UTC()}, victim, 1)
		for _, p := range [][]byte{forged, bin} {
			publish(t, evil, "kanal.mbox.fanout", p)
			publish(t, evil, "kanal.mbox.fanout", append(make([]byte, 32), p...))
		}
		body := []byte("genuine")
		refs, err := store.AppendShared(ctx, mailbox.Envelope{ID: "bc_real", Conversation: "b_council", Sender: "dev_clerk", Ciphertext: body}, []string{victim})
		if err != nil {
			t.Fatal(err)
		}
		a.hub.Fanout(refs, body)
		got := c.collect(1, true)
		if len(got) != 1 || got[0].ID != "bc_real" || string(got[0].Ciphertext) != "genuine" {
			t.Fatalf("the victim's socket got %+v", got)
		}
		for deadline := time.Now().Add(5 * time.Second); b.hub.Stats().Forged < 4; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d forged messages counted, want 4", b.hub.Stats().Forged)
			}
		}
		if slices.ContainsFunc(got, func(e mailbox.Envelope) bool { return e.ID == "bc_forged" }) {
			t.Fatal("forged announcement written")
		}
	})
}

// TestReconnectToEmptyMailbox: a device that has had envelopes, all
// acknowledged, opens its stream again — its mailbox is empty, its head is
// past zero, as for every follower who has read earlier announcements.
// Its stream reads no mailbox after its pings, and takes the next
// broadcast from the fan-out, not from a read of its mailbox.
func TestReconnectToEmptyMailbox(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, _ *node) {
		ctx := context.Background()
		n := newNodeWithPing(t, store, busBeside(t, a), 0, 100*time.Millisecond)
		dev := uniqueDevice("dev_back")
		if err := store.Append(ctx, []mailbox.Envelope{env(dev, "dev_a", "one"), env(dev, "dev_a", "two")}); err != nil {
			t.Fatal(err)
		}
		first := dial(t, n, dev)
		if got := first.collect(2, true); got[1].Seq != 2 {
			t.Fatalf("backlog %+v", got)
		}
		waitDepth(t, store, dev, 0)
		first.ws.CloseNow()

		c := dial(t, n, dev)
		frames := make(chan frame, 16)
		go func() {
			defer close(frames)
			for {
				_, data, err := c.ws.Read(ctx) // reading answers the pings
				if err != nil {
					return
				}
				var f frame
				if json.Unmarshal(data, &f) == nil {
					frames <- f
				}
			}
		}()
		if f := <-frames; f.Type != "synced" || len(f.Envelopes) != 0 {
			t.Fatalf("want synced with nothing before it, got %+v", f)
		}
		waitConnected(t, n, dev)
		before := n.hub.Stats()
		for deadline := time.Now().Add(20 * time.Second); n.hub.Stats().HeadLooks < before.HeadLooks+3; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d pings looked at in 20 s, want 3", n.hub.Stats().HeadLooks-before.HeadLooks)
			}
		}
		if st := n.hub.Stats(); st.Fetches != before.Fetches {
			t.Fatalf("the stream read its empty mailbox %d times over %d pings, want none", st.Fetches-before.Fetches, st.HeadLooks-before.HeadLooks)
		}
		before = n.hub.Stats()
		body := []byte("the next announcement")
		refs, err := store.AppendShared(ctx, mailbox.Envelope{ID: "bc_next", Conversation: "b_council", Sender: "dev_clerk", Ciphertext: body}, []string{dev})
		if err != nil {
			t.Fatal(err)
		}
		n.hub.Fanout(refs, body)
		var f frame
		for f = range frames {
			if f.Type == "envelopes" {
				break
			}
		}
		if len(f.Envelopes) != 1 || f.Envelopes[0].ID != "bc_next" || f.Envelopes[0].Seq != 3 || string(f.Envelopes[0].Ciphertext) != string(body) {
			t.Fatalf("got %+v", f)
		}
		if st := n.hub.Stats(); st.Carried != before.Carried+1 || st.Read != before.Read {
			t.Fatalf("stats %+v → %+v: want the announcement written from the fan-out", before, st)
		}
	})
}

// fanoutPayload is a binary fan-out of e to one device, built from
// docs/api-messaging.md ("Storage and delivery"): 0xa0, the envelope as
// an envelopes frame of one with a u32 length in front, a u16 count,
// then each (device, seq).
func fanoutPayload(t *testing.T, e mailbox.Envelope, device string, seq int64) []byte {
	t.Helper()
	frame, err := wire.AppendEnvelopes(nil, []mailbox.Envelope{e})
	if err != nil {
		t.Fatal(err)
	}
	p := binary.BigEndian.AppendUint32([]byte{0xa0}, uint32(len(frame)))
	p = append(p, frame...)
	p = binary.BigEndian.AppendUint16(p, 1)
	p = append(append(p, byte(len(device))), device...)
	return binary.BigEndian.AppendUint64(p, uint64(seq))
}

// sealed is payload with the tag a node of the deployment puts in front,
// computed as docs/api-messaging.md ("Between nodes") gives it.
func sealed(subject, purpose string, payload []byte) []byte {
	m := hmac.New(sha256.New, testBusKey)
	m.Write([]byte(purpose + "\x00" + subject + "\x00"))
	m.Write(payload)
	return append(m.Sum(nil), payload...)
}

// TestFanoutOfAnEarlierVersion: during a rolling upgrade a node of the
// version before binary fan-outs publishes the JSON payload; this node
// still writes the announcement to the streams of the devices it names,
// from the fan-out. A genuine fan-out that does not decode is counted
// and offers nothing: the device gets only what its mailbox holds.
func TestFanoutOfAnEarlierVersion(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, _, b *node) {
		ctx := context.Background()
		nc := publisher(t, b)
		dev := uniqueDevice("dev_follower")
		c := dial(t, b, dev)
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		waitConnected(t, b, dev)
		body := []byte("announced by a node of the earlier version")
		refs, err := store.AppendShared(ctx, mailbox.Envelope{ID: "bc_old", Conversation: "b_council", Sender: "dev_clerk", Ciphertext: body}, []string{dev})
		if err != nil {
			t.Fatal(err)
		}
		before := b.hub.Stats()
		e := refs[0]
		bad := fanoutPayload(t, mailbox.Envelope{ID: "bc_bad", Seq: 5, Conversation: "b_council", Sender: "dev_clerk", Class: "broadcast",
			Ciphertext: []byte("not what the mailbox holds")}, dev, 1)
		publish(t, nc, "kanal.mbox.fanout", sealed("kanal.mbox.fanout", "kanal mailbox fan-out v1", bad))
		old, _ := json.Marshal(map[string]any{
			"envelope": map[string]any{"id": e.ID, "seq": 0, "conversation": e.Conversation, "sender_device": e.Sender,
				"recipient_device": "", "class": e.Class, "ciphertext": body, "server_ts": e.ServerTime},
			"devices": []map[string]any{{"d": dev, "s": e.Seq}},
		})
		publish(t, nc, "kanal.mbox.fanout", sealed("kanal.mbox.fanout", "kanal mailbox fan-out v1", old))
		got := c.collect(1, true)
		if len(got) != 1 || got[0].ID != "bc_old" || string(got[0].Ciphertext) != string(body) || got[0].Seq != e.Seq {
			t.Fatalf("got %+v", got)
		}
		st := b.hub.Stats()
		if st.Carried-before.Carried != 1 || st.Read != before.Read || st.Undecodable-before.Undecodable != 1 || st.Forged != before.Forged {
			t.Fatalf("stats %+v → %+v: want the JSON fan-out written, the malformed one counted", before, st)
		}
	})
}
