//go:build !js

package mailbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// Attacks by a NATS publisher: whoever can publish on the deployment's NATS
// subjects (a compromised service on the NATS network, a leaked NATS
// credential) but holds neither the CA key nor a device's session. All
// they know are the subject names, which are in the source.

// publisher is the adversary's own NATS connection: a client of the same
// external NATS server, or of the embedded one (which has no listener, so
// the only way in is the node's own connection).
func publisher(t *testing.T, n *node) *nats.Conn {
	t.Helper()
	if n.natsURL == "" {
		return n.bus.Conn()
	}
	nc, err := nats.Connect(n.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func publish(t *testing.T, nc *nats.Conn, subject string, data []byte) {
	t.Helper()
	if err := nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestForgedWakeUpIsNotWritten: a NATS publisher puts a made-up envelope
// for a device into a wake-up — the next sequence number, the device as
// recipient, a ciphertext of their choosing — with no MAC, with a MAC of
// their own, and as a genuine wake-up of another device replayed onto the
// victim's subject. None of it reaches the victim's socket: the victim
// gets exactly the envelopes in its mailbox, in order.
func TestForgedWakeUpIsNotWritten(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		evil := publisher(t, b)
		victim := uniqueDevice("dev_victim")
		other := uniqueDevice("dev_other")
		c := dial(t, b, victim)
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		waitConnected(t, b, victim)

		// The forged envelope takes the sequence number the victim's
		// stream expects next, so that it would be written from the
		// wake-up alone.
		forged := func(seq int64, tag bool) []byte {
			fake := []mailbox.Envelope{{ID: fmt.Sprint("forged-", seq), Seq: seq, Conversation: "conv_1", Sender: "dev_mallory",
				Recipient: victim, Class: "message", Ciphertext: []byte("forged"), ServerTime: time.Now().UTC()}}
			b, _ := wire.AppendEnvelopes(nil, fake) // as a genuine wake-up carries it
			if tag {
				b = append(make([]byte, 32), b...) // a tag of the attacker's choosing
			}
			return b
		}

		// A genuine wake-up of another device, captured off the bus. On
		// the embedded bus the hubs' wake-ups do not pass through NATS
		// (bus.PublishLocal), so none is seen there: it is taken from the
		// node's own bus instead, as the strongest attacker would.
		captured := make(chan []byte, 1)
		if a.natsURL == "" {
			local := make(chan *bus.Msg, 1)
			defer a.bus.LocalSubscribe("kanal.mbox.wake."+other, local)()
			go func() {
				if m, ok := <-local; ok {
					captured <- m.Data
				}
			}()
		} else {
			sub, err := evil.Subscribe("kanal.mbox.wake."+other, func(m *nats.Msg) {
				select {
				case captured <- m.Data:
				default:
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := evil.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		theirs := []mailbox.Envelope{env(other, "dev_a", "theirs")}
		if err := store.Append(ctx, theirs); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(theirs)
		var replay []byte
		select {
		case replay = <-captured:
		case <-time.After(10 * time.Second):
			t.Fatal("the genuine wake-up never crossed the bus")
		}

		// Each forgery, then the real envelope committed after it: the
		// forgery made the stream read the mailbox (empty then) or is read
		// along with the real one; either way the real one is all that comes.
		for i, data := range [][]byte{forged(1, false), forged(2, true), replay} {
			publish(t, evil, "kanal.mbox.wake."+victim, data)
			real := []mailbox.Envelope{env(victim, "dev_a", fmt.Sprint("real ", i))}
			if err := store.Append(ctx, real); err != nil {
				t.Fatal(err)
			}
			a.hub.Deliver(real)
			got := c.collect(1, true)
			if len(got) != 1 || got[0].ID != real[0].ID || string(got[0].Ciphertext) != string(real[0].Ciphertext) {
				t.Fatalf("forgery %d: the victim's socket got %+v, want only the real envelope %s", i, got, real[0].ID)
			}
		}
	})
}

// TestForgedDisconnectClosesNothing: a NATS publisher sends the messages
// that close a device's stream — the revocation subject, and a session
// end naming the device, its account and a family, with no MAC and with a
// made-up one. The victim's stream stays open and keeps receiving.
func TestForgedDisconnectClosesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, store *mailbox.Store, a, b *node) {
		ctx := context.Background()
		evil := publisher(t, b)
		victim := uniqueDevice("dev_victim")
		c := dial(t, b, victim)
		if f, err := c.next(); err != nil || f.Type != "synced" {
			t.Fatalf("want synced, got %+v %v", f, err)
		}
		waitConnected(t, b, victim)

		end, _ := json.Marshal(map[string]any{"reason": "logout", "device": victim, "account": "acc_" + victim,
			"family": "fam_x", "at": time.Now().UnixMilli()})
		for _, m := range []struct {
			subject string
			data    []byte
		}{
			{"kanal.mbox.disconnect." + victim, nil},
			{"kanal.mbox.disconnect." + victim, make([]byte, 32)},
			{"kanal.mbox.end", end},
			{"kanal.mbox.end", append(make([]byte, 32), end...)},
		} {
			publish(t, evil, m.subject, m.data)
		}
		real := []mailbox.Envelope{env(victim, "dev_a", "still here")}
		if err := store.Append(ctx, real); err != nil {
			t.Fatal(err)
		}
		a.hub.Deliver(real)
		if got := c.collect(1, true); got[0].ID != real[0].ID {
			t.Fatalf("got %+v, want %s", got, real[0].ID)
		}
		if !b.hub.Connected(victim) {
			t.Fatal("the victim's stream was closed by a forged message")
		}
	})
}

// TestReplayedSessionEndClosesNothing: a NATS publisher captures a genuine
// session end — a password change, which closes every login of the account
// but one — and replays it later, when the account's owner has logged in
// anew, to close the new streams. Once the session end is older than the
// hub accepts, the replay closes nothing. (The node that gets the replay
// runs its clock two minutes ahead, which is "later" without waiting.)
func TestReplayedSessionEndClosesNothing(t *testing.T) {
	store, bb := sqliteNode(t)
	now := newNode(t, store, bb, 0)
	later := newNodeWith(t, store, bb, 0, 0, func() time.Time { return time.Now().Add(2 * time.Minute) })
	evil := publisher(t, now)
	captured := make(chan []byte, 1)
	sub, err := evil.Subscribe("kanal.mbox.end", func(m *nats.Msg) {
		select {
		case captured <- m.Data:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := evil.Flush(); err != nil {
		t.Fatal(err)
	}
	acc, dev := uniqueDevice("acc"), uniqueDevice("dev_new")
	if err := now.hub.EndSessions(mailbox.SessionEnd{Reason: "password changed", Account: acc, KeepFamily: "fam_kept"}); err != nil {
		t.Fatal(err)
	}
	var replay []byte
	select {
	case replay = <-captured:
	case <-time.After(10 * time.Second):
		t.Fatal("the session end never crossed the bus")
	}
	c := dialSession(t, later, sessionHeader(dev, acc, "fam_new_login"))
	if f, err := c.next(); err != nil || f.Type != "synced" {
		t.Fatalf("want synced, got %+v %v", f, err)
	}
	waitConnected(t, later, dev)
	publish(t, evil, "kanal.mbox.end", replay)
	e := []mailbox.Envelope{env(dev, "dev_a", "after the replay")}
	if err := store.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	now.hub.Deliver(e)
	if got := c.collect(1, true); got[0].ID != e[0].ID {
		t.Fatalf("got %+v", got)
	}
	if !later.hub.Connected(dev) {
		t.Fatal("a replayed session end closed the new login's stream")
	}
}
