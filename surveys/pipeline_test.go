package surveys

import (
	"context"
	"errors"
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestIssuancesPipelined: on PostgreSQL the token issuances of one group
// commit, for several surveys, are written in one round trip (the
// pipeline with its COMMIT), and every survey counts its own. A survey
// that another node closes while issuances for it wait for the commit
// issues none of them — each is refused as closed, nothing of them is
// recorded or counted — and the issuances for the survey still open in
// the same batch are not held back by them.
func TestIssuancesPipelined(t *testing.T) {
	d := dbtest.Postgres(t, sets...)
	e := newEnv(t, d)
	first, _ := e.survey(t, ModeAnonymous, everyone)
	second, _ := e.survey(t, ModeAnonymous, everyone)
	e.clk.set(first.OpensAt)
	b := e.s.commits
	ctx := context.Background()

	// batch issues a token to each caller of each survey while the
	// batcher is held, so that they commit in one batch; between (if not
	// nil) runs once they all wait for that commit. It returns their
	// errors and the round trips from the release to the batch's end,
	// less the held body's own.
	batch := func(from int, defs []*Definition, between func()) ([]error, uint64) {
		t.Helper()
		const citizens = 12
		errs := make([]error, citizens*len(defs))
		var bodies []func()
		for j, def := range defs {
			for i := range citizens {
				req, err := NewTokenRequest(def)
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, func() {
					_, errs[j*citizens+i] = e.s.IssueToken(ctx, voter(from+i), def.SurveyID, req.Blinded)
				})
			}
		}
		return errs, heldBatch(t, d, b, bodies, between)
	}
	counts := func(def *Definition) [2]int {
		return [2]int{
			e.count(t, `SELECT COUNT(*) FROM survey_tokens WHERE survey_id = $1`, def.SurveyID),
			e.count(t, `SELECT tokens_issued FROM surveys WHERE id = $1`, def.SurveyID),
		}
	}

	// The first batch prepares the statements; the second is measured.
	for k, from := range []int{0, 100} {
		errs, trips := batch(from, []*Definition{first, second}, nil)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("issuance %d: %v", i, err)
			}
		}
		want := 12 * (k + 1)
		if a, b := counts(first), counts(second); a != [2]int{want, want} || b != [2]int{want, want} {
			t.Fatalf("rows and counts %v and %v, want %d of each", a, b, want)
		}
		if k == 1 && trips != 1 {
			t.Fatalf("a batch of 24 issuances for two surveys took %d round trips, want 1", trips)
		}
	}

	// Another node closes the second survey while its issuances wait.
	errs, _ := batch(200, []*Definition{first, second}, func() {
		if _, err := d.Exec(ctx, `UPDATE surveys SET closes_at = $1 WHERE id = $2`, e.clk.now().Unix(), second.SurveyID); err != nil {
			t.Fatal(err)
		}
	})
	for i, err := range errs {
		switch {
		case i < 12 && err != nil:
			t.Fatalf("issuance %d for the open survey: %v", i, err)
		case i >= 12 && !errors.Is(err, ErrNotOpen):
			t.Fatalf("issuance %d for the closed survey: %v, want ErrNotOpen", i, err)
		}
	}
	if a, b := counts(first), counts(second); a != [2]int{36, 36} || b != [2]int{24, 24} {
		t.Fatalf("rows and counts %v and %v, want 36 and 24 of each", a, b)
	}
}
