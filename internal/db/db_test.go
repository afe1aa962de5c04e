package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// ledgerMigrations is a small real schema: accounts with balances and
// transfers between them, with the DDL differing where the engines differ.
var ledgerMigrations = db.Migrations{Domain: "ledgertest", FS: fstest.MapFS{
	"0001_accounts.sql": {Data: []byte(`
CREATE TABLE accounts (name TEXT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0));
`)},
	"0002_transfers.sqlite.sql": {Data: []byte(`
CREATE TABLE transfers (id INTEGER PRIMARY KEY AUTOINCREMENT, src TEXT NOT NULL REFERENCES accounts(name), dst TEXT NOT NULL REFERENCES accounts(name), amount BIGINT NOT NULL);
`)},
	"0002_transfers.postgres.sql": {Data: []byte(`
CREATE TABLE transfers (id BIGSERIAL PRIMARY KEY, src TEXT NOT NULL REFERENCES accounts(name), dst TEXT NOT NULL REFERENCES accounts(name), amount BIGINT NOT NULL);
`)},
}}

// ledger is the store under test: what every kanal store looks like.
type ledger struct{ d *db.DB }

var errInsufficient = errors.New("insufficient funds")

func (l ledger) open(ctx context.Context, name string, balance int64) error {
	_, err := l.d.Exec(ctx, `INSERT INTO accounts (name, balance) VALUES ($1, $2)`, name, balance)
	return err
}

func (l ledger) transfer(ctx context.Context, src, dst string, amount int64) error {
	return l.d.Tx(ctx, func(tx *sql.Tx) error {
		var bal int64
		if err := tx.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE name = $1`, src).Scan(&bal); err != nil {
			return err
		}
		if bal < amount {
			return errInsufficient
		}
		// $2 before $1 on purpose: both drivers bind by number, not by position.
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = balance - $2 WHERE name = $1`, src, amount); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = balance + $2 WHERE name = $1`, dst, amount); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO transfers (src, dst, amount) VALUES ($1, $2, $3)`, src, dst, amount)
		return err
	})
}

func (l ledger) balance(ctx context.Context, name string) (int64, error) {
	var b int64
	err := l.d.QueryRow(ctx, `SELECT balance FROM accounts WHERE name = $1`, name).Scan(&b)
	return b, err
}

// runLedger runs test on each engine with a ledger whose account "a"
// holds 1000 and "b" nothing.
func runLedger(t *testing.T, test func(t *testing.T, ctx context.Context, d *db.DB, l ledger)) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		l := ledger{d}
		if err := l.open(ctx, "a", 1000); err != nil {
			t.Fatal(err)
		}
		if err := l.open(ctx, "b", 0); err != nil {
			t.Fatal(err)
		}
		test(t, ctx, d, l)
	})
}

