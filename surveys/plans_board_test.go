package surveys

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestBoardEntriesUseTheNullifierIndex: on SQLite a batch's read of its
// surveys' rows and the board entries of its ballots (boardsSQL) finds
// each survey by its key and each (survey, nullifier) by one probe of the
// board's unique index, and never reads a survey's board by its primary
// key: that would read every entry of the survey for every batch.
func TestBoardEntriesUseTheNullifierIndex(t *testing.T) {
	d := dbtest.Open(t, "sqlite", sets...)
	for _, m := range []int{1, 4} {
		for _, k := range []int{1, 2, 64, 256} {
			var args []any
			for i := range m {
				args = append(args, fmt.Sprintf("srv_%d", i))
			}
			for i := range k {
				args = append(args, fmt.Sprintf("srv_%d", i%m), []byte{byte(i)})
			}
			plan := dbtest.SQLitePlan(t, d, boardsSQL(db.SQLite, m, k), args...)
			want := []string{
				"COMPOUND QUERY",
				"LEFT-MOST SUBQUERY",
				"SEARCH s USING INDEX sqlite_autoindex_surveys_1 (id=?)",
				"UNION ALL",
				fmt.Sprintf("SCAN %d-ROW VALUES CLAUSE", k),
				"SEARCH j USING INDEX sqlite_autoindex_survey_board_2 (survey_id=? AND nullifier=?)",
			}
			if k == 1 {
				want = slices.Replace(want, 4, 5, "CO-ROUTINE k", "SCAN CONSTANT ROW", "SCAN k")
			}
			if !slices.Equal(plan, want) {
				t.Errorf("%d surveys, %d ballots: plan %q, want %q", m, k, plan, want)
			}
		}
	}
}
