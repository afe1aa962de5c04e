package surveys

import (
	"context"
	"errors"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestAttackTwoAccountsOnePerson: identity binds one eID to one account,
// but a survey of level high does not rely on that alone: two accounts
// that name the same person get one token between them, and an account
// without a proven identity gets none, whatever its session's level says.
func TestAttackTwoAccountsOnePerson(t *testing.T) {
	dbtest.Run(t, []db.Migrations{Migrations()}, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		def, _ := e.survey(t, ModeAnonymous, Audience{Kind: AudienceLevel, Level: ca.LevelHigh})
		e.clk.set(def.OpensAt)
		first := Caller{AccountID: "acc_anna_work", DeviceID: "dev_anna_1", Level: ca.LevelHigh}
		second := Caller{AccountID: "acc_anna_home", DeviceID: "dev_anna_2", Level: ca.LevelHigh}
		e.persons[first.AccountID] = "person-anna"
		e.persons[second.AccountID] = "person-anna"
		tok := e.token(t, def, first)
		req, err := NewTokenRequest(def)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.IssueToken(context.Background(), second, def.SurveyID, req.Blinded); !errors.Is(err, ErrAlreadyIssued) {
			t.Fatalf("second account of one person: %v, want ErrAlreadyIssued", err)
		}
		// No proven identity: not eligible, even at level high.
		nobody := Caller{AccountID: "acc_bert", DeviceID: "dev_bert", Level: ca.LevelHigh}
		if _, err := e.s.IssueToken(context.Background(), nobody, def.SurveyID, req.Blinded); !errors.Is(err, ErrNotEligible) {
			t.Fatalf("account without eID: %v, want ErrNotEligible", err)
		}
		// A session below high: not eligible, whatever the person.
		low := second
		low.Level = ca.LevelSubstantial
		if _, err := e.s.IssueToken(context.Background(), low, def.SurveyID, req.Blinded); !errors.Is(err, ErrNotEligible) {
			t.Fatalf("substantial session: %v, want ErrNotEligible", err)
		}
		if n := e.count(t, `SELECT COUNT(*) FROM survey_tokens WHERE survey_id = $1`, def.SurveyID); n != 1 {
			t.Fatalf("%d tokens issued, want 1", n)
		}
		// Nothing in the row names the account or the identity in clear.
		if n := e.count(t, `SELECT COUNT(*) FROM survey_tokens WHERE account_id IN ($1, $2, $3)`, first.AccountID, second.AccountID, "person-anna"); n != 0 {
			t.Fatalf("the token row names the account or the identity")
		}
		if _, err := e.cast(def, tok, intended(1)); err != nil {
			t.Fatal(err)
		}
		// The same person's ballot in another survey is not linked to this one.
		def2, _ := e.survey(t, ModeAnonymous, Audience{Kind: AudienceLevel, Level: ca.LevelHigh})
		e.clk.set(def2.OpensAt)
		e.token(t, def2, second)
	})
}
