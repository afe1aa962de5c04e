package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// Crossed runs one batch on each of two nodes' group commits at once,
// for tests of locks across nodes on one PostgreSQL: node i's batch is
// bodies[i][0], a barrier, bodies[i][1], queued while its Batcher is held
// so that the three run together in that order. The barrier holds a batch
// after its first body until the other node's batch has reached its own
// barrier or waits for a lock this one holds (pg_blocking_pids, read
// through admin) — whichever comes first — so the interleaving that
// deadlocks is the one that runs whenever the rows are not locked up
// front. Each body enqueues its write on its node's Batcher and returns
// its error; Crossed returns the bodies' errors.
func Crossed(ctx context.Context, admin *db.DB, nodes [2]*db.Batcher, bodies [2][2]func() error) []error {
	arrived := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	barrier := func(i int) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			var pid int
			if err := tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			select {
			case <-arrived[i]: // the batch runs again after a failure
			default:
				close(arrived[i])
			}
			for {
				select {
				case <-arrived[1-i]:
					return nil
				case <-time.After(5 * time.Millisecond):
				}
				var blocking bool
				if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))`, pid).Scan(&blocking); err != nil {
					return err
				}
				if blocking {
					return nil
				}
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	hold := make(chan struct{})
	for i, b := range nodes {
		// A body holds the node's batch worker while the batch is queued.
		running := make(chan struct{})
		go b.Do(ctx, func(*sql.Tx) error { close(running); <-hold; return nil })
		<-running
		queue := []func() error{bodies[i][0], func() error { return b.Do(ctx, barrier(i)) }, bodies[i][1]}
		for k, body := range queue {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := body(); err != nil {
					errs <- fmt.Errorf("node %d, body %d: %w", i, k, err)
				}
			}()
			for b.Stats().Queued < k+2 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	close(hold)
	wg.Wait()
	close(errs)
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// Nodes returns open, which connects to one fresh PostgreSQL schema
// migrated with sets — each call a connection of its own, as each kanald
// node holds one — and admin, a first connection for the test's reads.
func Nodes(t testing.TB, sets ...db.Migrations) (open func() *db.DB, admin *db.DB) {
	t.Helper()
	base := PostgresURL(t)
	url := WithSchema(t, base, NewSchema(t, base))
	open = func() *db.DB {
		d, err := db.OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	admin = open()
	for _, m := range sets {
		if err := admin.Migrate(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	return open, admin
}
