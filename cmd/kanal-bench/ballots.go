package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// ballots: a survey's voting day. The council and its citizens are the
// tokens scenario's; before the measured phase every citizen gets its
// token of every survey (not measured). Then all citizens at once cast
// their ballot in each survey through the surveys SDK, as a voter's app
// does: encrypt the answers to the tally key and post the ballot with the
// token, without a session, on a connection of its own. The figures are
// ballots accepted per second, the latency of one ballot (the SDK call:
// encryption, a fresh connection, the request) and kanald's CPU per
// ballot. After the measured phase every survey's board is downloaded and
// checked whole as a recount would (surveys.CheckBoard: the chain, every
// token, no nullifier twice), and every receipt the citizens received
// must verify under the deployment's CA and name its entry on it.
func (r *runner) ballots(ctx context.Context) error {
	defs, citizens, err := r.council(ctx)
	if err != nil {
		return err
	}
	tokens := make([][]*surveys.Token, len(citizens))
	err = parallel(ctx, len(citizens), 32, func(i int) error {
		api := sclient.New(citizens[i].base, citizens[i].hc).WithToken(citizens[i].token)
		tokens[i] = make([]*surveys.Token, len(defs))
		for j, d := range defs {
			t, err := api.Token(ctx, d)
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			tokens[i][j] = t
		}
		return nil
	})
	if err != nil {
		return err
	}

	var mu sync.Mutex
	receipts := make([][]*surveys.Receipt, len(defs))
	err = r.surveyPhase(ctx, citizens, defs,
		// No session: a ballot carries its token and nothing that names
		// the voter.
		func(c *device) *sclient.Client { return sclient.New(c.base, c.hc) },
		func(api *sclient.Client, i, j int) error {
			rec, err := api.Cast(ctx, defs[j], tokens[i][j], []any{i % 2})
			if err != nil {
				return err
			}
			mu.Lock()
			receipts[j] = append(receipts[j], rec)
			mu.Unlock()
			return nil
		})
	if err != nil {
		return err
	}

	// The recount's first step on every board, and every receipt on it.
	public := sclient.New(citizens[0].base, citizens[0].hc)
	for j, d := range defs {
		entries, head, err := public.Board(ctx, d.SurveyID, citizens[0].roots)
		if err != nil {
			return fmt.Errorf("board of survey %s: %w", d.SurveyID, err)
		}
		if err := surveys.CheckBoard(d, entries, head); err != nil {
			r.errs.add(fmt.Sprintf("survey %s: %v", d.SurveyID, err))
		}
		if len(entries) != len(receipts[j]) {
			r.errs.add(fmt.Sprintf("survey %s has %d ballots on its board, citizens received %d receipts", d.SurveyID, len(entries), len(receipts[j])))
		}
		for _, rec := range receipts[j] {
			if err := surveys.VerifyReceipt(rec, citizens[0].roots); err != nil {
				r.errs.add(fmt.Sprintf("survey %s: %v", d.SurveyID, err))
			}
			if err := surveys.FindReceipt(entries, rec); err != nil {
				r.errs.add(fmt.Sprintf("survey %s: %v", d.SurveyID, err))
			}
		}
	}
	r.res.Errors = r.errs.snapshot()
	return ctx.Err()
}
