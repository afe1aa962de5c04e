package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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

// accountMerger inserts accounts, one multi-row statement per batch.
type accountMerger struct {
	mu      sync.Mutex
	written int // items written by MergeTx in transactions that committed or not
}

type account struct {
	name    string
	balance int
}

func (m *accountMerger) MergeTx(ctx context.Context, tx *sql.Tx, items []any) error {
	q := `INSERT INTO accounts (name, balance) VALUES `
	var args []any
	for i, it := range items {
		a := it.(account)
		if i > 0 {
			q += ", "
		}
		q += fmt.Sprintf("($%d, $%d)", 2*i+1, 2*i+2)
		args = append(args, a.name, a.balance)
	}
	m.mu.Lock()
	m.written += len(items)
	m.mu.Unlock()
	_, err := tx.ExecContext(ctx, q, args...)
	return err
}

// TestBatcherMerged: items queued with DoMerged are written by their
// Merger together with plain bodies; when one of them fails (a second
// insert of a name), each runs alone through its own body, so only the
// failing caller sees the error and every other item is committed once.
func TestBatcherMerged(t *testing.T) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewBatcher(32)
		defer b.Close()
		m := &accountMerger{}
		var wg sync.WaitGroup
		results := make([]error, 300)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Every tenth item repeats the name of the one before it;
				// every seventh is a plain body.
				n := i
				if i%10 == 9 {
					n = i - 1
				}
				a := account{name: fmt.Sprintf("acct%03d", n), balance: i}
				insert := func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, $2)`, a.name, a.balance)
					return err
				}
				if i%7 == 0 {
					results[i] = b.Do(ctx, insert)
				} else {
					results[i] = b.DoMerged(ctx, m, a, insert)
				}
			}()
		}
		wg.Wait()
		failed := 0
		for i, err := range results {
			switch {
			case err == nil:
			case i%10 == 9 || i%10 == 8:
				if !db.IsUniqueViolation(err) {
					t.Fatalf("item %d: %v, want a unique violation", i, err)
				}
				failed++
			default:
				t.Fatalf("item %d: %v", i, err)
			}
		}
		if failed != 30 {
			t.Fatalf("%d items failed, want one of each of the 30 pairs", failed)
		}
		var n int
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 270 {
			t.Fatalf("%d rows, want 270", n)
		}
		if m.written == 0 {
			t.Fatal("the merger wrote nothing: merged items ran only alone")
		}
	})
}

// TestBatcherFailureInLargeBatch: one failing body in a batch of 64
// fails alone, and the other 63 are committed in a few transactions — the
// batch halved down to the failing body — not in 63 of their own, and
// in the order they were queued.
func TestBatcherFailureInLargeBatch(t *testing.T) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		const n = 64
		b := d.NewBatcher(n)
		defer b.Close()
		hold, entered := make(chan struct{}), make(chan struct{})
		held := make(chan error, 1)
		go func() { held <- b.Do(ctx, func(*sql.Tx) error { close(entered); <-hold; return nil }) }()
		// The held body runs before the others are queued: queued is not
		// enough, for the writer could take the first of the 64 into the
		// held body's batch.
		<-entered
		const bad = 37
		errBad := errors.New("bad body")
		var mu sync.Mutex
		committed := map[*sql.Tx][]int{} // the transaction each body last ran in
		last := map[int]*sql.Tx{}
		results := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = b.Do(ctx, func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, $2)`, fmt.Sprintf("acct%02d", i), i); err != nil {
						return err
					}
					if i == bad {
						return errBad
					}
					mu.Lock()
					last[i] = tx
					mu.Unlock()
					return nil
				})
			}()
			// One at a time into the queue, so the batch holds them in
			// the order of i.
			for b.Stats().Queued < int(i)+2 {
				time.Sleep(time.Millisecond)
			}
		}
		close(hold)
		wg.Wait()
		if err := <-held; err != nil {
			t.Fatal(err)
		}
		for i, err := range results {
			if i == bad && !errors.Is(err, errBad) {
				t.Fatalf("the bad body: %v, want its own error", err)
			}
			if i != bad && err != nil {
				t.Fatalf("body %d: %v", i, err)
			}
		}
		for i, tx := range last {
			committed[tx] = append(committed[tx], i)
		}
		// Halving 64 around one body commits the other 63 in 6
		// transactions (32, 16, 8, 4, 2, 1 bodies: log2(64)); body by body
		// would be 63.
		if len(committed) != 6 {
			t.Fatalf("the 63 good bodies committed in %d transactions, want 6: %v", len(committed), committed)
		}
		var names []string
		rows, err := d.Query(ctx, `SELECT name FROM accounts ORDER BY rowid`)
		if d.Dialect() != db.SQLite {
			rows, err = d.Query(ctx, `SELECT name FROM accounts ORDER BY xmin::text::bigint, name`)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			names = append(names, s)
		}
		if len(names) != n-1 {
			t.Fatalf("%d rows, want %d", len(names), n-1)
		}
		for k, s := range names {
			want := k
			if k >= bad {
				want = k + 1
			}
			if s != fmt.Sprintf("acct%02d", want) {
				t.Fatalf("row %d is %s, want acct%02d: not committed in queue order", k, s, want)
			}
		}
	})
}

