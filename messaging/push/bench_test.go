package push_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/push"
)

// BenchmarkNotify is what web push adds to every send: Notify on the send
// path, while the worker writes the queue to SQLite behind it.
func BenchmarkNotify(b *testing.B) {
	f := newFixture(b, dbtest.SQLite(b, sets...), func(o *push.Options) { o.Grace = time.Hour })
	devices := make([]string, 1000)
	for i := range devices {
		devices[i] = fmt.Sprintf("dev-%d", i)
		f.subscribe(b, devices[i])
	}
	b.ResetTimer()
	for i := range b.N {
		f.svc.Notify(devices[i%len(devices)])
	}
}

// BenchmarkWakeUp is one push end to end: the queue, the mailbox check,
// RFC 8291 encryption and VAPID signing, and an https request to the
// test push service (which verifies and decrypts it).
func BenchmarkWakeUp(b *testing.B) {
	f := newFixture(b, dbtest.SQLite(b, sets...), func(o *push.Options) {
		o.Grace = time.Millisecond
		o.MinInterval = time.Millisecond
		o.PollInterval = time.Millisecond
	})
	f.subscribe(b, "dev-b")
	b.ResetTimer()
	for i := range b.N {
		e := f.deliver(b, "dev-b", "message")
		for len(f.ps.Pushes()) <= i {
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		f.mbox.Ack(context.Background(), "dev-b", []string{e.ID})
		b.StartTimer()
	}
}
