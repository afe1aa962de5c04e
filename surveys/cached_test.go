package surveys

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// A ballot for a survey its node has cached, and that is open by its
// definition's times, goes to its commit without a read before it
// (castCached). Its answers must be those of the path that reads first:
// when another node has closed the survey early, another ballot under a
// counted token is refused as closed (the survey's state is named before
// the board's), the very ballot again still gets its receipt, and a new
// ballot is refused as closed. The node learns of the closing from its
// first refusal: later ballots read the survey's row first and need no
// commit. Every ballot here runs while the group commit
// is held, so what it does before the commit is seen apart from it.
func TestCachedBallotAnswers(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		def, _ := e.survey(t, ModeAnonymous, everyone)
		id := def.SurveyID
		e.clk.set(def.OpensAt.Add(time.Minute))
		toks := make([]*Token, 5)
		cts := make([][]byte, len(toks))
		for i := range toks {
			toks[i] = e.token(t, def, voter(i))
			ct, err := EncryptBallot(def, Nullifier(toks[i].Message), intended(i))
			if err != nil {
				t.Fatal(err)
			}
			cts[i] = ct
		}
		// cast runs one ballot while the group commit is held, and returns
		// the round trips to PostgreSQL it made before it reached the
		// commit's queue or returned, and whether it reached the queue.
		cast := func(tok *Token, ct []byte) (trips uint64, queued bool, rec *Receipt, err error) {
			release := dbtest.Hold(t, e.s.commits)
			st, before := e.s.commits.Stats(), d.RoundTrips()
			done := make(chan struct{})
			go func() {
				defer close(done)
				rec, err = e.s.CastAnonymous(ctx, id, tok, ct)
			}()
			for waiting := true; waiting; {
				select {
				case <-done:
					waiting = false
				default:
					if e.s.commits.Stats().Queued > st.Queued {
						queued, waiting = true, false
					} else {
						time.Sleep(time.Millisecond)
					}
				}
			}
			trips = d.RoundTrips() - before
			release()
			<-done
			return trips, queued, rec, err
		}
		boardLen := func() int { return e.count(t, `SELECT board_len FROM surveys WHERE id = $1`, id) }

		// Nothing is read before the commit.
		var first *Receipt
		for i := range 3 {
			trips, queued, rec, err := cast(toks[i], cts[i])
			if err != nil {
				t.Fatal(err)
			}
			if !queued || trips != 0 {
				t.Fatalf("ballot %d for a cached open survey: %d round trips before its commit (queued %v), want none", i, trips, queued)
			}
			if rec.Seq != int64(i+1) || boardLen() != i+1 {
				t.Fatalf("ballot %d at %d, board of %d", i, rec.Seq, boardLen())
			}
			if i == 0 {
				first = rec
			}
		}

		// Another node closes the survey early; this node's cache still
		// holds the definition's closes_at.
		closer := e.node(t)
		closing, err := SignClosing(id, e.clk.now(), e.org.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := closer.CloseEarly(ctx, e.org.Caller, id, closing); err != nil {
			t.Fatal(err)
		}
		// Another ballot under a counted token goes to the commit, which
		// names the closing first, as the path that reads first would.
		other, err := EncryptBallot(def, Nullifier(toks[1].Message), intended(99))
		if err != nil {
			t.Fatal(err)
		}
		_, queued, _, err := cast(toks[1], other)
		if !errors.Is(err, ErrNotOpen) || !queued {
			t.Fatalf("another ballot under a counted token after another node's closing: %v (queued %v), want ErrNotOpen from the commit", err, queued)
		}
		// Now the node knows: the very ballot again is answered from the
		// board, a new one refused, neither with a commit.
		_, queued, again, err := cast(toks[0], cts[0])
		if err != nil || queued {
			t.Fatalf("the same ballot again after closing: %v (queued %v)", err, queued)
		}
		if again.Seq != first.Seq || !bytes.Equal(again.Hash, first.Hash) {
			t.Fatalf("the same ballot again: entry %d, want %d", again.Seq, first.Seq)
		}
		// No commit for a ballot now.
		for i := 3; i < len(toks); i++ {
			_, queued, _, err := cast(toks[i], cts[i])
			if !errors.Is(err, ErrNotOpen) || queued {
				t.Fatalf("a ballot once the node knows of the closing: %v (queued for a commit: %v), want ErrNotOpen and no commit", err, queued)
			}
		}
		if boardLen() != 3 {
			t.Fatalf("board of %d entries after the refusals, want 3", boardLen())
		}
	})
}
