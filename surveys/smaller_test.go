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

// TestReceipts13: a fabricated receipt is reported as a receipt that is
// not on the board, not as a bad board; receipts carry the notary's
// signature, which a third party checks and which breaks when any field
// changes.
func TestReceiptsSignedAndFabricated(t *testing.T) {
	e, def, _, entries, _, recs := boardOf(t, 3)
	roots := e.p.ca.Pool()
	for _, r := range recs {
		if err := VerifyReceipt(r, roots); err != nil {
			t.Fatalf("receipt %d: %v", r.Seq, err)
		}
		if err := FindReceipt(entries, r); err != nil {
			t.Fatal(err)
		}
	}
	fake := *recs[0]
	fake.Hash = append([]byte(nil), fake.Hash...)
	fake.Hash[0] ^= 1
	if err := FindReceipt(entries, &fake); !errors.Is(err, ErrBadReceipt) || errors.Is(err, ErrBadBoard) {
		t.Fatalf("fabricated receipt: %v, want ErrBadReceipt", err)
	}
	if err := VerifyReceipt(&fake, roots); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("altered receipt's signature: %v", err)
	}
	beyond := *recs[0]
	beyond.Seq = 99
	if err := FindReceipt(entries, &beyond); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("receipt past the board: %v", err)
	}
	other := *recs[0]
	other.SurveyID = "srv_other"
	if err := VerifyReceipt(&other, roots); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("receipt moved to another survey: %v", err)
	}
	_ = def
}
