package push_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/push"
	"github.com/kanal-server/kanal/messaging/push/pushtest"
)

// TestWakeUp is the basic promise: an envelope that waits in an offline
// device's mailbox brings exactly one push, signed with the deployment's
// VAPID key and carrying only the opaque wake-up.
func TestWakeUp(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, nil)
		sub := f.subscribe(t, "dev-b")
		f.deliver(t, "dev-b", "message")
		ps := f.ps.WaitFor(t, 10*time.Second, "one push", func(ps []pushtest.Push) bool { return len(ps) >= 1 })
		p := ps[0]
		if p.Err != nil || p.Status != http.StatusCreated || p.Subscriber != sub.ID {
			t.Fatalf("push: %+v", p)
		}
		if string(p.Payload) != `{"v":1,"t":"wake"}` {
			t.Fatalf("payload %q", p.Payload)
		}
		if p.VAPIDKey != f.svc.PublicKey() || p.Claims.Sub != "mailto:ops@example.org" {
			t.Fatalf("VAPID key %s sub %s, want %s", p.VAPIDKey, p.Claims.Sub, f.svc.PublicKey())
		}
		if p.Topic != push.Topic || p.Urgency != "normal" || p.TTL != "86400" {
			t.Fatalf("headers: topic %q urgency %q ttl %q", p.Topic, p.Urgency, p.TTL)
		}
		waitDepth(t, f.svc, 0)
		time.Sleep(300 * time.Millisecond) // several grace periods and polls
		if n := len(f.ps.Pushes()); n != 1 {
			t.Fatalf("%d pushes for one envelope", n)
		}
		if st := f.svc.Stats(); st.Sent != 1 || st.Failed != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func waitDepth(t *testing.T, s *push.Service, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := s.QueueDepth(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue depth %d, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoPushWhenNotNeeded: envelopes acknowledged within the grace period
// (the device is live, on whichever node), receipts alone, and devices
// without a subscription bring no push.
func TestNoPushWhenNotNeeded(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.Grace = 300 * time.Millisecond })
		f.subscribe(t, "dev-live")
		f.subscribe(t, "dev-receipt")
		e := f.deliver(t, "dev-live", "message")
		if _, err := f.mbox.Ack(context.Background(), "dev-live", []string{e.ID}); err != nil {
			t.Fatal(err)
		}
		f.deliver(t, "dev-receipt", "receipt")
		f.deliver(t, "dev-unsubscribed", "transaction")
		waitDepth(t, f.svc, 0)
		if ps := f.ps.Pushes(); len(ps) != 0 {
			t.Fatalf("pushes: %+v", ps)
		}
		// A transaction wakes with high urgency.
		f.deliver(t, "dev-receipt", "transaction")
		ps := f.ps.WaitFor(t, 10*time.Second, "a push", func(ps []pushtest.Push) bool { return len(ps) == 1 })
		if ps[0].Urgency != "high" {
			t.Fatalf("urgency %q for a transaction", ps[0].Urgency)
		}
	})
}

// TestCoalescing: a hundred envelopes for an offline device bring a
// bounded number of pushes, not a hundred: one job per device, and at
// least MinInterval between two pushes to it.
func TestCoalescing(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, nil)
		f.subscribe(t, "dev-b")
		start := time.Now()
		for range 100 {
			f.deliver(t, "dev-b", "message") // one commit each, as 100 sends
		}
		burst := time.Since(start)
		f.ps.WaitFor(t, 10*time.Second, "a push", func(ps []pushtest.Push) bool { return len(ps) >= 1 })
		waitDepth(t, f.svc, 0)
		ps := f.ps.Pushes()
		// The first push after the grace period, then at most one per
		// MinInterval (1s here) while envelopes keep coming.
		if limit := 2 + int(burst/time.Second); len(ps) > limit {
			t.Fatalf("%d pushes for 100 envelopes over %s, want at most %d", len(ps), burst, limit)
		}
		for i := 1; i < len(ps); i++ {
			if gap := ps[i].At.Sub(ps[i-1].At); gap < time.Second {
				t.Fatalf("push %d came %s after the previous one, inside the minimum interval", i, gap)
			}
		}
		t.Logf("100 envelopes over %s: %d pushes", burst.Round(time.Millisecond), len(ps))
	})
}

