//go:build !js

package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// openWALTest opens a SQLite database in a new directory with a table of
// blobs.
func openWALTest(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kanal.db")
	d, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Exec(context.Background(), `CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return d, path
}

// TestWALFramesOneWritePerCommit: a commit of 64 pages, which SQLite
// writes as two calls a frame, reaches the file in a few writes, and a
// reading connection (SQLite's own VFS) sees every row once Commit has
// returned.
func TestWALFramesOneWritePerCommit(t *testing.T) {
	ctx := context.Background()
	d, _ := openWALTest(t)
	blob := make([]byte, 3900) // one row a page
	asked, made := walStats.asked.Load(), walStats.made.Load()
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		for i := range 64 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (id, b) VALUES ($1, $2)`, i, blob); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	asked, made = walStats.asked.Load()-asked, walStats.made.Load()-made
	// 64 rows' pages, their table's interior page and the schema's: at
	// least 65 frames of 4,120 bytes, at most three writes of 0x1f000.
	if asked < 130 {
		t.Fatalf("SQLite asked for %d WAL writes for 64 pages; want two a frame", asked)
	}
	if made > 3 {
		t.Fatalf("%d WAL writes asked, %d made; want at most 3 for 270 KiB", asked, made)
	}
	var n int
	if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM blobs`).Scan(&n); err != nil || n != 64 {
		t.Fatalf("the readers see %d rows (%v), want 64", n, err)
	}
}

// TestWALFramesInTheFileAtCommit: whatever a transaction does — rows of
// any size, deletions, updates, a WAL restarted after a checkpoint, a
// transaction larger than the page cache that spills frames before its
// commit, one rolled back after spilling — once Commit returns, the
// database and WAL files hold it: a copy of the two files taken then,
// without the shared-memory index (as after a crash), opens to exactly
// the rows committed.
func TestWALFramesInTheFileAtCommit(t *testing.T) {
	ctx := context.Background()
	d, path := openWALTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[int64][]byte{}
	next := int64(1)
	blob := func() []byte {
		b := make([]byte, 50+rng.IntN(9000)) // some rows overflow their page
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for round := range 40 {
		switch round {
		case 12:
			// The next commit writes the WAL from its start again.
			if _, err := d.Exec(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				t.Fatal(err)
			}
		case 20:
			// A page cache of 10 pages: the next transactions spill.
			if _, err := d.Exec(ctx, `PRAGMA cache_size = 10`); err != nil {
				t.Fatal(err)
			}
		}
		pending := map[int64][]byte{}
		gone := map[int64]bool{}
		rollback := round == 25 || round == 31
		err := d.Tx(ctx, func(tx *sql.Tx) error {
			for range 1 + rng.IntN(60) {
				switch op := rng.IntN(10); {
				case op < 6 || len(model) == 0:
					b := blob()
					if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (id, b) VALUES ($1, $2)`, next, b); err != nil {
						return err
					}
					pending[next] = b
					next++
				default:
					id := int64(1 + rng.IntN(int(next-1)))
					if _, ok := model[id]; !ok || gone[id] {
						continue
					}
					if op < 8 {
						b := blob()
						if _, err := tx.ExecContext(ctx, `UPDATE blobs SET b = $1 WHERE id = $2`, b, id); err != nil {
							return err
						}
						pending[id] = b
					} else {
						if _, err := tx.ExecContext(ctx, `DELETE FROM blobs WHERE id = $1`, id); err != nil {
							return err
						}
						gone[id] = true
						delete(pending, id)
					}
				}
			}
			if rollback {
				return errRollback
			}
			return nil
		})
		if rollback {
			if !errors.Is(err, errRollback) {
				t.Fatalf("round %d: %v", round, err)
			}
		} else {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			for id := range gone {
				delete(model, id)
			}
			for id, b := range pending {
				model[id] = b
			}
		}
		if got, want := copiedRows(t, path), modelSum(model); got != want {
			t.Fatalf("round %d: a copy of the files taken after the commit holds %s, the transactions committed %s", round, got, want)
		}
	}
}

var errRollback = errors.New("rolled back on purpose")

// copiedRows copies the database and its WAL to a new directory, opens
// the copy and returns its rows' digest, having checked its integrity.
func copiedRows(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	for _, suffix := range []string{"", "-wal"} {
		copyFile(t, path+suffix, filepath.Join(dir, "kanal.db"+suffix))
	}
	c := openChecked(t, filepath.Join(dir, "kanal.db"))
	rows, err := c.Query(context.Background(), `SELECT id, b FROM blobs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	h := sha256.New()
	n := 0
	for rows.Next() {
		var id int64
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%d:%x;", id, b)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d rows %x", n, h.Sum(nil)[:8])
}

// openChecked opens the database at path, closed when t ends, and fails
// t unless it passes SQLite's integrity check.
func openChecked(t *testing.T, path string) *DB {
	t.Helper()
	c, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var check string
	if err := c.QueryRow(context.Background(), `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity check of %s: %q, %v", path, check, err)
	}
	return c
}

func modelSum(m map[int64][]byte) string {
	h := sha256.New()
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(h, "%d:%x;", id, m[id])
	}
	return fmt.Sprintf("%d rows %x", len(m), h.Sum(nil)[:8])
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWALFramesWriteFailureFailsTheCommit: when the gathered frames
// cannot be written (here the file size limit, RLIMIT_FSIZE, in a child
// process), the commit fails — it does not return as if its frames were
// on disk — and the database keeps what was committed before it and
// nothing of it.
func TestWALFramesWriteFailureFailsTheCommit(t *testing.T) {
	if dir := os.Getenv("KANAL_WAL_FAILURE_DIR"); dir != "" {
		walFailureChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestWALFramesWriteFailureFailsTheCommit$")
	cmd.Env = append(os.Environ(), "KANAL_WAL_FAILURE_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "commit failed:") {
		t.Fatalf("the commit past the file size limit did not fail:\n%s", out)
	}
	c := openChecked(t, filepath.Join(dir, "kanal.db"))
	var n int
	if err := c.QueryRow(context.Background(), `SELECT COUNT(*) FROM blobs`).Scan(&n); err != nil || n != 10 {
		t.Fatalf("after the failed commit the database holds %d rows (%v), want the 10 committed before it", n, err)
	}
}

func walFailureChild(dir string) {
	ctx := context.Background()
	path := filepath.Join(dir, "kanal.db")
	d, err := OpenSQLite(ctx, path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	insert := func(from, to int) error {
		blob := make([]byte, 3900)
		return d.Tx(ctx, func(tx *sql.Tx) error {
			for i := from; i < to; i++ {
				if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (id, b) VALUES ($1, $2)`, i, blob); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if _, err := d.Exec(ctx, `CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)`); err != nil {
		fmt.Println("create:", err)
		os.Exit(1)
	}
	if err := insert(0, 10); err != nil {
		fmt.Println("first commit:", err)
		os.Exit(1)
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// Room for 20 more pages in the WAL; the next commit has 100.
	lim := syscall.Rlimit{Cur: uint64(fi.Size()) + 20*4120, Max: uint64(fi.Size()) + 20*4120}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	if err := insert(10, 110); err != nil {
		fmt.Println("commit failed:", err)
	} else {
		fmt.Println("commit succeeded")
	}
	d.Close()
	os.Exit(0)
}
