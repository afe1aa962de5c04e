package surveys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestAttackEarlyClosing: the adversary holds the organiser's session (a
// bearer token) but not the device key that signed the definition. It
// cannot close the survey with a key of its own, replay the organiser's
// closing of another survey, or post-date or back-date one; each refusal
// leaves closes_at and the closing as they were. The organiser's own
// closing stops ballots at once and allows the tally.
func TestAttackEarlyClosing(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		def, tk := e.survey(t, ModeAnonymous, everyone)
		other, _ := e.survey(t, ModeAnonymous, everyone)
		e.clk.set(def.OpensAt.Add(time.Minute))
		now := e.clk.now()
		tok := e.token(t, def, voter(1))
		unused := e.token(t, def, voter(3)) // cast after the closing
		if _, err := e.cast(def, tok, intended(1)); err != nil {
			t.Fatal(err)
		}
		stored := func() [2]int {
			return [2]int{e.count(t, `SELECT closes_at FROM surveys WHERE id = $1`, def.SurveyID),
				e.count(t, `SELECT COUNT(*) FROM surveys WHERE id = $1 AND closing IS NOT NULL`, def.SurveyID)}
		}
		before := stored()

		_, stranger, _ := ed25519.GenerateKey(rand.Reader)
		forged, _ := SignClosing(def.SurveyID, now, stranger)
		replayed, _ := SignClosing(other.SurveyID, now, e.org.key)
		late, _ := SignClosing(def.SurveyID, now.Add(MaxClosingSkew+time.Minute), e.org.key)
		early, _ := SignClosing(def.SurveyID, now.Add(-MaxClosingSkew-time.Second), e.org.key)
		good, _ := SignClosing(def.SurveyID, now, e.org.key)
		for _, tc := range []struct {
			name   string
			caller Caller
			c      *SignedClosing
			want   error
		}{
			{"signed by another key", e.org.Caller, forged, ErrBadSignature},
			{"another survey's closing", e.org.Caller, replayed, ErrInvalid},
			{"closed_at too far ahead", e.org.Caller, late, ErrInvalid},
			{"closed_at too far back", e.org.Caller, early, ErrInvalid},
			{"by a citizen", voter(1), good, ErrForbidden},
		} {
			if err := e.s.CloseEarly(ctx, tc.caller, def.SurveyID, tc.c); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
			if after := stored(); after != before {
				t.Errorf("%s changed the survey: %v -> %v", tc.name, before, after)
			}
		}
		if _, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private); !errors.Is(err, ErrNotClosed) {
			t.Fatalf("tally before closing: %v", err)
		}

		if err := e.s.CloseEarly(ctx, e.org.Caller, def.SurveyID, good); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CloseEarly(ctx, e.org.Caller, def.SurveyID, good); !errors.Is(err, ErrNotOpen) {
			t.Fatalf("second closing: %v", err)
		}
		sv, err := e.s.Get(ctx, def.SurveyID)
		if err != nil || sv.Status != StatusClosed || sv.Closing == nil {
			t.Fatalf("after closing: %v %+v", err, sv)
		}
		p, err := e.s.Page(ctx, def.SurveyID, 0, 10)
		if err != nil || p.Closing == nil || len(p.Entries) != 1 {
			t.Fatalf("board after closing: %v", err)
		}
		if err := MayPublish(&sv.Signed, def, sv.Closing, now); err != nil {
			t.Fatalf("publishing after the device's closing: %v", err)
		}
		if err := MayPublish(&sv.Signed, def, nil, now); !errors.Is(err, ErrNotClosed) {
			t.Fatalf("publishing without a closing: %v", err)
		}
		if _, err := e.cast(def, unused, intended(2)); !errors.Is(err, ErrNotOpen) {
			t.Fatalf("ballot after closing: %v", err)
		}
		if _, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAttackTallyAtTheClosing: a commit that wrote a ballot, or issued
// a token, just before the closing may still be on its way when the
// organiser tallies. The ballot's voter holds a receipt; the published
// result must count it, or the receipt names an entry the result leaves
// out; and the participation it states must be of every token issued.
// PostgreSQL only: a trigger holds the commit after its write (the
// survey's row updated, closes_at checked) while the closing passes and
// the tally reads the survey; SQLite offers no way to hold its one
// writer there, and runs the same code.
func TestAttackTallyAtTheClosing(t *testing.T) {
	for _, held := range []string{"ballot", "token"} {
		t.Run(held, func(t *testing.T) { tallyAtTheClosing(t, held) })
	}
}

func tallyAtTheClosing(t *testing.T, held string) {
	d := dbtest.Open(t, "postgres", sets...)
	e := newEnv(t, d)
	ctx := context.Background()
	def, tk := e.survey(t, ModeAnonymous, everyone)
	e.clk.set(def.OpensAt)
	if _, err := e.cast(def, e.token(t, def, voter(1)), intended(1)); err != nil {
		t.Fatal(err)
	}
	late := e.token(t, def, voter(2))
	e.clk.set(def.ClosesAt.Add(-time.Second))
	if _, err := d.Exec(ctx, `CREATE FUNCTION hold_survey() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.board_len <> OLD.board_len OR NEW.tokens_issued <> OLD.tokens_issued THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, `CREATE TRIGGER hold_survey AFTER UPDATE ON surveys FOR EACH ROW EXECUTE FUNCTION hold_survey()`); err != nil {
		t.Fatal(err)
	}
	type commit struct {
		rec *Receipt
		err error
	}
	done := make(chan commit, 1)
	go func() {
		if held == "token" {
			req, err := NewTokenRequest(def)
			if err == nil {
				_, err = e.s.IssueToken(ctx, voter(3), def.SurveyID, req.Blinded)
			}
			done <- commit{nil, err}
			return
		}
		rec, err := e.cast(def, late, intended(2))
		done <- commit{rec, err}
	}()
	// The commit is held once its statement sleeps.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if e.count(t, `SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%surveys%'`) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %s's commit never reached the trigger", held)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.clk.set(def.ClosesAt)
	sr, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private)
	if err != nil {
		t.Fatal(err)
	}
	c := <-done
	if c.err != nil {
		t.Fatalf("the %s committed before the closing: %v", held, c.err)
	}
	st, err := VerifyResult(sr, e.p.ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if c.rec != nil && st.Result.BoardLength < c.rec.Seq {
		t.Fatalf("the result counts %d entries; the receipt given for entry %d is left out", st.Result.BoardLength, c.rec.Seq)
	}
	if all, _ := e.board(t, def); int64(len(all)) != st.Result.BoardLength {
		t.Fatalf("the board holds %d entries, the result counts %d", len(all), st.Result.BoardLength)
	}
	if n := e.count(t, `SELECT tokens_issued FROM surveys WHERE id = $1`, def.SurveyID); st.TokensIssued != n {
		t.Fatalf("%d tokens were issued, the result states %d", n, st.TokensIssued)
	}
}
