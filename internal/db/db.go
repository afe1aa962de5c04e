package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Dialect names the database engine behind a DB.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is an open kanal database. For SQLite it holds one writer connection
// (SQLite allows one writer at a time; queueing writers in Go is cheaper
// than letting them spin on SQLITE_BUSY) and a pool of readers. For
// PostgreSQL both are the same pool.
type DB struct {
	dialect  Dialect
	w, r     *sql.DB
	migrated atomic.Bool
	trips    *roundTrips // PostgreSQL only
}

// Limits of the connection pools.
const (
	sqliteReaders   = 4
	postgresConns   = 20
	connectTimeout  = 5 * time.Second
	sqliteBusyMilli = 10000
	maxTxAttempts   = 10
)

// Open opens the database named by rawURL. An empty rawURL opens the SQLite
// file kanal.db in dir. Accepted URLs: postgres://…, postgresql://…,
// sqlite:PATH (relative to the working directory) and sqlite:///ABS/PATH.
func Open(ctx context.Context, rawURL, dir string) (*DB, error) {
	if rawURL == "" {
		return OpenSQLite(ctx, filepath.Join(dir, "kanal.db"))
	}
	kind, target, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if kind == SQLite {
		return OpenSQLite(ctx, target)
	}
	return OpenPostgres(ctx, target)
}

// ParseURL checks a database URL without connecting and returns the engine
// and what to open: a file path for SQLite, the URL for PostgreSQL.
func ParseURL(rawURL string) (Dialect, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", fmt.Errorf("cannot parse database URL: %v", redactErr(err, rawURL))
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		if _, err := pgx.ParseConfig(rawURL); err != nil {
			return "", "", fmt.Errorf("cannot parse PostgreSQL URL: %v", redactErr(err, rawURL))
		}
		return Postgres, rawURL, nil
	case "sqlite":
		p := u.Opaque
		if p == "" {
			p = u.Path
		}
		if p == "" {
			return "", "", errors.New("sqlite URL names no file (want sqlite:PATH or sqlite:///ABS/PATH)")
		}
		return SQLite, p, nil
	case "":
		return "", "", errors.New("database URL has no scheme (want postgres://… or sqlite:PATH)")
	default:
		return "", "", fmt.Errorf("unsupported database URL scheme %q (want postgres or sqlite)", u.Scheme)
	}
}

// redactErr keeps a URL's password out of an error message.
func redactErr(err error, rawURL string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the whole URL, password included
	}
	msg := err.Error()
	if u, perr := url.Parse(rawURL); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// sqliteCheckpointPages is how many pages the WAL holds before the commit
// that passes it copies them into the database file (a checkpoint, with
// an fsync of the file). SQLite's default is 1,000 pages (4 MB). A busy
// node writes the same pages commit after commit — the mailboxes' heads
// and their small indexes, each sender's last page of the idempotency
// keys — and a checkpoint copies each page once however often the WAL
// holds it: checkpointing every 16,000 pages (64 MB) wrote 6,500 bytes
// per sent and acknowledged envelope instead of 7,900 and delivered 11 %
// more with 7 % less CPU per envelope (docs/benchmarks.md,
// "Acknowledgements gathered by the SDK, and checkpoints every 64 MB").
// The WAL file keeps its largest size, about 64 MB, and a restart after a
// crash reads it back.
const sqliteCheckpointPages = 16000

// OpenSQLite opens (creating if needed) the SQLite file at path in WAL mode
// with foreign keys on and synchronous=FULL: a commit is on disk before it
// returns, because kanal acknowledges a message only once it is durable.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("SQLite directory %s: %w", dir, err)
		}
	}
	common := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", url.PathEscape(path), sqliteBusyMilli)
	// temp_store(MEMORY) keeps the writer's statement journals in memory.
	// A statement that changes several rows inside a transaction (a group
	// commit's multi-row insert, its upserts, a delete under foreign keys)
	// journals the pages it changes, so that it alone can be rolled back if
	// it fails halfway; past 64 KiB SQLite spilled that journal to a
	// temporary file — two write(2)s per page, and the file's open, stat
	// and unlink per transaction — which was half the pwrite64 calls of a
	// busy server. The journal is never read after a crash (the WAL is), so
	// durability is the same; what it costs is memory while the statement
	// runs: the pages it changes.
	//
	// wal_autocheckpoint: see sqliteCheckpointPages. The writer's VFS
	// writes a commit's WAL frames at once (walframes.go), at the sync
	// synchronous(FULL) makes before the commit is published: the two
	// go together.
	vfs, err := walFramesVFS()
	if err != nil {
		return nil, fmt.Errorf("open SQLite %s: %w", path, err)
	}
	w, err := openSQLitePool(common + "&vfs=" + vfs + fmt.Sprintf("&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(%d)&_txlock=immediate", sqliteCheckpointPages))
	if err != nil {
		return nil, fmt.Errorf("open SQLite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open SQLite %s: %w", path, err)
	}
	r, err := openSQLitePool(common + "&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open SQLite %s: %w", path, err)
	}
	r.SetMaxOpenConns(sqliteReaders)
	r.SetMaxIdleConns(sqliteReaders)
	return &DB{dialect: SQLite, w: w, r: r}, nil
}

