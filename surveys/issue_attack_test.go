package surveys

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// raceIssue sends every request of reqs at once, each from its caller, and
// returns the answers in order.
func (e *env) raceIssue(def *Definition, callers []Caller, reqs []*TokenRequest) ([][]byte, []error) {
	sigs, errs := make([][]byte, len(reqs)), make([]error, len(reqs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			sigs[i], errs[i] = e.s.IssueToken(context.Background(), callers[i], def.SurveyID, reqs[i].Blinded)
		}()
	}
	close(start)
	wg.Wait()
	return sigs, errs
}

func newRequests(t *testing.T, def *Definition, n int) []*TokenRequest {
	t.Helper()
	reqs := make([]*TokenRequest, n)
	for i := range reqs {
		r, err := NewTokenRequest(def)
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = r
	}
	return reqs
}

// TestAttackRacingTokenRequests: a citizen who sends many different token
// requests at once, hoping that two pass the check before either is
// recorded, gets exactly one token; so do two accounts of one person in a
// survey of level high. The same request sent many times at once (a
// client retrying a lost answer) is answered with the one signature. When
// many citizens each race a second request, every citizen has one token
// and the survey counts one per citizen.
func TestAttackRacingTokenRequests(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		def, _ := e.survey(t, ModeAnonymous, everyone)
		high, _ := e.survey(t, ModeAnonymous, Audience{Kind: AudienceLevel, Level: ca.LevelHigh})
		e.clk.set(def.OpensAt)
		tokens := func(d *Definition) [2]int {
			return [2]int{
				e.count(t, `SELECT COUNT(*) FROM survey_tokens WHERE survey_id = $1`, d.SurveyID),
				e.count(t, `SELECT tokens_issued FROM surveys WHERE id = $1`, d.SurveyID),
			}
		}
		// exactlyOne checks that one request of reqs got a signature that
		// makes a valid token and every other one was refused as a second.
		exactlyOne := func(name string, d *Definition, reqs []*TokenRequest, sigs [][]byte, errs []error) {
			t.Helper()
			won := 0
			for i, err := range errs {
				switch {
				case err == nil:
					won++
					tok, err := reqs[i].Finalize(sigs[i])
					if err != nil {
						t.Fatalf("%s: the winning signature: %v", name, err)
					}
					pub, _ := ParseTokenKey(d.TokenKey)
					if err := VerifyToken(pub, d.SurveyID, tok); err != nil {
						t.Fatalf("%s: the winning token: %v", name, err)
					}
				case !errors.Is(err, ErrAlreadyIssued):
					t.Fatalf("%s: request %d: %v, want ErrAlreadyIssued", name, i, err)
				}
			}
			if won != 1 {
				t.Fatalf("%s: %d of %d racing requests got a token, want 1", name, won, len(reqs))
			}
		}

		const racers = 16
		one := make([]Caller, racers)
		for i := range one {
			one[i] = voter(1)
		}
		reqs := newRequests(t, def, racers)
		sigs, errs := e.raceIssue(def, one, reqs)
		exactlyOne("one account", def, reqs, sigs, errs)
		if got := tokens(def); got != [2]int{1, 1} {
			t.Fatalf("one account: %d rows, %d counted, want 1 and 1", got[0], got[1])
		}

		// The same request, many times at once: one signature for all.
		same := newRequests(t, def, 1)[0]
		retries := make([]*TokenRequest, racers)
		for i := range retries {
			retries[i] = same
		}
		one2 := make([]Caller, racers)
		for i := range one2 {
			one2[i] = voter(2)
		}
		sigs, errs = e.raceIssue(def, one2, retries)
		for i := range errs {
			if errs[i] != nil || !bytes.Equal(sigs[i], sigs[0]) {
				t.Fatalf("retry %d: %v, or a different signature", i, errs[i])
			}
		}
		if got := tokens(def); got != [2]int{2, 2} {
			t.Fatalf("retries: %d rows, %d counted, want 2 and 2", got[0], got[1])
		}

		// Two accounts of one person, each racing several requests.
		e.persons["acc_anna_work"], e.persons["acc_anna_home"] = "person-anna", "person-anna"
		anna := make([]Caller, racers)
		for i := range anna {
			anna[i] = Caller{AccountID: "acc_anna_work", DeviceID: "dev_anna_1", Level: ca.LevelHigh}
			if i%2 == 1 {
				anna[i] = Caller{AccountID: "acc_anna_home", DeviceID: "dev_anna_2", Level: ca.LevelHigh}
			}
		}
		reqs = newRequests(t, high, racers)
		sigs, errs = e.raceIssue(high, anna, reqs)
		exactlyOne("two accounts of one person", high, reqs, sigs, errs)
		if got := tokens(high); got != [2]int{1, 1} {
			t.Fatalf("one person: %d rows, %d counted, want 1 and 1", got[0], got[1])
		}

		// Many citizens at once, each with two different requests: the
		// group commit takes them together and must still give one each.
		const citizens = 40
		var callers []Caller
		for i := range citizens {
			callers = append(callers, voter(100+i), voter(100+i))
		}
		reqs = newRequests(t, def, len(callers))
		sigs, errs = e.raceIssue(def, callers, reqs)
		for i := 0; i < len(callers); i += 2 {
			exactlyOne(callers[i].AccountID, def, reqs[i:i+2], sigs[i:i+2], errs[i:i+2])
		}
		if got := tokens(def); got != [2]int{2 + citizens, 2 + citizens} {
			t.Fatalf("many citizens: %d rows, %d counted, want %d", got[0], got[1], 2+citizens)
		}
	})
}
