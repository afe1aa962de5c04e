package db_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

var planMigrations = db.Migrations{Domain: "plantest", FS: fstest.MapFS{
	"0001_modes.sql": {Data: []byte(`CREATE TABLE plan_modes (k TEXT PRIMARY KEY, mode TEXT NOT NULL);`)},
}}

// settings is what a statement reads of the settings a pipeline plans
// under (db.PipelinePlans).
const settings = `current_setting('plan_cache_mode') || ' ' || current_setting('enable_seqscan') || ' ' || current_setting('enable_bitmapscan')`

// modesLock's Insert records the settings it ran under.
var modesLock = &db.RowLock{
	SQL: `SELECT 1 FROM unnest($1::text[]) AS u(k), LATERAL (SELECT 1 FROM plan_modes WHERE plan_modes.k = u.k FOR UPDATE) m`,
	Insert: `INSERT INTO plan_modes (k, mode) SELECT k, ` + settings + `
		FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING`,
}

// planPipeliner queues, for its batch, the creation of its items' rows
// and then two statements that read the settings they run under.
type planPipeliner struct{ seen []string }

func (m *planPipeliner) MergeTx(ctx context.Context, tx *sql.Tx, items []any) error { return nil }

func (m *planPipeliner) QueueTx(p *db.Pipeline, items []any) error {
	var keys []string
	for _, it := range items {
		keys = append(keys, it.(string))
	}
	p.Create(modesLock, keys...)
	read := func(rows pgx.Rows) error {
		for rows.Next() {
			var mode string
			if err := rows.Scan(&mode); err != nil {
				return err
			}
			m.seen = append(m.seen, mode)
		}
		return rows.Err()
	}
	p.Query(`SELECT `+settings, nil, read)
	p.Query(`SELECT `+settings, nil, read)
	return nil
}

// TestPipelinePlans: every statement of a pipeline, its locks' inserts
// too, runs with generic plans and without sequential or bitmap scans
// (db.PipelinePlans); the settings are local to the pipeline's
// transaction, so that the next transaction on the same connections plans
// as kanald's connections do (force_custom_plan, every scan allowed) and
// no other read is planned once on a table's size of the moment.
func TestPipelinePlans(t *testing.T) {
	d := dbtest.Postgres(t, planMigrations)
	ctx := context.Background()
	b := d.NewBatcher(8)
	defer b.Close()
	m := &planPipeliner{}
	for _, k := range []string{"first", "second"} {
		if err := b.DoMerged(ctx, m, k, func(*sql.Tx) error { t.Fatal("the batch ran outside its pipeline"); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	const pipelined, plain = "force_generic_plan off off", "force_custom_plan on on"
	want := []string{pipelined, pipelined, pipelined, pipelined}
	if !slices.Equal(m.seen, want) {
		t.Fatalf("statements saw %q, want %q", m.seen, want)
	}
	rows, err := d.Query(ctx, `SELECT k, mode FROM plan_modes ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k, mode string
		if err := rows.Scan(&k, &mode); err != nil {
			t.Fatal(err)
		}
		if mode != pipelined {
			t.Errorf("the lock's insert of %s ran under %q, want %q", k, mode, pipelined)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 2 {
		t.Fatalf("%d rows inserted by the lock (%v), want 2", n, err)
	}
	// The writer pool's connections, after their pipelines.
	for range 3 {
		err := d.Tx(ctx, func(tx *sql.Tx) error {
			var mode string
			if err := tx.QueryRowContext(ctx, `SELECT `+settings).Scan(&mode); err != nil {
				return err
			}
			if mode != plain {
				t.Errorf("a transaction after the pipelines ran under %q, want %q", mode, plain)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
