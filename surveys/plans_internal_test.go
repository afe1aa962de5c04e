package surveys

import (
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestPipelinePlans: the issuances' statements on a pipeline are planned
// once per connection (db.Pipeline.Query). Planned on empty, vacuumed
// tables, each still reaches the surveys' rows key by key through their
// primary key.
func TestPipelinePlans(t *testing.T) {
	d := dbtest.Postgres(t, Migrations())
	empty := []string{"survey_tokens", "surveys"}
	for _, c := range []struct{ name, sql, args string }{
		{"the surveys' lock", surveyRows.SQL, `'{s}'`},
		{"the issuances' insert", issueSQL, `'{s}', '{a}', '{"\\x00"}', '{"\\x00"}', 1, 0`},
	} {
		dbtest.KeyedPlan(t, c.name, dbtest.PipelinePlan(t, d, c.sql, c.args, empty...))
	}
}