// TestRows: multi-row statements come in powers of two, never above the
// limit, and always take at least one row.
func TestRows(t *testing.T) {
	for _, c := range []struct{ n, limit, want int }{
		{1, 64, 1}, {2, 64, 2}, {3, 64, 2}, {63, 64, 32}, {64, 64, 64}, {65, 64, 64}, {1000, 256, 256}, {5, 3, 2}, {7, 1, 1},
	} {
		if got := db.Rows(c.n, c.limit); got != c.want {
			t.Errorf("Rows(%d, %d) = %d, want %d", c.n, c.limit, got, c.want)
		}
	}
}

func TestValues(t *testing.T) {
	for _, c := range []struct {
		rows, cols int
		want       string
	}{
		{1, 1, "($1)"},
		{2, 2, "($1, $2), ($3, $4)"},
		{3, 5, "($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10), ($11, $12, $13, $14, $15)"},
	} {
		for range 2 { // built, then from the cache
			if got := db.Values(c.rows, c.cols); got != c.want {
				t.Errorf("Values(%d, %d) = %q, want %q", c.rows, c.cols, got, c.want)
			}
		}
	}
}

// TestBatcherAdmission: past the Admission bound, TryDoMerged refuses at
// once without running anything, with a RetryAfter of at least a second,
// while Do and DoMerged — the work that drains a queue — are queued all
// the same and committed once the queue moves.
func TestBatcherAdmission(t *testing.T) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewAdmittingBatcher(4, db.Admission{MaxQueue: 2})
		defer b.Close()
		m := &accountMerger{}
		insert := func(name string) func(tx *sql.Tx) error {
			return func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, 1)`, name)
				return err
			}
		}
		if err := b.TryDoMerged(ctx, m, account{name: "first", balance: 1}, insert("first")); err != nil {
			t.Fatalf("an empty queue refused: %v", err)
		}
		hold := make(chan struct{})
		done := make(chan error, 3)
		// The held body first, then one behind it: in the other order the
		// second could be committed before the first is held, and the
		// queue would never reach two.
		go func() { done <- b.Do(ctx, func(*sql.Tx) error { <-hold; return nil }) }()
		for b.Stats().Queued < 1 {
			time.Sleep(time.Millisecond)
		}
		go func() { done <- b.DoMerged(ctx, m, account{name: "merged", balance: 1}, insert("merged")) }()
		for b.Stats().Queued < 2 {
			time.Sleep(time.Millisecond)
		}
		go func() { done <- b.Do(ctx, insert("plain")) }() // over the bound, and not refused
		err := b.TryDoMerged(ctx, m, account{name: "refused", balance: 1}, func(*sql.Tx) error {
			t.Error("a refused body ran")
			return nil
		})
		var oe *db.OverloadError
		if !errors.As(err, &oe) || !errors.Is(err, db.ErrOverloaded) || oe.Bound != 2 || oe.Queued < 2 || oe.RetryAfter < time.Second {
			t.Fatalf("over the bound: %v", err)
		}
		close(hold)
		for range 3 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE name IN ('first', 'merged', 'plain', 'refused')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("%d rows, want first, merged and plain", n)
		}
		if st := b.Stats(); st.Capacity <= 0 || st.Queued != 0 || st.Refused != 1 {
			t.Fatalf("after the commits: %+v, want a capacity, nothing queued, one refusal", st)
		}
	})
}

// TestBatcherObserve: the observer hears of every batch with its bodies,
// and of every body's wait, however the bodies were grouped.
func TestBatcherObserve(t *testing.T) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewBatcher(8)
		var mu sync.Mutex
		batches, bodies, waits := 0, 0, 0
		b.Observe(db.BatchObserver{
			Batch: func(n int, took time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				if n < 1 || took <= 0 {
					t.Errorf("a batch of %d bodies taking %v", n, took)
				}
				batches++
				bodies += n
			},
			Waited: func(w time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				if w < 0 {
					t.Errorf("a wait of %v", w)
				}
				waits++
			}})
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.Do(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, $2)`, fmt.Sprint("obs", i), i)
					return err
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		b.Close()
		mu.Lock()
		defer mu.Unlock()
		if s := b.Stats(); batches != int(s.Batches) || bodies != 40 || waits != 40 {
			t.Fatalf("observed %d batches (%d counted), %d bodies and %d waits, want 40 of each", batches, s.Batches, bodies, waits)
		}
	})
}

