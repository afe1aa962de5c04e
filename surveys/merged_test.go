package surveys

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestBallotsMerged: the ballots of one group commit are written
// together, survey by survey, and each board stays the chain anyone
// recounting checks (CheckBoard), with every receipt naming its own
// entry. In a batch that also holds the same ballot twice, a counted
// ballot sent again (anyone can copy one from the public board), a
// second ballot under a counted token and ballots for a survey another
// node closes while they wait, each caller is told what it would be told
// on its own: the copies one receipt, the counted ballot its entry, the
// second ballot ErrAlreadyVoted, the late ballots ErrNotOpen (on
// PostgreSQL); the fresh ballots are counted, and the batch commits
// whole — none of them sends it back to be committed in halves.
func TestBallotsMerged(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e, a, b := twoOpenSurveys(t, d)
		bt := e.s.commits
		ctx := context.Background()
		var failed atomic.Int64 // batches that failed and went back in halves
		bt.Observe(db.BatchObserver{Failed: func(error) { failed.Add(1) }})
		type vote struct {
			def *Definition
			tok *Token
			ct  []byte
		}
		next := 0
		fresh := func(def *Definition) vote {
			next++
			tok := e.token(t, def, voter(next))
			ct, err := EncryptBallot(def, Nullifier(tok.Message), intended(next))
			if err != nil {
				t.Fatal(err)
			}
			return vote{def, tok, ct}
		}
		// batch casts votes while the batcher is held, so that they
		// commit in one batch; between (if not nil) runs once they all
		// wait for it. It returns their receipts and errors and the round
		// trips their batch made.
		batch := func(votes []vote, between func()) ([]*Receipt, []error, uint64) {
			t.Helper()
			recs, errs := make([]*Receipt, len(votes)), make([]error, len(votes))
			bodies := make([]func(), len(votes))
			for i, v := range votes {
				bodies[i] = func() { recs[i], errs[i] = e.s.CastAnonymous(ctx, v.def.SurveyID, v.tok, v.ct) }
			}
			return recs, errs, heldBatch(t, d, bt, bodies, between)
		}
		// boards checks both boards whole, and that each receipt of recs
		// (nil: refused) names its entry.
		boards := func(want map[*Definition]int, recs []*Receipt) {
			t.Helper()
			entries := map[string][]Entry{}
			for _, def := range []*Definition{a, b} {
				all, head := e.board(t, def)
				if err := CheckBoard(def, all, head); err != nil {
					t.Fatalf("board of %s: %v", def.SurveyID, err)
				}
				if len(all) != want[def] {
					t.Fatalf("board of %s has %d entries, want %d", def.SurveyID, len(all), want[def])
				}
				entries[def.SurveyID] = all
			}
			for i, r := range recs {
				if r == nil {
					continue
				}
				if err := VerifyReceipt(r, e.p.ca.Pool()); err != nil {
					t.Fatalf("receipt %d: %v", i, err)
				}
				if err := FindReceipt(entries[r.SurveyID], r); err != nil {
					t.Fatalf("receipt %d: %v", i, err)
				}
			}
		}

		// Eight fresh ballots for each survey, in one batch, twice (the
		// first batch prepares the statements).
		var votes []vote
		for k, n := range []int{8, 8} {
			var these []vote
			for range n {
				these = append(these, fresh(a), fresh(b))
			}
			recs, errs, trips := batch(these, nil)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("ballot %d: %v", i, err)
				}
			}
			votes = append(votes, these...)
			boards(map[*Definition]int{a: len(votes) / 2, b: len(votes) / 2}, recs)
			// On PostgreSQL: BEGIN, the lock of both surveys' rows, one
			// read of both surveys' rows and the board entries of the
			// batch's nullifiers, two writes a survey (its entries, its
			// length and head; one ballot at a time took four statements
			// each) and COMMIT.
			if d.Dialect() == db.Postgres && k == 1 && trips != 1+1+1+2*2+1 {
				t.Fatalf("16 ballots for two surveys took %d round trips in their batch, want 8", trips)
			}
		}

		// The same ballot twice, another ballot under a counted token,
		// and fresh ones, in one batch.
		twice, counted := fresh(a), votes[0]
		other, err := EncryptBallot(a, Nullifier(counted.tok.Message), intended(99))
		if err != nil {
			t.Fatal(err)
		}
		mixed := []vote{fresh(a), twice, fresh(b), {a, counted.tok, other}, twice, fresh(a), counted}
		recs, errs, _ := batch(mixed, nil)
		for i, err := range errs {
			switch {
			case i == 3:
				if !errors.Is(err, ErrAlreadyVoted) {
					t.Fatalf("another ballot under a counted token: %v, want ErrAlreadyVoted", err)
				}
			case err != nil:
				t.Fatalf("ballot %d of the mixed batch: %v", i, err)
			}
		}
		if recs[1].Seq != recs[4].Seq {
			t.Fatalf("the same ballot twice in one batch: entries %d and %d, want one", recs[1].Seq, recs[4].Seq)
		}
		if n := failed.Load(); n != 0 {
			t.Fatalf("%d batches failed and went back in halves, want none", n)
		}
		boards(map[*Definition]int{a: 19, b: 17}, recs)
		if all, _ := e.board(t, a); !bytes.Equal(all[recs[6].Seq-1].Ciphertext, counted.ct) {
			t.Fatalf("a counted ballot sent again got the receipt of entry %d, not its own", recs[6].Seq)
		}

		// Another node closes b while ballots for both wait for the
		// commit (on PostgreSQL: SQLite has one node, whose held batch
		// holds its one writer).
		if d.Dialect() != db.Postgres {
			return
		}
		late := []vote{fresh(a), fresh(b), fresh(a), fresh(b)}
		recs, errs, _ = batch(late, func() {
			if _, err := d.Exec(ctx, `UPDATE surveys SET closes_at = $1 WHERE id = $2`, e.clk.now().Unix(), b.SurveyID); err != nil {
				t.Fatal(err)
			}
		})
		for i, err := range errs {
			switch {
			case late[i].def == a && err != nil:
				t.Fatalf("ballot %d for the open survey: %v", i, err)
			case late[i].def == b && !errors.Is(err, ErrNotOpen):
				t.Fatalf("ballot %d for the closed survey: %v, want ErrNotOpen", i, err)
			}
		}
		if n := failed.Load(); n != 0 {
			t.Fatalf("%d batches failed and went back in halves, want none", n)
		}
		e.clk.set(b.ClosesAt)
		boards(map[*Definition]int{a: 21, b: 17}, recs)
	})
}

