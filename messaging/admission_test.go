package messaging_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
)

// holdBatcher queues a body in b that waits until the returned release is
// called, and returns once b counts it as queued.
func holdBatcher(t *testing.T, b *db.Batcher) (release func()) {
	t.Helper()
	ch, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- b.Do(context.Background(), func(*sql.Tx) error { <-ch; return nil })
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if b.Stats().Queued >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held body was never queued")
		}
	}
	var released bool
	release = func() {
		if !released {
			released = true
			close(ch)
			if err := <-done; err != nil {
				t.Errorf("held body: %v", err)
			}
		}
	}
	t.Cleanup(release)
	return release
}

// TestSendAdmission: while the group commit is deeper than its bound (here
// one body: a deliberately tiny bound), a send is refused at once, over
// HTTP with 503, Retry-After and the overloaded problem, on the stream
// with a send_failed frame for its ref (the stream goes on); nothing of it
// is stored and it does not count against the sender's send limit. Once
// the queue drains, the same request (same client_id) is stored once.
func TestSendAdmission(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b := d.NewAdmittingBatcher(8, db.Admission{MaxQueue: 1})
		t.Cleanup(b.Close)
		e := newSendEnv(t, d, 2, false, func(o *messaging.Options) { o.Batcher = b })
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)

		release := holdBatcher(t, b)
		for i := range 3 {
			st, h, out := e.post(alice, toAccount("bob", "m1", "bob-phone"))
			wantProblem(t, st, out, 503, messaging.TypeOverloaded)
			ra, err := strconv.Atoi(h.Get("Retry-After"))
			if err != nil || ra < 1 || out["retry_after"] != float64(ra) {
				t.Fatalf("attempt %d: Retry-After %q, retry_after %v", i, h.Get("Retry-After"), out["retry_after"])
			}
		}
		frame, _ := json.Marshal(messaging.SendFrame{Type: "send", Ref: "r1", Request: toAccount("bob", "m2", "bob-phone")})
		reply, err := e.svc.Frames(context.Background(), alice.id, "send", frame)
		if err != nil {
			t.Fatalf("a refused send on the stream must not end it: %v", err)
		}
		f, ok := reply.(messaging.SendFailedFrame)
		if !ok || f.Ref != "r1" || f.Problem.Status != 503 || f.Problem.Type != messaging.TypeOverloaded || f.Problem.Extra["retry_after"] == nil {
			t.Fatalf("stream answer %#v", reply)
		}
		if en, sn := e.stored(); en != 0 || sn != 0 {
			t.Fatalf("refused sends stored %d envelopes and %d send rows", en, sn)
		}

		// Drained: both go through once (the limit is 2: the refusals
		// were not counted), and a retry gets the first answer.
		release()
		st, _, first := e.post(alice, toAccount("bob", "m1", "bob-phone"))
		if st != 201 {
			t.Fatalf("after the queue drained: %d %v", st, first)
		}
		reply, err = e.svc.Frames(context.Background(), alice.id, "send", frame)
		if _, ok := reply.(messaging.SentFrame); err != nil || !ok {
			t.Fatalf("stream send after the queue drained: %#v %v", reply, err)
		}
		st, _, again := e.post(alice, toAccount("bob", "m1", "bob-phone"))
		if st != 200 || again["envelope_ids"].(map[string]any)["bob-phone"] != first["envelope_ids"].(map[string]any)["bob-phone"] {
			t.Fatalf("retry: %d %v, first %v", st, again, first)
		}
		if en, sn := e.stored(); en != 2 || sn != 2 {
			t.Fatalf("stored %d envelopes and %d send rows, want 2 and 2", en, sn)
		}
	})
}

// TestSendAdmissionMeasured: without a fixed bound, the bound is the
// measured commit rate times MaxDelay, never below MinQueue; with a
// MaxDelay so short that the rate allows nothing, a queue of MinQueue
// bodies refuses sends, and an empty one admits them.
func TestSendAdmissionMeasured(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b := d.NewAdmittingBatcher(8, db.Admission{MaxDelay: time.Nanosecond, MinQueue: 1})
		t.Cleanup(b.Close)
		e := newSendEnv(t, d, 0, false, func(o *messaging.Options) { o.Batcher = b })
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		if st, _, out := e.post(alice, toAccount("bob", "m1", "bob-phone")); st != 201 {
			t.Fatalf("empty queue: %d %v", st, out)
		}
		// The batcher measures a batch after its callers have their
		// answers: wait for the figure.
		for deadline := time.Now().Add(30 * time.Second); b.Stats().Capacity <= 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("capacity %v after a commit", b.Stats().Capacity)
			}
		}
		holdBatcher(t, b)
		st, _, out := e.post(alice, toAccount("bob", "m2", "bob-phone"))
		wantProblem(t, st, out, 503, messaging.TypeOverloaded)
		var oe *db.OverloadError
		err := b.TryDoMerged(context.Background(), nil, nil, func(*sql.Tx) error { t.Error("a refused body ran"); return nil })
		if !errors.As(err, &oe) || oe.Bound != 1 || oe.Queued < 1 || oe.RetryAfter < time.Second {
			t.Fatalf("TryDoMerged: %v", err)
		}
	})
}