// TestPushServiceAnswers: 410 and 404 remove the subscription; 429 and 500
// are retried with backoff until they succeed; other refusals are given up.
func TestPushServiceAnswers(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newFixture(t, d, nil)

		for _, status := range []int{http.StatusGone, http.StatusNotFound} {
			f.subscribe(t, "dev-gone")
			before := len(f.ps.Pushes())
			f.ps.Answer(status)
			f.deliver(t, "dev-gone", "message")
			f.ps.WaitFor(t, 10*time.Second, "the push", func(ps []pushtest.Push) bool { return len(ps) > before })
			waitDepth(t, f.svc, 0)
			if _, err := f.svc.Subscription(ctx, "dev-gone"); err != push.ErrNoSubscription {
				t.Fatalf("after %d the subscription is still there (%v)", status, err)
			}
		}
		if st := f.svc.Stats(); st.Pruned != 2 {
			t.Fatalf("stats %+v", st)
		}

		f.subscribe(t, "dev-retry")
		f.ps.Answer(http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable)
		f.deliver(t, "dev-retry", "message")
		ps := f.ps.WaitFor(t, 20*time.Second, "a delivered push", func(ps []pushtest.Push) bool { return delivered(ps) == 1 })
		ps = ps[len(ps)-4:]
		for i, want := range []int{429, 500, 503, 201} {
			if ps[i].Status != want {
				t.Fatalf("attempt %d answered %d, want %d", i, ps[i].Status, want)
			}
		}
		// 429 came with Retry-After: 1, which outweighs the 50ms backoff.
		if gap := ps[1].At.Sub(ps[0].At); gap < time.Second {
			t.Fatalf("retry %s after a 429 with Retry-After: 1", gap)
		}
		if _, err := f.svc.Subscription(ctx, "dev-retry"); err != nil {
			t.Fatalf("a retried subscription was removed: %v", err)
		}

		f.subscribe(t, "dev-refused")
		f.ps.Answer(http.StatusForbidden)
		f.deliver(t, "dev-refused", "message")
		f.ps.WaitFor(t, 10*time.Second, "the 403", func(ps []pushtest.Push) bool { return ps[len(ps)-1].Status == 403 })
		waitDepth(t, f.svc, 0)
		if st := f.svc.Stats(); st.Sent != 1 || st.Retried != 3 || st.Failed != 1 || st.Pruned != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestGivesUp: a push service that keeps failing is tried MaxAttempts
// times, with growing delays, and then the job is dropped.
func TestGivesUp(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.MaxAttempts = 4 })
		f.ps.AnswerAlways(http.StatusInternalServerError)
		f.subscribe(t, "dev-b")
		f.deliver(t, "dev-b", "message")
		ps := f.ps.WaitFor(t, 10*time.Second, "4 attempts", func(ps []pushtest.Push) bool { return len(ps) >= 4 })
		waitDepth(t, f.svc, 0)
		time.Sleep(500 * time.Millisecond) // longer than MaxBackoff
		if n := len(f.ps.Pushes()); n != 4 {
			t.Fatalf("%d attempts, want 4", n)
		}
		// Backoff 50ms·2^(n-1), at least half of it: 25, 50, 100ms.
		for i, min := range []time.Duration{25, 50, 100} {
			if gap := ps[i+1].At.Sub(ps[i].At); gap < min*time.Millisecond {
				t.Errorf("retry %d after %s, want ≥ %dms", i+1, gap, min)
			}
		}
		if st := f.svc.Stats(); st.Failed != 1 || st.Retried != 3 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestRestartKeepsPendingPush: a job in backoff when the service stops is