// TestReadBoardsInParts: a commit's read of its surveys (readBoards)
// takes boardsPerRead ballots a statement; for a batch of more, each
// survey's row and every entry that used one of the batch's nullifiers
// is found whichever part its ballot is in, each entry under its own
// survey only, and a survey that is not there fails the read.
func TestReadBoardsInParts(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e, a, b := twoOpenSurveys(t, d)
		var cast []*Receipt
		for i, def := range []*Definition{a, b, a} {
			rec, err := e.cast(def, e.token(t, def, voter(i+1)), intended(i+1))
			if err != nil {
				t.Fatal(err)
			}
			cast = append(cast, rec)
		}
		entries := map[string][]Entry{}
		heads := map[string]*Head{}
		for _, def := range []*Definition{a, b} {
			entries[def.SurveyID], heads[def.SurveyID] = e.board(t, def)
		}
		nullifierOf := func(r *Receipt) []byte { return entries[r.SurveyID][r.Seq-1].Nullifier }
		// 2·boardsPerRead + 88 ballots in three parts, the two surveys
		// alternating; the counted nullifiers in the first, second and
		// third part, and a's first one also under b.
		var bs []*ballot
		for i := range 2*boardsPerRead + 88 {
			id := []string{a.SurveyID, b.SurveyID}[i%2]
			bs = append(bs, &ballot{survey: id, e: Entry{Nullifier: []byte(fmt.Sprintf("fresh-%d", i))}})
		}
		at := map[int]*Receipt{10: cast[0], boardsPerRead + 7: cast[1], 2*boardsPerRead + 20: cast[2]}
		for i, r := range at {
			bs[i] = &ballot{survey: r.SurveyID, e: Entry{Nullifier: nullifierOf(r)}}
		}
		bs[2*boardsPerRead+1] = &ballot{survey: b.SurveyID, e: Entry{Nullifier: nullifierOf(cast[0])}}
		var boards map[string]*surveyBoard
		if err := d.Tx(context.Background(), func(tx *sql.Tx) (err error) {
			boards, err = readBoards(context.Background(), tx, d.Dialect(), bs)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(boards) != 2 {
			t.Fatalf("read %d surveys, want 2", len(boards))
		}
		for _, def := range []*Definition{a, b} {
			sb, h := boards[def.SurveyID], heads[def.SurveyID]
			if sb.length != h.Length || !bytes.Equal(sb.head, h.Hash) || sb.closes != def.ClosesAt.Unix() || sb.tallied {
				t.Fatalf("survey %s read as length %d, head %x, closing %d, tallied %v; want %d, %x, %d, false",
					def.SurveyID, sb.length, sb.head, sb.closes, sb.tallied, h.Length, h.Hash, def.ClosesAt.Unix())
			}
			var want []string
			for _, r := range cast {
				if r.SurveyID == def.SurveyID {
					want = append(want, string(nullifierOf(r)))
				}
			}
			got := slices.Sorted(maps.Keys(sb.entries))
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("survey %s: entries for %d nullifiers, want %d", def.SurveyID, len(got), len(want))
			}
			for _, r := range cast {
				if r.SurveyID != def.SurveyID {
					continue
				}
				if e := sb.entries[string(nullifierOf(r))]; e.seq != r.Seq || !bytes.Equal(e.hash, r.Hash) {
					t.Fatalf("the entry of receipt %d read as entry %d", r.Seq, e.seq)
				}
			}
		}
		bs[3*boardsPerRead/2].survey = "srv_missing"
		if err := d.Tx(context.Background(), func(tx *sql.Tx) error {
			_, err := readBoards(context.Background(), tx, d.Dialect(), bs)
			return err
		}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a batch with a survey that is not there: %v, want ErrNotFound", err)
		}
	})
}

// twoOpenSurveys returns an environment with two anonymous surveys for
// everyone, open.
func twoOpenSurveys(t *testing.T, d *db.DB) (e *env, a, b *Definition) {
	t.Helper()
	e = newEnv(t, d)
	a, _ = e.survey(t, ModeAnonymous, everyone)
	b, _ = e.survey(t, ModeAnonymous, everyone)
	e.clk.set(a.OpensAt)
	return e, a, b
}