// TestSendAdmissionInFlight: the bound on sends in flight (here one)
// refuses a send that arrives while another is between arrival and
// answer — over HTTP before its session is even checked, on the stream
// with a send_failed for its ref — and the refusal stores nothing. Once
// the first is answered, the next is admitted.
func TestSendAdmissionInFlight(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b := d.NewBatcher(8)
		t.Cleanup(b.Close)
		e := newSendEnv(t, d, 0, false, func(o *messaging.Options) {
			o.Batcher, o.Admission = b, db.Admission{MaxQueue: 1}
		})
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		release := holdBatcher(t, b)
		first := make(chan int, 1)
		go func() {
			st, _, _ := e.post(alice, toAccount("bob", "m1", "bob-phone"))
			first <- st
		}()
		for deadline := time.Now().Add(30 * time.Second); e.svc.SendStats().InFlight < 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the first send never came in")
			}
		}
		st, h, out := e.post(&device{id: "nobody", account: "nobody"}, toAccount("bob", "m2", "bob-phone"))
		wantProblem(t, st, out, 503, messaging.TypeOverloaded)
		if h.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		frame, _ := json.Marshal(messaging.SendFrame{Type: "send", Ref: "r2", Request: toAccount("bob", "m3", "bob-phone")})
		reply, err := e.svc.Frames(context.Background(), alice.id, "send", frame)
		if f, ok := reply.(messaging.SendFailedFrame); err != nil || !ok || f.Ref != "r2" || f.Problem.Type != messaging.TypeOverloaded {
			t.Fatalf("stream answer %#v %v", reply, err)
		}
		if st := e.svc.SendStats(); st.Refused != 2 || st.InFlight != 1 {
			t.Fatalf("stats %+v, want 2 refused and 1 in flight", st)
		}
		release()
		if st := <-first; st != 201 {
			t.Fatalf("the admitted send: %d", st)
		}
		if en, sn := e.stored(); en != 1 || sn != 1 {
			t.Fatalf("stored %d envelopes and %d send rows, want only the admitted send's", en, sn)
		}
		if st, _, out := e.post(alice, toAccount("bob", "m2", "bob-phone")); st != 201 {
			t.Fatalf("after the first was answered: %d %v", st, out)
		}
	})
}

// TestAttackSlowBodiesHoldNoPlace: clients open sends and then send their
// bodies slowly — without a session, and with alice's valid one — more of
// them than the gate's bound. None of them takes a place in flight while
// its body is still coming, so alice's honest send is stored, not
// refused as overloaded.
func TestAttackSlowBodiesHoldNoPlace(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b := d.NewBatcher(8)
		t.Cleanup(b.Close)
		e := newSendEnv(t, d, 0, false, func(o *messaging.Options) {
			o.Batcher, o.Admission = b, db.Admission{MaxQueue: 2}
		})
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		addr := strings.TrimPrefix(e.ts.URL, "http://")
		for i := range 6 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			auth := "Test nobody nobody"
			if i%2 == 1 {
				auth = "Test " + alice.account + " " + alice.id
			}
			// The headers and the first bytes of a 4,000-byte body; the rest never comes.
			if _, err := fmt.Fprintf(c, "POST /v1/messages HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"to\":", addr, auth); err != nil {
				t.Fatal(err)
			}
		}
		// Give the server time to have read what the six sent (a place
		// taken by any of them would show in InFlight from then on).
		time.Sleep(500 * time.Millisecond)
		if st := e.svc.SendStats(); st.InFlight != 0 {
			t.Fatalf("%d sends in flight while only slow bodies are open", st.InFlight)
		}
		if st, _, out := e.post(alice, toAccount("bob", "m1", "bob-phone")); st != 201 {
			t.Fatalf("alice's send beside six slow bodies: %d %v", st, out)
		}
		if en, sn := e.stored(); en != 1 || sn != 1 {
			t.Fatalf("stored %d envelopes and %d send rows, want alice's one", en, sn)
		}
	})
}