// sent by the next service on the same database.
func TestRestartKeepsPendingPush(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.BaseBackoff = 2 * time.Second; o.MaxBackoff = 2 * time.Second })
		f.subscribe(t, "dev-b")
		f.ps.Answer(http.StatusInternalServerError)
		f.deliver(t, "dev-b", "message")
		f.ps.WaitFor(t, 10*time.Second, "the 500", func(ps []pushtest.Push) bool { return len(ps) == 1 })
		f.stop()
		if n, _ := f.svc.QueueDepth(context.Background()); n != 1 {
			t.Fatalf("queue depth %d after stop, want the job kept", n)
		}
		o := testOptions(d, f.mbox, f.ps, f.sealKey)
		o.BaseBackoff = 2 * time.Second
		again, err := push.New(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if again.PublicKey() != f.svc.PublicKey() {
			t.Fatal("the VAPID key changed across a restart")
		}
		f.start(t, again)
		f.ps.WaitFor(t, 10*time.Second, "the retried push", func(ps []pushtest.Push) bool { return delivered(ps) == 1 })
	})
}

// TestNotifiedDuringStopIsKept: a notification that arrives just before
// Run stops is written to the queue, not lost.
func TestNotifiedDuringStopIsKept(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.Grace = time.Hour })
		f.subscribe(t, "dev-b")
		f.deliver(t, "dev-b", "message")
		f.stop()
		if n, _ := f.svc.QueueDepth(context.Background()); n != 1 {
			t.Fatalf("queue depth %d, want 1", n)
		}
	})
}

// TestHangingPushService: a push service that never answers holds one
// worker until the request timeout; Notify still returns at once, other
// devices' pushes go out, and stopping does not wait for the hang.
func TestHangingPushService(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.RequestTimeout = time.Minute })
		f.subscribe(t, "dev-hang")
		f.subscribe(t, "dev-ok")
		f.ps.Answer(pushtest.Hang)
		f.deliver(t, "dev-hang", "message")
		for f.ps.Hanging() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		f.deliver(t, "dev-ok", "message")
		f.ps.WaitFor(t, 10*time.Second, "the other device's push", func(ps []pushtest.Push) bool { return delivered(ps) == 1 })
		waitDepth(t, f.svc, 1)
		f.stop() // cancels the hanging request
		if n, _ := f.svc.QueueDepth(context.Background()); n != 1 {
			t.Fatalf("queue depth %d: the hung job must stay for the next start", n)
		}
	})
}

// TestVAPIDKeySealed: the key survives a restart only with the same seal
// key, and the database holds no plain private key.
func TestVAPIDKeySealed(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newFixture(t, d, nil)
		o := testOptions(d, f.mbox, f.ps, make([]byte, 32))
		if _, err := push.New(ctx, o); err == nil || !strings.Contains(err.Error(), "another deployment secret") {
			t.Fatalf("loaded the VAPID key with another seal key: %v", err)
		}
		var pub, sealed string
		if err := d.QueryRow(ctx, `SELECT public_key, sealed_private FROM push_vapid`).Scan(&pub, &sealed); err != nil {
			t.Fatal(err)
		}
		if pub != f.svc.PublicKey() || len(sealed) < 60 {
			t.Fatalf("stored %s / %d bytes sealed", pub, len(sealed))
		}
	})
}

