package db_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestBatcherIsolatesFailures: many concurrent bodies share transactions;
// every body that succeeds is committed, every body that fails leaves no
// trace and reports its own error.
func TestBatcherIsolatesFailures(t *testing.T) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewBatcher(32)
		defer b.Close()
		errOdd := errors.New("odd")
		var wg sync.WaitGroup
		results := make([]error, 200)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = b.Do(ctx, func(tx *sql.Tx) error {
					name := "acct" + string(rune('A'+i%26)) + string(rune('a'+i/26))
					if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, $2)`, name, i); err != nil {
						return err
					}
					if i%2 == 1 {
						return errOdd // after a write: the savepoint must undo it
					}
					return nil
				})
			}()
		}
		wg.Wait()
		for i, err := range results {
			if i%2 == 0 && err != nil {
				t.Fatalf("body %d: %v", i, err)
			}
			if i%2 == 1 && !errors.Is(err, errOdd) {
				t.Fatalf("body %d: got %v, want its own error", i, err)
			}
		}
		var n int
		var sum int64
		if err := d.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(balance), 0) FROM accounts`).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		if n != 100 || sum != 99*100 { // 0+2+…+198
			t.Fatalf("%d rows summing %d, want 100 rows summing 9900", n, sum)
		}
		// A constraint violation inside a body fails that body only.
		err := b.Do(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ('acctAa', 1)`)
			return err
		})
		if !db.IsUniqueViolation(err) {
			t.Fatalf("duplicate insert: %v", err)
		}
		b.Close()
		if err := b.Do(ctx, func(*sql.Tx) error { return nil }); !errors.Is(err, db.ErrBatcherClosed) {
			t.Fatalf("after close: %v", err)
		}
	})
}
