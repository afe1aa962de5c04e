package push_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/push"
	"github.com/kanal-server/kanal/messaging/push/pushtest"
)

// TestSlowPushOutcomeRecorded: a push service that takes longer to answer
// than the outcome's write may take still gets its push recorded as sent —
// once. The write's deadline starts after the send.
func TestSlowPushOutcomeRecorded(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.StoreTimeout = 150 * time.Millisecond })
		f.subscribe(t, "dev-b")
		f.ps.Delay(500 * time.Millisecond)
		f.deliver(t, "dev-b", "message")
		f.ps.WaitFor(t, 10*time.Second, "the slow push", func(ps []pushtest.Push) bool { return delivered(ps) == 1 })
		waitDepth(t, f.svc, 0)
		if st := f.svc.Stats(); st.Sent != 1 || st.Retried != 0 {
			t.Fatalf("stats %+v, want one push sent and none retried", st)
		}
	})
}

// TestStopDuringSlowPush: a push interrupted by shutdown after the outcome
// timeout is due at once for the next start, not after the claim's lease.
func TestStopDuringSlowPush(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.StoreTimeout = 150 * time.Millisecond; o.RequestTimeout = time.Minute })
		f.subscribe(t, "dev-b")
		f.ps.Answer(pushtest.Hang)
		f.deliver(t, "dev-b", "message")
		for f.ps.Hanging() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(400 * time.Millisecond) // longer than StoreTimeout
		f.stop()
		o := testOptions(d, f.mbox, f.ps, f.sealKey)
		o.RequestTimeout = time.Minute // the lease is a minute and a half
		again, err := push.New(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		f.start(t, again)
		f.ps.WaitFor(t, 10*time.Second, "the push after restart", func(ps []pushtest.Push) bool { return delivered(ps) == 1 })
	})
}

// TestHangingHostDoesNotStarveOthers: devices on a push service that hangs
// take at most their host's share of the workers; a device on another
// push service is woken while they hang.
func TestHangingHostDoesNotStarveOthers(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		hang, ok := pushtest.New(t), pushtest.New(t)
		hang.AnswerAlways(pushtest.Hang)
		pool := x509.NewCertPool()
		pool.AddCert(hang.Certificate())
		pool.AddCert(ok.Certificate())
		f := newFixture(t, d, func(o *push.Options) {
			o.Workers = 4
			o.RequestTimeout = time.Minute
			o.HostBusyDelay = 50 * time.Millisecond
			o.HTTPClient = push.NewHTTPClient(pool, push.HostList{"127.0.0.1"})
		})
		ctx := context.Background()
		for _, dev := range []string{"h1", "h2", "h3", "h4", "h5", "h6"} {
			if _, err := f.svc.Subscribe(ctx, dev, hang.Subscribe(t).Request()); err != nil {
				t.Fatal(err)
			}
			f.deliver(t, dev, "message")
		}
		deadline := time.Now().Add(10 * time.Second)
		for hang.Hanging() < 2 {
			if time.Now().After(deadline) {
				t.Fatal("the hanging service never got its requests")
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // every poll in between had the chance to hand it more
		if n := hang.Hanging(); n != 2 {
			t.Fatalf("%d requests held by one push service, want its share of 2 of 4 workers", n)
		}
		if _, err := f.svc.Subscribe(ctx, "healthy", ok.Subscribe(t).Request()); err != nil {
			t.Fatal(err)
		}
		f.deliver(t, "healthy", "message")
		ok.WaitFor(t, 10*time.Second, "the healthy device's push", func(ps []pushtest.Push) bool {
			return len(ps) == 1 && ps[0].Status == http.StatusCreated
		})
	})
}
