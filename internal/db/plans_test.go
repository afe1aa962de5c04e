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

// modesLock's Insert records the plan_cache_mode it ran under.
var modesLock = &db.RowLock{
	SQL: `SELECT 1 FROM plan_modes WHERE k = ANY($1) ORDER BY k COLLATE "C" FOR UPDATE`,
	Insert: `INSERT INTO plan_modes (k, mode) SELECT k, current_setting('plan_cache_mode')
		FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING`,
}

// planPipeliner queues, for its batch, the creation of its items' rows
// and then statements that read the plan_cache_mode they run under:
// plain, generic, generic, plain.
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
	const q = `SELECT current_setting('plan_cache_mode')`
	p.Query(q, nil, read)
	p.QueryGeneric(q, nil, read)
	p.QueryGeneric(q, nil, read)
	p.Query(q, nil, read)
	return nil
}

// TestPipelineGenericPlans: a pipeline's QueryGeneric statements and its
// RowLocks' inserts run with generic plans; every other statement, in the
// same pipeline and in the next, with the connection's own setting
// (kanald's force_custom_plan), so that no read is planned once on a
// table's size of the moment.
func TestPipelineGenericPlans(t *testing.T) {
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
	const custom, generic = "force_custom_plan", "force_generic_plan"
	want := []string{custom, generic, generic, custom, custom, generic, generic, custom}
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
		if mode != generic {
			t.Errorf("the lock's insert of %s ran under %s, want %s", k, mode, generic)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 2 {
		t.Fatalf("%d rows inserted by the lock (%v), want 2", n, err)
	}
}
