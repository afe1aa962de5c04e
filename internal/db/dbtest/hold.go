package dbtest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// Hold queues a plain body on b that waits, and returns once it runs (its
// transaction begun): whatever is queued on b meanwhile commits in the
// batches after it, together as far as b's bound allows. release lets the
// body commit and fails t if it did not.
func Hold(t testing.TB, b *db.Batcher) (release func()) {
	t.Helper()
	ch, running := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- b.Do(context.Background(), func(*sql.Tx) error { close(running); <-ch; return nil })
	}()
	<-running
	return func() {
		t.Helper()
		close(ch)
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	}
}

// Settled waits until b has counted bodies bodies (Stats().Bodies). b
// counts a batch only after its callers have their answers, so a count
// reached means every one of those batches has ended.
func Settled(t testing.TB, b *db.Batcher, bodies uint64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); b.Stats().Bodies < bodies; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the batcher counted %d bodies, want %d", b.Stats().Bodies, bodies)
		}
	}
}
