package main

import (
	"context"
	"fmt"
	"sync"
	"time"

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
	stopProfile, err := r.startBenchProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	mark := r.markCPU(ctx)
	profiled := r.startCPUProfile(ctx)
	start := time.Now()
	r.rec.Store(NewRecorder(start, time.Second))
	r.expected.Store(uint64(len(citizens) * len(defs)))
	end := start.Add(r.o.duration)
	stopProgress := r.progress(r.liveLine(start))
	var wg sync.WaitGroup
	for i, c := range citizens {
		wg.Go(func() {
			// No session: a ballot carries its token and nothing that
			// names the voter.
			api := sclient.New(c.base, c.hc)
			for k := range defs {
				if time.Now().After(end) || ctx.Err() != nil {
					return
				}
				j := (i + k) % len(defs)
				t0 := time.Now()
				r.sent.Add(1)
				rec, err := api.Cast(ctx, defs[j], tokens[i][j], []any{i % 2})
				if err != nil {
					if ctx.Err() == nil {
						r.errs.add(errKind(err))
					}
					continue
				}
				now := time.Now()
				r.rec.Load().Record(now, now.Sub(t0))
				r.delivered.Add(1)
				r.deliveredAt(now)
				mu.Lock()
				receipts[j] = append(receipts[j], rec)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sendEnd := time.Now()
	stopProgress()
	r.endPhase(ctx, start, sendEnd, mark, profiled)
	r.res.Surveys = len(defs)

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
