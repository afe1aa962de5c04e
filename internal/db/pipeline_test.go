package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// accountPipeliner inserts accounts in one statement per batch, on a
// pipeline on PostgreSQL. An account named "refused…" is written and
// then refused by the statement itself, as the mailbox's append refuses a
// mailbox past its quota: the pipeline's COMMIT is sent with the
// statements, so a refusal must fail its statement.
type accountPipeliner struct {
	accountMerger
	queued int // items queued on pipelines
}

var errRefused = errors.New("refused after writing")

var accountsLock = &db.RowLock{SQL: `SELECT 1 FROM unnest($1::text[]) AS k(name), LATERAL (SELECT 1 FROM accounts WHERE accounts.name = k.name FOR UPDATE) a`}

func (m *accountPipeliner) QueueTx(p *db.Pipeline, items []any) error {
	var names []string
	var balances []int64
	for _, it := range items {
		a := it.(account)
		names, balances = append(names, a.name), append(balances, int64(a.balance))
	}
	m.mu.Lock()
	m.queued += len(items)
	m.mu.Unlock()
	p.Lock(accountsLock, names...)
	p.Query(`INSERT INTO accounts (name, balance) SELECT * FROM unnest($1::text[], $2::bigint[])
		RETURNING name, CASE WHEN name LIKE 'refused%' THEN ('refused: ' || name)::bigint END`, []any{names, balances},
		func(rows pgx.Rows) error {
			for rows.Next() {
				var name string
				var refused *int64
				if err := rows.Scan(&name, &refused); err != nil {
					return err
				}
			}
			return rows.Err()
		})
	return nil
}

func (m *accountPipeliner) insert(ctx context.Context, a account) func(tx *sql.Tx) error {
	return func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, $2)`, a.name, a.balance); err != nil {
			return err
		}
		if strings.HasPrefix(a.name, "refused") {
			return errRefused
		}
		return nil
	}
}

// oneBatch queues items while the batcher is held by a plain body, so that
// they make one batch, and returns each item's answer and the round trips
// to PostgreSQL of that batch.
//
// The batcher counts a batch (Stats) only after its callers have their
// answers, and takes the next batch right after: so the round trips are
// counted from before the held body is let go to after every batch is
// counted, less the held body's own rest (its COMMIT), which a held body
// without items measures first.
func oneBatch(t *testing.T, d *db.DB, b *db.Batcher, m *accountPipeliner, items []account) ([]error, uint64) {
	t.Helper()
	ctx := context.Background()
	release := dbtest.Hold(t, b)
	st := b.Stats()
	trips := d.RoundTrips()
	release()
	dbtest.Settled(t, b, st.Bodies+1)
	holdTail := d.RoundTrips() - trips

	release = dbtest.Hold(t, b)
	results := make([]error, len(items))
	var wg sync.WaitGroup
	for i, a := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = b.DoMerged(ctx, m, a, m.insert(ctx, a))
		}()
	}
	for b.Stats().Queued < 1+len(items) {
		time.Sleep(time.Millisecond)
	}
	st = b.Stats()
	trips = d.RoundTrips()
	release()
	wg.Wait()
	dbtest.Settled(t, b, st.Bodies+1+uint64(len(items)))
	if got := b.Stats().Batches; got != st.Batches+2 {
		t.Fatalf("the items took %d batches, want 1", got-st.Batches-1)
	}
	return results, d.RoundTrips() - trips - holdTail
}

// TestBatcherPipelined: on PostgreSQL a batch of a Pipeliner's items is
// one transaction in one round trip, its COMMIT included, however many
// items it holds. An item that fails — a constraint's error, or its
// statement's refusal after writing it — fails
// only its own caller: the pipeline is rolled back and every item runs
// alone, so the others are committed once and the failed one not at all.
func TestBatcherPipelined(t *testing.T) {
	d := dbtest.Postgres(t, ledgerMigrations)
	ctx := context.Background()
	b := d.NewBatcher(64)
	defer b.Close()
	m := &accountPipeliner{}
	batch := func(prefix string, n int, bad map[int]account) []account {
		items := make([]account, n)
		for i := range items {
			items[i] = account{name: fmt.Sprintf("%s%02d", prefix, i), balance: i}
			if a, ok := bad[i]; ok {
				items[i] = a
			}
		}
		return items
	}
	count := func(prefix string) (n int) {
		t.Helper()
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE name LIKE $1`, prefix+"%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The first batch prepares its statements; the second is measured.
	for _, prefix := range []string{"warm", "good"} {
		results, trips := oneBatch(t, d, b, m, batch(prefix, 40, nil))
		for i, err := range results {
			if err != nil {
				t.Fatalf("%s item %d: %v", prefix, i, err)
			}
		}
		if n := count(prefix); n != 40 {
			t.Fatalf("%s: %d rows, want 40", prefix, n)
		}
		if prefix == "good" && trips != 1 {
			t.Fatalf("a batch of 40 items took %d round trips, want 1 (the pipeline with its commit)", trips)
		}
	}
	if m.queued != 80 || m.written != 0 {
		t.Fatalf("%d items queued on pipelines, %d written by MergeTx; want 80 and 0", m.queued, m.written)
	}

	// Mid-batch failures: a name already taken (unique violation), a
	// negative balance (check violation), and an item its statement
	// refuses after writing it.
	for _, c := range []struct {
		name string
		bad  account
		want func(error) bool
	}{
		{"unique", account{name: "good07", balance: 1}, db.IsUniqueViolation},
		{"check", account{name: "negative", balance: -1}, func(err error) bool { return err != nil && !errors.Is(err, errRefused) }},
		{"refusal", account{name: "refused", balance: 1}, func(err error) bool { return errors.Is(err, errRefused) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := c.name + "-"
			results, _ := oneBatch(t, d, b, m, batch(prefix, 20, map[int]account{9: c.bad}))
			for i, err := range results {
				if i == 9 {
					if !c.want(err) {
						t.Fatalf("the bad item: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("item %d failed with the bad one: %v", i, err)
				}
			}
			if n := count(prefix); n != 19 {
				t.Fatalf("%d rows of the batch, want the 19 good ones", n)
			}
			var bad int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE name = $1 AND balance = $2`, c.bad.name, c.bad.balance).Scan(&bad); err != nil {
				t.Fatal(err)
			}
			if bad != 0 {
				t.Fatal("the bad item was written")
			}
		})
	}
}
