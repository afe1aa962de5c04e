package surveys

import (
	"slices"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestBoardEntriesUseTheNullifierIndex: on SQLite a batch's read of the
// board entries of its nullifiers (boardEntriesSQL) searches the board's
// unique index on (survey_id, nullifier), one probe a nullifier, and
// never reads a survey's board by its primary key: that would read every
// entry of the survey for every batch.
func TestBoardEntriesUseTheNullifierIndex(t *testing.T) {
	d := dbtest.Open(t, "sqlite", sets...)
	for _, k := range []int{1, 2, 64, 256} {
		args := []any{"srv_x"}
		for i := range k {
			args = append(args, []byte{byte(i)})
		}
		plan := dbtest.SQLitePlan(t, d, boardEntriesSQL(db.SQLite, k), args...)
		want := []string{
			"SEARCH s USING INDEX sqlite_autoindex_surveys_1 (id=?)",
			"SEARCH j USING INDEX sqlite_autoindex_survey_board_2 (survey_id=? AND nullifier=?) LEFT-JOIN",
		}
		if !slices.Equal(plan, want) {
			t.Errorf("%d nullifiers: plan %q, want %q", k, plan, want)
		}
	}
}
