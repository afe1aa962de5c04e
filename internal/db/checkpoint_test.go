package db_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
)

// TestSQLiteCheckpointsEvery16000Pages: the writer copies the WAL into the
// database file once it holds 16,000 pages, not at SQLite's default of
// 1,000 — and it does copy it then, so the WAL file stays near 64 MB
// however much is written.
func TestSQLiteCheckpointsEvery16000Pages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kanal.db")
	d, err := db.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(ctx, `CREATE TABLE pages (id INTEGER PRIMARY KEY, b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const page = 4096
	blob := make([]byte, 3900) // one row per 4 KiB page
	id := 0
	// write adds n rows of one page each, 250 to a transaction.
	write := func(n int) {
		t.Helper()
		for n > 0 {
			k := min(n, 250)
			err := d.Tx(ctx, func(tx *sql.Tx) error {
				for range k {
					id++
					if _, err := tx.ExecContext(ctx, `INSERT INTO pages (id, b) VALUES ($1, $2)`, id, blob); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			n -= k
		}
	}
	size := func(p string) int64 {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}

	write(3000)
	if wal := size(path + "-wal"); wal < 2900*page {
		t.Fatalf("after 3,000 pages the WAL holds %d bytes (%d pages): it was checkpointed early", wal, wal/page)
	}
	write(21000)
	if wal := size(path + "-wal"); wal > 16500*(page+24) {
		t.Fatalf("after 24,000 pages the WAL holds %d bytes (%d pages): it was not checkpointed at 16,000", wal, wal/page)
	}
	if main := size(path); main < 15000*page {
		t.Fatalf("after 24,000 pages the database file holds %d bytes: nothing was copied into it", main)
	}
}