// OpenPostgres connects to PostgreSQL and checks that it answers.
func OpenPostgres(ctx context.Context, rawURL string) (*DB, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse PostgreSQL URL: %v", redactErr(err, rawURL))
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > connectTimeout {
		cfg.ConnectTimeout = connectTimeout
	}
	// Custom plans only. pgx prepares each statement once per connection,
	// and after five executions PostgreSQL may keep a generic plan for
	// the connection's life, costed with the statistics of that moment.
	// The mailbox is a queue that empties: after a vacuum truncates it, a
	// connection that fetched from the empty mailbox keeps a sequential
	// scan, and when a broadcast fills it with 50,000 references every
	// fetch reads all of them (3.9 ms instead of 0.05 ms; measured, it
	// turned a broadcast into a reconnect storm) until an analyze
	// invalidates the plan. A custom plan is made for each execution
	// with the table's current size. An operator's own setting in the
	// URL (options=-c plan_cache_mode=…) is kept. A group commit's
	// pipeline is the exception: its statements are written so that one
	// plan is right for every size, and it sets its own plans for its
	// transaction (Pipeline.Query).
	if _, set := cfg.RuntimeParams["plan_cache_mode"]; !set && !strings.Contains(cfg.RuntimeParams["options"], "plan_cache_mode") {
		cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	trips := &roundTrips{}
	cfg.Tracer = trips
	p := stdlib.OpenDB(*cfg)
	p.SetMaxOpenConns(postgresConns)
	p.SetMaxIdleConns(postgresConns)
	p.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := p.PingContext(pctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("cannot connect to PostgreSQL at %s:%d: %s", cfg.Host, cfg.Port, pgCause(err, rawURL))
	}
	return &DB{dialect: Postgres, w: p, r: p, trips: trips}, nil
}

// Autovacuum says whether PostgreSQL's autovacuum is on. The mailboxes
// are queues — every envelope is inserted, then deleted at its
// acknowledgement, and its head row updated both times — so without
// vacuum their tables and indexes fill with dead rows that every send and
// delivery walks. On SQLite it is true: deleted pages are reused.
func (d *DB) Autovacuum(ctx context.Context) (bool, error) {
	if d.dialect != Postgres {
		return true, nil
	}
	var v string
	if err := d.QueryRow(ctx, "SHOW autovacuum").Scan(&v); err != nil {
		return false, fmt.Errorf("db.autovacuum: %w", err)
	}
	return v == "on", nil
}

// pgCause shortens pgx's connection error to its innermost cause.
func pgCause(err error, rawURL string) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	return redactErr(err, rawURL)
}

// Dialect reports the engine.
func (d *DB) Dialect() Dialect { return d.dialect }

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.w.PingContext(ctx); err != nil {
		return err
	}
	return d.r.PingContext(ctx)
}

// Migrated reports whether Migrate has completed on this handle.
func (d *DB) Migrated() bool { return d.migrated.Load() }

// Stats returns the pool statistics of the writer and the reader pools
// (the same pool twice on PostgreSQL).
func (d *DB) Stats() (writer, reader sql.DBStats) { return d.w.Stats(), d.r.Stats() }

// Close closes the pools.
func (d *DB) Close() error {
	err := d.w.Close()
	if d.r != d.w {
		err = errors.Join(err, d.r.Close())
	}
	return err
}

// Exec runs a single write statement outside an explicit transaction.
func (d *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.w.ExecContext(ctx, query, args...)
}

// Query runs a read-only query on the reader pool.
func (d *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.r.QueryContext(ctx, query, args...)
}

// QueryRow runs a read-only single-row query on the reader pool.
func (d *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return d.r.QueryRowContext(ctx, query, args...)
}

// ReadTx runs fn in a read-only transaction on the reader pool, so that
// every statement in fn sees the database as one snapshot: on PostgreSQL
// REPEATABLE READ READ ONLY (each statement outside a transaction sees what
// was committed when it started), on SQLite a deferred BEGIN, whose first
// read fixes the WAL snapshot until the end. Reads that decide together —
// a group's members and its invitations — go here; a write in fn fails.
func (d *DB) ReadTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if d.dialect == Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := d.r.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // nothing to keep: it only read
	return fn(tx)
}

// Tx runs fn in a write transaction and commits it. If the engine reports a
// conflict that a retry resolves (PostgreSQL serialization failure or
// deadlock, SQLite busy), the whole of fn runs again, so fn must not have
// effects outside the transaction. Any other error rolls back and returns.
func (d *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return d.TxOpts(ctx, nil, fn)
}

// TxOpts is Tx with transaction options. Isolation levels apply to
// PostgreSQL only: SQLite transactions are always serializable.
func (d *DB) TxOpts(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	if d.dialect == SQLite {
		opts = nil
	}
	var err error
	for attempt := 0; attempt < maxTxAttempts; attempt++ {
		if attempt > 0 {
			// Jittered exponential backoff so that retrying writers spread out.
			backoff := time.Duration(1<<min(attempt, 7)) * time.Millisecond
			t := time.NewTimer(backoff/2 + rand.N(backoff))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		err = d.tx(ctx, opts, fn)
		if err == nil || !Retryable(err) {
			return err
		}
	}
	return fmt.Errorf("db: transaction failed after %d attempts: %w", maxTxAttempts, err)
}

func (d *DB) tx(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) (err error) {
	tx, err := d.w.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Retryable reports whether err is a transient conflict that running the
// transaction again may resolve.
func Retryable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40001" || pg.Code == "40P01"
	}
	return sqliteBusy(err)
}

// IsUniqueViolation reports whether err is a unique or primary key
// constraint violation, on either engine.
func IsUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	return sqliteUnique(err)
}
