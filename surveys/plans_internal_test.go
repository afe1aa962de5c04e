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
	dbtest.KeyedPlans(t, dbtest.Postgres(t, Migrations()), []string{"survey_tokens", "surveys"},
		dbtest.Statement{Name: "the surveys' lock", SQL: surveyRows.SQL, Args: `'{s}'`},
		dbtest.Statement{Name: "the issuances' insert", SQL: issueSQL, Args: `'{s}', '{a}', '{"\\x00"}', '{"\\x00"}', 1, 0`},
	)
}
