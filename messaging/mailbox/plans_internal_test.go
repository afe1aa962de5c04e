package mailbox

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestAppendPlanReadsNoTable: the append runs on a pipeline with a
// generic plan (db.Pipeline.QueryGeneric), planned once per connection
// on whatever the tables held then. That is safe only while its plan
// reads no table but through the heads' conflict arbiter, and joins its
// two arrays in linear time whatever their length: PostgreSQL's generic
// plan of appendSQL has no scan of a table and no nested loop.
func TestAppendPlanReadsNoTable(t *testing.T) {
	d := dbtest.Postgres(t, Migrations())
	ctx := context.Background()
	var plan []string
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `PREPARE append_plan AS `+appendSQL); err != nil {
			return err
		}
		defer tx.ExecContext(ctx, `DEALLOCATE append_plan`)
		rows, err := tx.QueryContext(ctx, `EXPLAIN EXECUTE append_plan('{d}', '{1}', '{3}', '{d}', '{0}', '{e}', '{c}', '{s}', '{message}', '{"\\x616263"}', 1, 2, 0, 0)`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			plan = append(plan, line)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "Insert on mailbox") || !strings.Contains(text, "Conflict Arbiter Indexes: mailbox_heads_pkey") {
		t.Fatalf("not the append's plan:\n%s", text)
	}
	for _, bad := range []string{"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap", "Nested Loop"} {
		if strings.Contains(text, bad) {
			t.Errorf("the append's generic plan has a %s:\n%s", bad, text)
		}
	}
}
