package surveys

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// Two kanald nodes on one PostgreSQL each run the surveys' group commit.
// A ballot locks its survey's row (the board's length and head); a batch
// that took the rows ballot by ballot, in queue order, could hold survey
// A's row and want B's while the other node's batch held B's and wanted
// A's — a deadlock that PostgreSQL breaks only after deadlock_timeout (1
// s), failing one batch, whose ballots then run again one by one. Each
// node's batch here is a ballot, a barrier and a ballot, in crossed order
// of the two surveys; the barrier holds the batch until the other node's
// has arrived or waits for this one. No batch may fail.
func TestAttackCrossNodeBallots(t *testing.T) {
	ctx := context.Background()
	open, admin := dbtest.Nodes(t, Migrations())
	e := newEnv(t, open())
	second, err := New(Options{DB: open(), Notary: e.p.notary, Roots: e.p.ca.Pool(), Directory: e.dir, Now: e.clk.now, SealKey: e.seal,
		Auth: e.s.auth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	nodes := []*Service{e.s, second}
	var mu sync.Mutex
	var failed []error
	for i, s := range nodes {
		s.commits.Observe(db.BatchObserver{Failed: func(err error) {
			mu.Lock()
			failed = append(failed, fmt.Errorf("node %d: %w", i, err))
			mu.Unlock()
		}})
	}
	a, _ := e.survey(t, ModeAnonymous, everyone)
	b, _ := e.survey(t, ModeAnonymous, everyone)
	e.clk.set(e.clk.now().Add(2 * time.Minute)) // both open
	// node i casts first[i] then second[i]: A then B on node 0, B then A
	// on node 1.
	order := [2][2]*Definition{{a, b}, {b, a}}
	var ballots [2][2]func() error
	for i := range order {
		for k, def := range order[i] {
			tok := e.token(t, def, voter(10*i+k))
			ct, err := EncryptBallot(def, Nullifier(tok.Message), intended(10*i+k))
			if err != nil {
				t.Fatal(err)
			}
			ballots[i][k] = func() error {
				_, err := nodes[i].CastAnonymous(ctx, def.SurveyID, tok, ct)
				return err
			}
		}
	}
	for _, err := range dbtest.Crossed(ctx, admin, [2]*db.Batcher{nodes[0].commits, nodes[1].commits}, ballots) {
		t.Error(err)
	}
	for _, err := range failed {
		t.Errorf("a batch's transaction failed and ran again: %v", err)
	}
	for _, def := range []*Definition{a, b} {
		if n := e.count(t, `SELECT COUNT(*) FROM survey_board WHERE survey_id = $1`, def.SurveyID); n != 2 {
			t.Errorf("survey %s: %d ballots on the board, want 2", def.SurveyID, n)
		}
	}
}