func TestLedgerStore(t *testing.T) {
	runLedger(t, func(t *testing.T, ctx context.Context, d *db.DB, l ledger) {
		if err := l.open(ctx, "a", 5); !db.IsUniqueViolation(err) {
			t.Fatalf("duplicate account: got %v, want a unique violation", err)
		}

		// Concurrent transfers: each must apply exactly once, and the money
		// must add up, whatever the engine's locking does.
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- l.transfer(ctx, "a", "b", 10)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("transfer: %v", err)
			}
		}
		a, _ := l.balance(ctx, "a")
		b, _ := l.balance(ctx, "b")
		if a != 600 || b != 400 {
			t.Fatalf("balances a=%d b=%d, want 600 and 400", a, b)
		}

		// A failing transaction changes nothing.
		if err := l.transfer(ctx, "a", "b", 601); !errors.Is(err, errInsufficient) {
			t.Fatalf("overdraft: got %v", err)
		}
		var n int
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM transfers`).Scan(&n); err != nil || n != 40 {
			t.Fatalf("transfers = %d (%v), want 40", n, err)
		}

		// Migrating again is a no-op.
		if err := d.Migrate(ctx, ledgerMigrations); err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		applied, err := d.Applied(ctx)
		if err != nil || applied["ledgertest"] != 2 {
			t.Fatalf("applied = %v (%v), want 2 ledgertest migrations", applied, err)
		}
	})
}

// TestReadTxSnapshot: the reads of one ReadTx see the database as it was
// at their first read, whatever commits meanwhile, and a write in it is
// refused and changes nothing. Without the snapshot a reader that reads
// two rows around a transfer sees the money twice.
func TestReadTxSnapshot(t *testing.T) {
	runLedger(t, func(t *testing.T, ctx context.Context, d *db.DB, l ledger) {
		var a, b int64
		err := d.ReadTx(ctx, func(tx *sql.Tx) error {
			if err := tx.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE name = $1`, "a").Scan(&a); err != nil {
				return err
			}
			if err := l.transfer(ctx, "a", "b", 10); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE name = $1`, "b").Scan(&b); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET balance = 0 WHERE name = $1`, "a"); err == nil {
				return errors.New("an update in a read-only transaction went through")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if a+b != 1000 {
			t.Fatalf("one snapshot read a=%d b=%d: %d in all, want 1000 (b read after a transfer committed)", a, b, a+b)
		}
		a, _ = l.balance(ctx, "a")
		b, _ = l.balance(ctx, "b")
		if a != 990 || b != 10 {
			t.Fatalf("after the read: a=%d b=%d, want 990 and 10", a, b)
		}
	})
}

func TestMigrationEditedAfterRelease(t *testing.T) {
	dbtest.Run(t, []db.Migrations{ledgerMigrations}, func(t *testing.T, d *db.DB) {
		edited := fstest.MapFS{}
		for k, v := range ledgerMigrations.FS.(fstest.MapFS) {
			edited[k] = v
		}
		edited["0001_accounts.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE accounts (name TEXT PRIMARY KEY);`)}
		err := d.Migrate(context.Background(), db.Migrations{Domain: "ledgertest", FS: edited})
		if err == nil || !strings.Contains(err.Error(), "edited after it was applied") {
			t.Fatalf("got %v, want an edited-migration error", err)
		}
	})
}

func TestMigrationFailureChangesNothing(t *testing.T) {
	bad := db.Migrations{Domain: "bad", FS: fstest.MapFS{
		"0001_ok.sql":     {Data: []byte(`CREATE TABLE good (x INTEGER);`)},
		"0002_broken.sql": {Data: []byte(`CREATE TABLE broken (x INTEGER;`)},
	}}
	dbtest.Run(t, nil, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if err := d.Migrate(ctx, bad); err == nil {
			t.Fatal("broken migration applied")
		}
		if d.Migrated() {
			t.Fatal("Migrated() after a failed migration")
		}
		// The first, valid migration was rolled back with the second.
		if _, err := d.Exec(ctx, `INSERT INTO good (x) VALUES (1)`); err == nil {
			t.Fatal("table from a failed migration run exists")
		}
	})
}