// TestLogsKeepEndpointsSecret: an endpoint is a capability URL; when a
// push fails, the log names the push service's host, never the endpoint.
func TestLogsKeepEndpointsSecret(t *testing.T) {
	d := dbtest.SQLite(t, sets...)
	var logs syncBuffer
	f := newFixture(t, d, func(o *push.Options) {
		o.RequestTimeout = 100 * time.Millisecond
		o.MaxAttempts = 2
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	f.ps.AnswerAlways(pushtest.Hang)
	sub := f.subscribe(t, "dev-b")
	f.deliver(t, "dev-b", "message")
	f.ps.WaitFor(t, 10*time.Second, "two attempts", func(ps []pushtest.Push) bool { return len(ps) >= 2 })
	waitDepth(t, f.svc, 0)
	f.stop()
	out := logs.String()
	if !strings.Contains(out, "push: giving up") || !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("log lacks the failure:\n%s", out)
	}
	if strings.Contains(out, sub.ID) || strings.Contains(out, "/push/") {
		t.Fatalf("log shows the endpoint:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRecoveryAfterLostNotify: a crash between an envelope's commit and
// the queue write loses the notification; the next start finds the device
// (envelope newer than its last push, no job) and pushes it. A device
// whose waiting envelopes are older than its last push is not pushed again.
func TestRecoveryAfterLostNotify(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newFixture(t, d, nil)
		lost := f.subscribe(t, "dev-lost")
		old := f.subscribe(t, "dev-old")
		f.stop()
		for _, dev := range []string{"dev-lost", "dev-old"} {
			// Committed, but the notification died with the process.
			if err := f.mbox.Append(ctx, []mailbox.Envelope{{Recipient: dev, Sender: "s", Conversation: "c", Class: "message", Ciphertext: []byte("x")}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := d.Exec(ctx, `UPDATE push_subscriptions SET last_sent_at = $1 WHERE device_id = 'dev-old'`, time.Now().Add(time.Minute).UnixMilli()); err != nil {
			t.Fatal(err)
		}
		again, err := push.New(ctx, testOptions(d, f.mbox, f.ps, f.sealKey))
		if err != nil {
			t.Fatal(err)
		}
		f.start(t, again)
		f.ps.WaitFor(t, 10*time.Second, "the recovered push", func(ps []pushtest.Push) bool { return delivered(ps) == 1 })
		waitDepth(t, again, 0)
		time.Sleep(200 * time.Millisecond)
		for _, p := range f.ps.Pushes() {
			if p.Subscriber != lost.ID || p.Subscriber == old.ID {
				t.Fatalf("push to %s; want only dev-lost's %s", p.Subscriber, lost.ID)
			}
		}
		if n := len(f.ps.Pushes()); n != 1 {
			t.Fatalf("%d pushes", n)
		}
	})
}

// TestNotificationDuringGrace: an envelope that arrives after a device's
// job was queued but before the job falls due is not lost with it. The
// job is taken when the first envelope's grace period ends; the second is
// still inside its own grace then, and must be pushed when that ends.
func TestNotificationDuringGrace(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		const grace = 400 * time.Millisecond
		f := newFixture(t, d, func(o *push.Options) { o.Grace = grace })
		f.subscribe(t, "dev-b")
		f.deliver(t, "dev-b", "receipt") // needs no push
		waitDepth(t, f.svc, 1)
		time.Sleep(grace / 2)
		f.deliver(t, "dev-b", "message")
		ps := f.ps.WaitFor(t, 10*time.Second, "a push for the message", func(ps []pushtest.Push) bool { return len(ps) == 1 })
		if ps[0].Urgency != "normal" {
			t.Fatalf("urgency %q for a message", ps[0].Urgency)
		}
		waitDepth(t, f.svc, 0)
	})
}

// TestManyDevicesInOneFlush: a notification for more devices than one
// queue statement names still queues every subscribed device among them
// (here the first and the last) and no other.
func TestManyDevicesInOneFlush(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, nil)
		first, last := f.subscribe(t, "dev-0"), f.subscribe(t, "dev-1199")
		devices := make([]string, 1200)
		envs := make([]mailbox.Envelope, len(devices))
		for i := range devices {
			devices[i] = fmt.Sprintf("dev-%d", i)
			envs[i] = mailbox.Envelope{Recipient: devices[i], Sender: "sender-dev", Conversation: "conv", Class: "message", Ciphertext: []byte("sealed")}
		}
		if err := f.mbox.Append(context.Background(), envs); err != nil {
			t.Fatal(err)
		}
		f.svc.Notify(devices...)
		ps := f.ps.WaitFor(t, 10*time.Second, "two pushes", func(ps []pushtest.Push) bool { return len(ps) >= 2 })
		waitDepth(t, f.svc, 0)
		got := map[string]int{}
		for _, p := range f.ps.Pushes() {
			got[p.Subscriber]++
		}
		if len(ps) < 2 || got[first.ID] != 1 || got[last.ID] != 1 || len(got) != 2 {
			t.Fatalf("pushes by subscriber %v, want one each for %s and %s", got, first.ID, last.ID)
		}
	})
}

