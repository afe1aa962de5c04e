package messaging

import (
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestPipelinePlans: the idempotency rows' insert on a pipeline is
// planned once per connection (db.Pipeline.Query); planned on an empty,
// vacuumed table, it reads no table at all.
func TestPipelinePlans(t *testing.T) {
	d := dbtest.Postgres(t, Migrations())
	plan := dbtest.PipelinePlan(t, d, sendsSQL, `'{d}', '{c}', '{v}', '{r}', '{0}'`, "messaging_sends")
	if !strings.Contains(plan, "Insert on messaging_sends") {
		t.Fatalf("not the insert's plan:\n%s", plan)
	}
	for _, bad := range []string{"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap"} {
		if strings.Contains(plan, bad) {
			t.Errorf("the idempotency rows' insert reads a table (%s):\n%s", bad, plan)
		}
	}
}
