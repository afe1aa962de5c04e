package dbtest

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
)

// PipelinePlan returns the plan a pipeline keeps for stmt on PostgreSQL:
// its generic plan under db.PipelinePlans, made as a pipeline would make
// it on the tables as they are, with each of vacuumed emptied and
// vacuumed first (zero pages and zero rows: the sizes on which a plan
// made once goes most wrong). args are the statement's parameters as an
// SQL list of literals, which a generic plan does not look at.
func PipelinePlan(t testing.TB, d *db.DB, stmt, args string, vacuumed ...string) string {
	t.Helper()
	ctx := context.Background()
	for _, table := range vacuumed {
		if _, err := d.Exec(ctx, `DELETE FROM `+table); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec(ctx, `VACUUM `+table); err != nil {
			t.Fatal(err)
		}
	}
	var plan []string
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.PipelinePlans); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `PREPARE pipeline_plan AS `+stmt); err != nil {
			return err
		}
		defer tx.ExecContext(ctx, `DEALLOCATE pipeline_plan`)
		rows, err := tx.QueryContext(ctx, `EXPLAIN EXECUTE pipeline_plan(`+args+`)`)
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
		t.Fatalf("plan of %s: %v", stmt, err)
	}
	return strings.Join(plan, "\n")
}

// KeyedPlan fails t unless plan reaches every table's rows key by key:
// no sequential or bitmap scan, and no index scan without an index
// condition (a full scan of the index).
func KeyedPlan(t testing.TB, name, plan string) {
	t.Helper()
	lines := strings.Split(plan, "\n")
	for i, l := range lines {
		switch {
		case strings.Contains(l, "Seq Scan"), strings.Contains(l, "Bitmap"):
			t.Errorf("%s's plan reads a whole table (%s):\n%s", name, strings.TrimSpace(l), plan)
		case strings.Contains(l, "Index Scan"), strings.Contains(l, "Index Only Scan"):
			if i+1 == len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[i+1]), "Index Cond:") {
				t.Errorf("%s's plan reads a whole index (%s):\n%s", name, strings.TrimSpace(l), plan)
			}
		}
	}
}

// A Statement is a statement of a pipeline for KeyedPlans: a name for
// errors, its SQL and its parameters as for PipelinePlan.
type Statement struct{ Name, SQL, Args string }

// KeyedPlans plans each statement as PipelinePlan does, on the tables of
// vacuumed emptied and vacuumed, checks each plan with KeyedPlan, and
// returns the plans in order.
func KeyedPlans(t testing.TB, d *db.DB, vacuumed []string, stmts ...Statement) []string {
	t.Helper()
	plans := make([]string, len(stmts))
	for i, s := range stmts {
		plans[i] = PipelinePlan(t, d, s.SQL, s.Args, vacuumed...)
		KeyedPlan(t, s.Name, plans[i])
	}
	return plans
}

// SQLitePlan returns the details of SQLite's EXPLAIN QUERY PLAN for query
// with args, one a line of the plan.
func SQLitePlan(t testing.TB, d *db.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := d.Query(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN %s: %v", query, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}
