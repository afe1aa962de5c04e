package surveys

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
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

// TestAttackNamedSurveyOnePerson: in a named survey of level high the
// board names accounts, but a ballot counts per proven person. A citizen
// who votes from one account, then moves her eID to her second account
// (unlink, link there) and votes again, is refused: nothing is added to
// the board, and the recount sees one ballot of hers.
func TestAttackNamedSurveyOnePerson(t *testing.T) {
	dbtest.Run(t, []db.Migrations{Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		e := newEnv(t, d)
		def, tk := e.survey(t, ModeNamed, Audience{Kind: AudienceLevel, Level: ca.LevelHigh})
		e.clk.set(def.OpensAt)
		work := Caller{AccountID: "acc_anna_work", DeviceID: "dev_anna_1", Level: ca.LevelHigh}
		home := Caller{AccountID: "acc_anna_home", DeviceID: "dev_anna_2", Level: ca.LevelHigh}
		bert := Caller{AccountID: "acc_bert", DeviceID: "dev_bert", Level: ca.LevelHigh}
		e.persons[work.AccountID] = "person-anna"
		e.persons[bert.AccountID] = "person-bert"
		ballot := func(c Caller, answer int) []byte {
			ct, err := EncryptBallot(def, NamedNullifier(def.SurveyID, c.AccountID), intended(answer))
			if err != nil {
				t.Fatal(err)
			}
			return ct
		}
		if _, err := e.s.CastNamed(ctx, work, def.SurveyID, ballot(work, 0)); err != nil {
			t.Fatal(err)
		}
		// Without an eID the second account may not vote at all.
		if _, err := e.s.CastNamed(ctx, home, def.SurveyID, ballot(home, 1)); !errors.Is(err, ErrNotEligible) {
			t.Fatalf("account without eID: %v, want ErrNotEligible", err)
		}
		// The eID moves to the second account.
		delete(e.persons, work.AccountID)
		e.persons[home.AccountID] = "person-anna"
		_, err := e.s.CastNamed(ctx, home, def.SurveyID, ballot(home, 1))
		if !errors.Is(err, ErrAlreadyVoted) || !strings.Contains(err.Error(), "this person has already voted") {
			t.Fatalf("the same person from another account: %v, want ErrAlreadyVoted naming the person", err)
		}
		if _, err := e.s.CastNamed(ctx, bert, def.SurveyID, ballot(bert, 1)); err != nil {
			t.Fatal(err)
		}
		entries, _ := e.board(t, def)
		if len(entries) != 2 || entries[0].Voter != work.AccountID || entries[1].Voter != bert.AccountID {
			t.Fatalf("board: %+v", entries)
		}
		// The check's rows name no account and no identity in clear.
		if n := e.count(t, `SELECT COUNT(*) FROM survey_named_persons WHERE survey_id = $1`, def.SurveyID); n != 2 {
			t.Fatalf("%d person rows, want 2", n)
		}
		if n := e.count(t, `SELECT COUNT(*) FROM survey_named_persons WHERE person IN ($1, $2, $3, $4)`, work.AccountID, home.AccountID, "person-anna", "person-bert"); n != 0 {
			t.Fatal("a person row names an account or the identity")
		}
		// The recount: two valid ballots, one per person.
		e.clk.set(def.ClosesAt)
		res, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private)
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Result Result }
		if err := json.Unmarshal(res.Statement, &r); err != nil || r.Result.Valid != 2 || r.Result.BoardLength != 2 {
			t.Fatalf("result: %s %v", res.Statement, err)
		}
		// A named survey open to everyone still counts per account.
		def2, _ := e.survey(t, ModeNamed, everyone)
		e.clk.set(def2.OpensAt)
		for _, c := range []Caller{voter(1), voter(2)} {
			ct, _ := EncryptBallot(def2, NamedNullifier(def2.SurveyID, c.AccountID), intended(0))
			if _, err := e.s.CastNamed(ctx, c, def2.SurveyID, ct); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.count(t, `SELECT COUNT(*) FROM survey_named_persons WHERE survey_id = $1`, def2.SurveyID); n != 0 {
			t.Fatalf("%d person rows for a survey open to everyone", n)
		}
	})
}