// TestLegacySecretOpensWhatWasSealed: a VAPID key sealed under the old
// (CA-derived) key opens with it as LegacySealKey, keeps its public key,
// is sealed again under the new key, and afterwards opens without the
// legacy key; subscriptions made with the old public key keep working.
func TestLegacySecretOpensWhatWasSealed(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newFixture(t, d, nil) // sealed under f.sealKey: the "old" key
		newKey := bytes.Repeat([]byte{7}, 32)
		o := testOptions(d, f.mbox, f.ps, newKey)
		if _, err := push.New(ctx, o); err == nil {
			t.Fatal("opened the old key without the legacy key")
		}
		o.LegacySealKey = f.sealKey
		again, err := push.New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if again.PublicKey() != f.svc.PublicKey() {
			t.Fatal("the VAPID key changed: every subscription would break")
		}
		o.LegacySealKey = nil
		third, err := push.New(ctx, o)
		if err != nil {
			t.Fatalf("not sealed again under the new key: %v", err)
		}
		if third.PublicKey() != f.svc.PublicKey() {
			t.Fatal("the VAPID key changed")
		}
		if _, err := push.New(ctx, testOptions(d, f.mbox, f.ps, f.sealKey)); err == nil {
			t.Fatal("the old key still opens the resealed VAPID key")
		}
	})
}

// TestLiveDevicePushedWhenItsStreamEnds: a device with a stream on this
// node (Live) gets no job while its stream is live — no queue write per
// commit for it — and when the stream ends (StreamEnded), an envelope it
// did not take still brings its push; one it took brings none.
func TestLiveDevicePushedWhenItsStreamEnds(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		var mu sync.Mutex
		live := map[string]bool{"dev-live": true, "dev-took": true}
		f := newFixture(t, d, func(o *push.Options) {
			o.Grace = 300 * time.Millisecond
			o.Live = func(dev string) bool { mu.Lock(); defer mu.Unlock(); return live[dev] }
		})
		liveSub, tookSub, offSub := f.subscribe(t, "dev-live"), f.subscribe(t, "dev-took"), f.subscribe(t, "dev-off")
		var envs []mailbox.Envelope
		for _, dev := range []string{"dev-live", "dev-took", "dev-off"} {
			envs = append(envs, mailbox.Envelope{Recipient: dev, Sender: "sender-dev", Conversation: "conv", Class: "message", Ciphertext: []byte("sealed")})
		}
		if err := f.mbox.Append(context.Background(), envs); err != nil {
			t.Fatal(err)
		}
		// One notification for the three, as one commit makes: only the
		// device without a stream is queued.
		f.svc.Notify("dev-live", "dev-took", "dev-off")
		waitDepth(t, f.svc, 1)
		var queued string
		if err := d.QueryRow(context.Background(), `SELECT device_id FROM push_jobs`).Scan(&queued); err != nil || queued != "dev-off" {
			t.Fatalf("queued %q (%v), want only dev-off", queued, err)
		}
		f.ps.WaitFor(t, 10*time.Second, "dev-off's push", func(ps []pushtest.Push) bool { return len(forSub(ps, offSub)) == 1 })

		// dev-took acknowledges its envelope, then both streams end.
		if _, err := f.mbox.Ack(context.Background(), "dev-took", []string{envs[1].ID}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		live = map[string]bool{}
		mu.Unlock()
		f.svc.StreamEnded("dev-live")
		f.svc.StreamEnded("dev-took")
		f.ps.WaitFor(t, 10*time.Second, "dev-live's push", func(ps []pushtest.Push) bool { return len(forSub(ps, liveSub)) == 1 })
		waitDepth(t, f.svc, 0)
		if n := len(forSub(f.ps.Pushes(), tookSub)); n != 0 {
			t.Fatalf("%d pushes for a device that took its envelope", n)
		}
	})
}

func forSub(ps []pushtest.Push, sub *pushtest.Subscriber) (out []pushtest.Push) {
	for _, p := range ps {
		if p.Subscriber == sub.ID {
			out = append(out, p)
		}
	}
	return out
}
