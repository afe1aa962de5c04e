package db_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
)

// The SQLite statement cache runs a statement again with new arguments,
// inside and outside transactions, and a query that is already open on
// the connection (a nested read of the same SQL) gets its own statement.
func TestSQLiteStatementCache(t *testing.T) {
	ctx := context.Background()
	d, err := db.OpenSQLite(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE TABLE u (k INTEGER)`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ { // more distinct uses than one statement
		err := d.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (k, v) VALUES ($1, $2)`, i, "v"+strconv.Itoa(i))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Nested: while the rows of one query are open, the same query again.
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT k FROM t WHERE k < $1 ORDER BY k`, 3)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var k int
			if err := rows.Scan(&k); err != nil {
				return err
			}
			var inner int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE k < $1`, k+1).Scan(&inner); err != nil {
				return err
			}
			if inner != k+1 {
				t.Errorf("nested count for %d: %d", k, inner)
			}
			var again int
			if err := tx.QueryRowContext(ctx, `SELECT k FROM t WHERE k < $1 ORDER BY k`, 3).Scan(&again); err != nil || again != 0 {
				t.Errorf("the open query again: %d %v", again, err)
			}
			n++
		}
		if n != 3 {
			t.Errorf("outer rows: %d", n)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	// More distinct statements than the cache holds still run.
	for i := 0; i < 300; i++ {
		var n int
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM t WHERE k >= $1 AND k < $1 + `+strconv.Itoa(i), 0).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != min(i, 300) {
			t.Fatalf("query %d counted %d", i, n)
		}
	}
}

// A cached statement's numbered parameters bind to the right arguments
// when one is used twice, out of order, beside "$k" in a string literal,
// and in a multi-row statement of thousands of parameters.
func TestSQLiteNumberedParameters(t *testing.T) {
	ctx := context.Background()
	d, err := db.OpenSQLite(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL, w TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for range 2 { // prepared, then from the cache
		var a, b, lit string
		err := d.QueryRow(ctx, `SELECT $2 || '-' || $1, $2, '$1 stays'`, "eins", "zwei").Scan(&a, &b, &lit)
		if err != nil || a != "zwei-eins" || b != "zwei" || lit != "$1 stays" {
			t.Fatalf("got %q %q %q %v", a, b, lit, err)
		}
	}
	const rows = 1000
	q, args := `INSERT INTO t (k, v, w) VALUES `, []any{}
	for i := range rows {
		if i > 0 {
			q += ", "
		}
		n := len(args)
		q += "($" + strconv.Itoa(n+1) + ", $" + strconv.Itoa(n+2) + ", $" + strconv.Itoa(n+2) + " || $" + strconv.Itoa(n+1) + ")"
		args = append(args, i, "v"+strconv.Itoa(i))
	}
	if _, err := d.Exec(ctx, q, args...); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM t WHERE v = 'v' || k AND w = v || k`).Scan(&n); err != nil || n != rows {
		t.Fatalf("%d of %d rows bound right: %v", n, rows, err)
	}
	// Too few arguments is the driver's error, as before.
	if _, err := d.Exec(ctx, `INSERT INTO t (k, v, w) VALUES ($1, $2, $3)`, 5000, "x"); err == nil {
		t.Fatal("a statement with a missing argument ran")
	}

	// One connection puts each rewritten statement's arguments in the
	// same buffer: a statement run while another's rows are open, and one
	// after a larger one, are bound with their own arguments only.
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		rs, err := tx.QueryContext(ctx, `SELECT k, v FROM t WHERE k IN ($1, $2, $1) ORDER BY k`, 7, 9)
		if err != nil {
			return err
		}
		defer rs.Close()
		if _, err := tx.ExecContext(ctx, `INSERT INTO t (k, v, w) VALUES ($1, $2, $2), ($3, $2, $1)`, 6001, "x", 6002); err != nil {
			return err
		}
		var got []string
		for rs.Next() {
			var k int
			var v string
			if err := rs.Scan(&k, &v); err != nil {
				return err
			}
			got = append(got, strconv.Itoa(k)+"="+v)
		}
		if err := rs.Err(); err != nil {
			return err
		}
		if strings.Join(got, " ") != "7=v7 9=v9" {
			t.Errorf("rows read while another statement ran: %q", got)
		}
		var w1, w2 string
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT w FROM t WHERE k = $1), (SELECT w FROM t WHERE k = $2)`, 6001, 6002).Scan(&w1, &w2); err != nil {
			return err
		}
		if w1 != "x" || w2 != "6001" {
			t.Errorf("inserted rows: w %q and %q, want \"x\" and \"6001\"", w1, w2)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
