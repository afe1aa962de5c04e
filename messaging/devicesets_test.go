package messaging_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
)

// TestSendDeviceSets: with device sets kept in memory, a send still
// addresses exactly the devices that must receive it. A device that
// publishes on this node is required at once; one that publishes through
// another node is accepted at once when a send names it, and required
// once the set's time is up; a revoked device is refused as stale as
// soon as the node is told.
func TestSendDeviceSets(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		const ttl = time.Minute
		e := newSendEnv(t, d, 0, false, func(o *messaging.Options) { o.DeviceSetTTL = ttl })
		// The other node: the same database and directory, its own memory.
		other, err := messaging.New(messaging.Options{DB: d, Directory: e.dir, Auth: testAuth(), Now: func() time.Time { return *e.now },
			Mailbox: e.mb, Notary: e.dir.notary(t), DeviceSetTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		publishElsewhere := func(account, id string) {
			t.Helper()
			dev := e.dir.enroll(t, account, id, false)
			if _, err := other.Publish(context.Background(), dev.caller(), dev.publishRequest(t)); err != nil {
				t.Fatal(err)
			}
		}
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		n := 0
		send := func(wantStatus int, ids ...string) map[string]any {
			t.Helper()
			n++
			st, _, out := e.post(alice, toAccount("bob", "m"+strconv.Itoa(n), ids...))
			if st != wantStatus {
				t.Fatalf("send to %v: %d %v, want %d", ids, st, out, wantStatus)
			}
			return out
		}
		send(201, "bob-phone") // the sets of alice and bob are now kept

		e.enroll("bob", "bob-tablet", false) // published on this node
		out := send(409, "bob-phone")
		if got := strs(out["missing"]); len(got) != 1 || got[0] != "bob-tablet" {
			t.Fatalf("missing %v, want bob-tablet", got)
		}
		send(201, "bob-phone", "bob-tablet")

		publishElsewhere("bob", "bob-laptop")
		send(201, "bob-phone", "bob-laptop", "bob-tablet") // asked again, not refused
		send(409, "bob-phone", "bob-tablet")               // and now known here

		publishElsewhere("bob", "bob-watch")
		*e.now = e.now.Add(ttl + time.Second)
		send(409, "bob-laptop", "bob-phone", "bob-tablet")
		send(201, "bob-laptop", "bob-phone", "bob-tablet", "bob-watch")

		e.dir.revoke("bob-tablet")
		e.svc.ForgetDevice("bob-tablet")
		out = send(409, "bob-laptop", "bob-phone", "bob-tablet", "bob-watch")
		if got := strs(out["stale"]); len(got) != 1 || got[0] != "bob-tablet" {
			t.Fatalf("stale %v, want bob-tablet", got)
		}
		send(201, "bob-laptop", "bob-phone", "bob-watch")
	})
}

// TestAttackRevokedDeviceSendsOnStream: the adversary holds a device that
// was just revoked and a stream the node has not closed yet. The node
// knew the device (its account's set is kept in memory), but a send frame
// from it is refused once the node has been told of the revocation, and
// nothing is stored.
func TestAttackRevokedDeviceSendsOnStream(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false, func(o *messaging.Options) { o.DeviceSetTTL = time.Hour })
		mallory := e.enroll("mallory", "mallory-phone", true)
		e.enroll("bob", "bob-phone", false)
		frame := func(clientID string) json.RawMessage {
			req := toAccount("bob", clientID, "bob-phone")
			raw, _ := json.Marshal(messaging.SendFrame{Type: "send", Ref: clientID, Request: req})
			return raw
		}
		reply, err := e.svc.Frames(context.Background(), mallory.id, "send", frame("before"))
		if _, ok := reply.(messaging.SentFrame); err != nil || !ok {
			t.Fatalf("send before revocation: %#v %v", reply, err)
		}
		e.dir.revoke(mallory.id)
		e.svc.ForgetDevice(mallory.id)
		en0, sn0 := e.stored()
		reply, err = e.svc.Frames(context.Background(), mallory.id, "send", frame("after"))
		if err == nil {
			t.Fatalf("send after revocation answered %#v", reply)
		}
		if en, sn := e.stored(); en != en0 || sn != sn0 {
			t.Fatalf("stored %d envelopes, %d sends after revocation", en-en0, sn-sn0)
		}
	})
}
