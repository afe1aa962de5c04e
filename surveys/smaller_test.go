package surveys

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestBallotForUnknownSurvey: a ballot names a survey that does not exist;
// the answer is not-found, whatever survey its token names.
func TestBallotForUnknownSurvey(t *testing.T) {
	e, def, _, _, _, _ := boardOf(t, 1)
	e.clk.set(def.OpensAt)
	tok := e.token(t, def, voter(50))
	ct, _ := EncryptBallot(def, Nullifier(tok.Message), intended(0))
	if _, err := e.s.CastAnonymous(context.Background(), "srv_doesnotexist0000000", tok, ct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ballot for an unknown survey: %v, want ErrNotFound", err)
	}
}

// TestNamedSurveyCounts: a second named ballot says the account has voted
// (there is no token in named mode), and GET reports as tokens issued
// what the signed statement will.
func TestNamedSurveyCounts(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t, sets...))
	ctx := context.Background()
	def, tk := e.survey(t, ModeNamed, everyone)
	e.clk.set(def.OpensAt)
	for i := range 4 {
		ct, _ := EncryptBallot(def, NamedNullifier(def.SurveyID, voter(i).AccountID), intended(i))
		if _, err := e.s.CastNamed(ctx, voter(i), def.SurveyID, ct); err != nil {
			t.Fatal(err)
		}
	}
	ct, _ := EncryptBallot(def, NamedNullifier(def.SurveyID, voter(0).AccountID), intended(0))
	_, err := e.s.CastNamed(ctx, voter(0), def.SurveyID, ct)
	if !errors.Is(err, ErrAlreadyVoted) || strings.Contains(err.Error(), "token") {
		t.Fatalf("second named ballot: %v", err)
	}
	e.clk.set(def.ClosesAt.Add(time.Second))
	sr, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private)
	if err != nil {
		t.Fatal(err)
	}
	st, err := VerifyResult(sr, e.p.ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	sv, err := e.s.Get(ctx, def.SurveyID)
	if err != nil {
		t.Fatal(err)
	}
	if sv.TokensIssued != int64(st.TokensIssued) || st.TokensIssued != 4 {
		t.Fatalf("GET says %d tokens issued, the signed statement %d", sv.TokensIssued, st.TokensIssued)
	}
}