// TestBatcherInterval: with an interval, a batch that follows one of
// several bodies waits for the rest of the interval and takes what
// arrives meanwhile; a lone writer's batches of one are never held.
func TestBatcherInterval(t *testing.T) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b := d.NewBatcher(8)
		defer b.Close()
		const interval = time.Second
		b.SetInterval(interval)
		batches := observeSizes(b)
		insert := func(name string) func(tx *sql.Tx) error {
			return func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, 0)`, name)
				return err
			}
		}
		do := func(wg *sync.WaitGroup, fn func(tx *sql.Tx) error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.Do(ctx, fn); err != nil {
					t.Error(err)
				}
			}()
		}
		// A first batch of one, held open until two more bodies wait;
		// they are the second batch, of two.
		gate := make(chan struct{})
		var wg sync.WaitGroup
		do(&wg, func(tx *sql.Tx) error { <-gate; return insert("a")(tx) })
		for b.Stats().Queued < 1 {
			time.Sleep(time.Millisecond)
		}
		do(&wg, insert("b"))
		do(&wg, insert("c"))
		for b.Stats().Queued < 3 {
			time.Sleep(time.Millisecond)
		}
		close(gate)
		wg.Wait()
		// Three bodies 20 ms apart, within the interval after the batch
		// of two: one batch.
		for _, name := range []string{"d", "e", "f"} {
			do(&wg, insert(name))
			time.Sleep(20 * time.Millisecond)
		}
		wg.Wait()
		if got := batches(3); got != "[1 2 3]" {
			t.Fatalf("batches of %s, want [1 2 3]", got)
		}
		// A lone writer: after the batch of three, its first write may
		// wait out the interval; the ones after it follow batches of one
		// and are not held.
		if err := b.Do(ctx, insert("g")); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"h", "i", "j", "k"} {
			t0 := time.Now()
			if err := b.Do(ctx, insert(name)); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(t0); took >= interval {
				t.Fatalf("a lone write took %v: held for the interval (%v)", took, interval)
			}
		}
		var n int
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil || n != 11 {
			t.Fatalf("%d rows (%v), want 11", n, err)
		}
	})
}

// observeSizes has b tell the sizes of its batches, and returns a
// function that gives the first n of them, as in "[1 2 3]": the observer
// runs after a batch's callers have their answers, so it waits (up to
// 10 s) for n batches to be told, and gives what it has then.
func observeSizes(b *db.Batcher) func(n int) string {
	var mu sync.Mutex
	var sizes []int
	b.Observe(db.BatchObserver{Batch: func(n int, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, n)
	}})
	return func(n int) string {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			mu.Lock()
			got := len(sizes)
			mu.Unlock()
			if got >= n || time.Now().After(deadline) {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(sizes)
	}
}