func TestMigrationFileRules(t *testing.T) {
	cases := map[string]fstest.MapFS{
		"gap":       {"0001_a.sql": {Data: []byte("SELECT 1;")}, "0003_c.sql": {Data: []byte("SELECT 1;")}},
		"bad name":  {"1_a.sql": {Data: []byte("SELECT 1;")}},
		"duplicate": {"0001_a.sql": {Data: []byte("SELECT 1;")}, "0001_b.sql": {Data: []byte("SELECT 1;")}},
	}
	for name, fsys := range cases {
		t.Run(name, func(t *testing.T) {
			d := dbtest.SQLite(t)
			if err := d.Migrate(context.Background(), db.Migrations{Domain: "x", FS: fsys}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestConcurrentMigrate is what happens when two kanald nodes start at once
// against one PostgreSQL: both succeed and every migration runs once.
func TestConcurrentMigrate(t *testing.T) {
	base := dbtest.PostgresURL(t)
	schema := dbtest.NewSchema(t, base)
	u := dbtest.WithSchema(t, base, schema)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := db.OpenPostgres(ctx, u)
			if err != nil {
				errs[i] = err
				return
			}
			defer d.Close()
			errs[i] = d.Migrate(ctx, ledgerMigrations)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	d, err := db.OpenPostgres(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int
	if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM kanal_migrations WHERE domain = 'ledgertest'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("version rows = %d (%v), want 2", n, err)
	}
}

func TestParseURL(t *testing.T) {
	good := map[string]db.Dialect{
		"postgres://u:p@127.0.0.1:5432/test?sslmode=disable": db.Postgres,
		"postgresql://127.0.0.1/test":                        db.Postgres,
		"sqlite:kanal.db":                                    db.SQLite,
		"sqlite:///var/lib/kanal/kanal.db":                   db.SQLite,
	}
	for u, want := range good {
		got, _, err := db.ParseURL(u)
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %v, %v; want %v", u, got, err, want)
		}
	}
	bad := []string{
		"mysql://127.0.0.1/test",
		"127.0.0.1:5432",
		"postgres://u:secret@[::1",
		"postgres://127.0.0.1:notaport/test",
		"sqlite:",
		"://",
	}
	for _, u := range bad {
		_, _, err := db.ParseURL(u)
		if err == nil {
			t.Errorf("ParseURL(%q) accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error shows the password: %v", u, err)
		}
	}
}

func TestUnreachablePostgres(t *testing.T) {
	_, err := db.OpenPostgres(context.Background(), "postgres://kanal:hunter2@127.0.0.1:1/test?sslmode=disable")
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error should name the address and hide the password: %v", err)
	}
}

func TestSQLiteMissingDirectory(t *testing.T) {
	_, err := db.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "nope", "kanal.db"))
	if err == nil {
		t.Fatal("opened a database in a missing directory")
	}
}

// TestIn: the placeholder list names every value once, in order, and the
// query finds exactly the rows with those values on both engines.
func TestIn(t *testing.T) {
	if p, args := db.In([]string{"a", "b", "c"}); p != "$1,$2,$3" || len(args) != 3 || args[2] != "c" {
		t.Fatalf("In = %q %v", p, args)
	}
	dbtest.Run(t, nil, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if _, err := d.Exec(ctx, `CREATE TABLE in_test (v TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"a", "b", "c", "d"} {
			if _, err := d.Exec(ctx, `INSERT INTO in_test (v) VALUES ($1)`, v); err != nil {
				t.Fatal(err)
			}
		}
		p, args := db.In([]string{"d", "b", "x"})
		rows, err := d.Query(ctx, `SELECT v FROM in_test WHERE v IN (`+p+`) ORDER BY v`, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if strings.Join(got, ",") != "b,d" {
			t.Fatalf("rows %v, want b,d", got)
		}
	})
}

// TestSQLiteStatementRollbackInMemory: a statement that changes many rows
// inside a transaction and fails on its last row is undone alone — the
// transaction's earlier changes commit, none of the statement's rows stay —
// with its statement journal (far over SQLite's 64 KiB spill threshold
// here) held in memory: the writer runs with temp_store=MEMORY, so such a
// journal costs no temporary file and no write(2) per page.
func TestSQLiteStatementRollbackInMemory(t *testing.T) {
	ctx := context.Background()
	d, err := db.OpenSQLite(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(ctx, ledgerMigrations); err != nil {
		t.Fatal(err)
	}
	l := ledger{d}
	if err := l.open(ctx, "dup", 1); err != nil {
		t.Fatal(err)
	}
	// 2,000 rows of 300 bytes: about 150 pages journaled before the
	// duplicate at the end fails the statement.
	const n = 2000
	var q strings.Builder
	q.WriteString(`INSERT INTO accounts (name, balance) VALUES `)
	for i := range n {
		fmt.Fprintf(&q, "('%s%04d', %d), ", strings.Repeat("x", 300), i, i)
	}
	q.WriteString(`('dup', 5)`)
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		var store int
		if err := tx.QueryRowContext(ctx, `PRAGMA temp_store`).Scan(&store); err != nil {
			return err
		}
		if store != 2 {
			t.Errorf("the writer's temp_store is %d, want 2 (MEMORY)", store)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ('before', 7)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, q.String()); err == nil {
			t.Error("a duplicate name was inserted")
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, balance) VALUES ('after', 8)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var count int
	if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 3 {
		t.Fatalf("%d accounts, want 3 (dup, before, after): the failed statement left rows", count)
	}
	for name, want := range map[string]int64{"dup": 1, "before": 7, "after": 8} {
		if got, err := l.balance(ctx, name); err != nil || got != want {
			t.Fatalf("%s: balance %d %v, want %d", name, got, err, want)
		}
	}
}

// The SQLite writer commits durably: WAL with synchronous=FULL, so a
// commit (and with it a send's "sent") is on disk before it returns; and
// with foreign keys enforced.
func TestSQLiteWriterDurable(t *testing.T) {
	ctx := context.Background()
	d, err := db.OpenSQLite(ctx, filepath.Join(t.TempDir(), "kanal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1"}
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		for p, w := range want {
			var got string
			if err := tx.QueryRowContext(ctx, "PRAGMA "+p).Scan(&got); err != nil {
				return err
			}
			if got != w {
				t.Errorf("PRAGMA %s = %s on the writer, want %s", p, got, w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPlansFollowTheTableSize: a statement a connection ran on an empty,
// vacuumed table uses the index once the table has filled. The mailbox is
// such a table: it empties, a vacuum truncates it, and a broadcast fills
// it with 50,000 references at once. With PostgreSQL's default
// (plan_cache_mode auto) the connection keeps the generic plan it made on
// the empty table — a sequential scan — and the last read below scans all
// 50,000 rows; kanald's connections make a custom plan each time.
func TestPlansFollowTheTableSize(t *testing.T) {
	ctx := context.Background()
	base := dbtest.PostgresURL(t)
	d, err := db.OpenPostgres(ctx, dbtest.WithSchema(t, base, dbtest.NewSchema(t, base)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, q := range []string{
		`CREATE TABLE q (device_id TEXT NOT NULL, seq BIGINT NOT NULL, body BYTEA NOT NULL, PRIMARY KEY (device_id, seq))`,
		`INSERT INTO q SELECT 'd' || i, 1, '\x00' FROM generate_series(1, 1000) i`,
		`DELETE FROM q`,
		`VACUUM (ANALYZE) q`,
	} {
		if _, err := d.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	stats := func() (inserted, seqRead int64) {
		t.Helper()
		if err := d.QueryRow(ctx, `SELECT n_tup_ins, COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relid = 'q'::regclass`).Scan(&inserted, &seqRead); err != nil {
			t.Fatal(err)
		}
		return inserted, seqRead
	}
	ins0, seq0 := stats()
	const read = `SELECT seq FROM q WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT 16`
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		run := func() error {
			rows, err := tx.QueryContext(ctx, read, "d1", 0)
			if err != nil {
				return err
			}
			for rows.Next() {
			}
			rows.Close()
			return rows.Err()
		}
		// More than the five executions after which a generic plan may
		// be kept, all on the empty table, on this transaction's one
		// connection.
		for range 10 {
			if err := run(); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO q SELECT 'd' || i, 1, '\x00' FROM generate_series(1, 50000) i`); err != nil {
			return err
		}
		if err := run(); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The transaction's counters are in once its 50,000 inserts are.
	ins, seq := stats()
	for deadline := time.Now().Add(10 * time.Second); ins < ins0+50000 && time.Now().Before(deadline); ins, seq = stats() {
		time.Sleep(20 * time.Millisecond)
	}
	if ins < ins0+50000 {
		t.Fatalf("the transaction's statistics did not arrive: %d inserts counted", ins-ins0)
	}
	if seq-seq0 >= 50000 {
		t.Fatalf("the read after the table filled scanned %d rows: the connection kept the plan it made on the empty table", seq-seq0)
	}
}
