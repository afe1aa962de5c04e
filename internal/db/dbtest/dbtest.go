// Package dbtest is the storage conformance harness: a store test calls Run
// once and its body runs against a fresh SQLite file and, when
// KANAL_TEST_POSTGRES is set, against PostgreSQL in a schema of its own that
// is dropped afterwards. Every kanal store is tested through it, so SQLite
// and PostgreSQL cannot drift apart.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// PostgresEnv names the variable holding the PostgreSQL URL for tests.
const PostgresEnv = "KANAL_TEST_POSTGRES"

// Run runs fn as subtests "sqlite" and "postgres", each with a freshly
// migrated database. Without KANAL_TEST_POSTGRES the PostgreSQL variant is
// skipped, except under CI, where a missing server is a failure.
func Run(t *testing.T, sets []db.Migrations, fn func(t *testing.T, d *db.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		fn(t, SQLite(t, sets...))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, Postgres(t, sets...))
	})
}

// SQLite returns a migrated database in a new file under t.TempDir.
func SQLite(t testing.TB, sets ...db.Migrations) *db.DB {
	t.Helper()
	d, err := db.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "kanal.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Migrate(context.Background(), sets...); err != nil {
		t.Fatalf("migrate sqlite: %v", err)
	}
	return d
}

// Open returns SQLite's database for engine "sqlite" and PostgreSQL's
// otherwise: for benchmarks that run once per engine.
func Open(t testing.TB, engine string, sets ...db.Migrations) *db.DB {
	t.Helper()
	if engine == "sqlite" {
		return SQLite(t, sets...)
	}
	return Postgres(t, sets...)
}

// PostgresURL returns KANAL_TEST_POSTGRES, skipping the test when it is not
// set (failing it under CI).
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(PostgresEnv)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set under CI: the PostgreSQL suite must run", PostgresEnv)
		}
		t.Skipf("%s not set: PostgreSQL variant not run", PostgresEnv)
	}
	return u
}

// Postgres returns a migrated database in a new schema of the database at
// KANAL_TEST_POSTGRES. The schema is dropped when the test ends.
func Postgres(t testing.TB, sets ...db.Migrations) *db.DB {
	t.Helper()
	base := PostgresURL(t)
	schema := NewSchema(t, base)
	d, err := db.OpenPostgres(context.Background(), WithSchema(t, base, schema))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Migrate(context.Background(), sets...); err != nil {
		t.Fatalf("migrate postgres: %v", err)
	}
	return d
}

// NewSchema creates an empty schema with a random name in the database at
// base and drops it, with everything in it, when the test ends.
func NewSchema(t testing.TB, base string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "kt_" + hex.EncodeToString(b[:])
	admin, err := db.OpenPostgres(context.Background(), base)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	if _, err := admin.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	return schema
}

// WithSchema returns base with search_path set to schema, so every
// connection of a pool opened with it works inside that schema.
func WithSchema(t testing.TB, base, schema string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
