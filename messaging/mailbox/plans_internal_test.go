package mailbox

import (
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestPipelinePlans: the mailbox's statements on a pipeline are planned
// once per connection (db.Pipeline.Query), on whatever the tables held
// then. Planned on an empty, vacuumed mailbox — the sizes on which such a
// plan goes most wrong — each still reaches the mailbox's and the heads'
// rows key by key through an index, so that a mailbox a broadcast then
// fills is not read whole at every acknowledgement. The append reads no
// table at all but through its conflict arbiter, and joins its two
// arrays in linear time whatever their length (no nested loop).
func TestPipelinePlans(t *testing.T) {
	plans := dbtest.KeyedPlans(t, dbtest.Postgres(t, Migrations()), []string{"mailbox", "mailbox_heads"},
		dbtest.Statement{Name: "the heads' lock", SQL: headsLock.SQL, Args: `'{d}'`},
		dbtest.Statement{Name: "the heads' creation", SQL: headsLock.Insert, Args: `'{d}'`},
		dbtest.Statement{Name: "the acknowledgements' delete", SQL: ackSQL, Args: `'{d}', '{e}'`},
		dbtest.Statement{Name: "the append", SQL: appendSQL, Args: `'{d}', '{1}', '{3}', '{d}', '{0}', '{e}', '{c}', '{s}', '{message}', '{"\\x616263"}', 1, 2, 0, 0`},
	)
	plan := plans[3]
	if !strings.Contains(plan, "Insert on mailbox") || !strings.Contains(plan, "Conflict Arbiter Indexes: mailbox_heads_pkey") {
		t.Fatalf("not the append's plan:\n%s", plan)
	}
	for _, bad := range []string{"Index Scan", "Index Only Scan", "Nested Loop"} {
		if strings.Contains(plan, bad) {
			t.Errorf("the append's plan has a %s:\n%s", bad, plan)
		}
	}
}
