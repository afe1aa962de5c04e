package surveys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// intended returns voter i's answers; the test knows the expected count.
func intended(i int) []any {
	var text any
	if i%5 == 0 {
		text = fmt.Sprintf("Mehr Bänke %d", i)
	}
	return []any{i % 3, []int{i % 4}, []int{i % 3, (i + 1) % 3, (i + 2) % 3}, 1 + i%5, text}
}

func TestAnonymousSurveyEndToEnd(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		def, tk := e.survey(t, ModeAnonymous, everyone)
		e.clk.set(def.OpensAt)

		const voters = 30
		var receipts []*Receipt
		want := make([]int, 3)
		for i := range voters {
			tok := e.token(t, def, voter(i))
			rec, err := e.cast(def, tok, intended(i))
			if err != nil {
				t.Fatalf("voter %d: %v", i, err)
			}
			receipts = append(receipts, rec)
			want[i%3]++
		}
		e.clk.set(def.ClosesAt)
		signed, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private)
		if err != nil {
			t.Fatal(err)
		}
		st, err := VerifyResult(signed, e.p.ca.Pool())
		if err != nil {
			t.Fatal(err)
		}
		r := st.Result
		if r.Valid != voters || len(r.Invalid) != 0 || st.TokensIssued != voters || st.Participation != 100 {
			t.Fatalf("valid %d invalid %d tokens %d participation %v", r.Valid, len(r.Invalid), st.TokensIssued, st.Participation)
		}
		for o, n := range want {
			if got := r.Questions[0].Options[o].Count; got != n {
				t.Errorf("option %d: %d votes, want %d", o, got, n)
			}
		}
		if r.Questions[4].Answered != voters/5 || r.Questions[4].Skipped != voters-voters/5 {
			t.Errorf("text answered %d skipped %d", r.Questions[4].Answered, r.Questions[4].Skipped)
		}

		// Anyone recounts from the board and the published key alone.
		entries, head := e.board(t, def)
		if err := CheckBoard(def, entries, head); err != nil {
			t.Fatal(err)
		}
		again, err := Tally(def, st.TallyKey, entries)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(roundTrip(t, again), roundTrip(t, &st.Result)) {
			t.Fatal("recount differs from the signed result")
		}
		for _, rec := range receipts {
			if err := FindReceipt(entries, rec); err != nil {
				t.Fatalf("receipt %d: %v", rec.Seq, err)
			}
		}
		// The public result can be read without a session.
		if _, err := e.s.Result(ctx, nil, def.SurveyID); err != nil {
			t.Fatal(err)
		}
	})
}

func roundTrip(t *testing.T, r *Result) any {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// state is what a rejected request must leave unchanged.
func (e *env) state(t *testing.T, id string) [4]int {
	return [4]int{
		e.count(t, `SELECT COUNT(*) FROM survey_board WHERE survey_id = $1`, id),
		e.count(t, `SELECT COUNT(*) FROM survey_tokens WHERE survey_id = $1`, id),
		e.count(t, `SELECT board_len FROM surveys WHERE id = $1`, id),
		e.count(t, `SELECT tokens_issued FROM surveys WHERE id = $1`, id),
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		def, tk := e.survey(t, ModeAnonymous, everyone)
		other, _ := e.survey(t, ModeAnonymous, everyone)
		strict, _ := e.survey(t, ModeAnonymous, Audience{Kind: AudienceLevel, Level: ca.LevelSubstantial})

		// Before opening: no tokens, no ballots; edits are still allowed.
		req, _ := NewTokenRequest(def)
		if _, err := e.s.IssueToken(ctx, voter(1), def.SurveyID, req.Blinded); !errors.Is(err, ErrNotOpen) {
			t.Fatalf("token before opening: %v", err)
		}
		e.clk.set(def.OpensAt)

		tok := e.token(t, def, voter(1))
		otherTok := e.token(t, other, voter(1))
		if _, err := e.cast(def, tok, intended(1)); err != nil {
			t.Fatal(err)
		}
		before := e.state(t, def.SurveyID)

		ct, _ := EncryptBallot(def, Nullifier(tok.Message), intended(2))
		forged := &Token{Message: tok.Message, Signature: append([]byte(nil), tok.Signature...)}
		forged.Signature[5] ^= 0x40
		fresh, _ := NewTokenRequest(def)
		unsigned := &Token{Message: fresh.prepared, Signature: otherTok.Signature} // a real signature, of another message and key
		second, _ := NewTokenRequest(def)
		valid := e.token(t, def, voter(2)) // a good token to pair with bad ballots
		before = e.state(t, def.SurveyID)

		for _, tc := range []struct {
			name string
			do   func() error
			want error
		}{
			{"second token request", func() error { _, err := e.s.IssueToken(ctx, voter(1), def.SurveyID, second.Blinded); return err }, ErrAlreadyIssued},
			{"token for an ineligible level", func() error {
				r, _ := NewTokenRequest(strict)
				_, err := e.s.IssueToken(ctx, voter(3), strict.SurveyID, r.Blinded)
				return err
			}, ErrNotEligible},
			{"short blinded request", func() error { _, err := e.s.IssueToken(ctx, voter(4), def.SurveyID, []byte{1, 2, 3}); return err }, ErrInvalid},
			{"reused token", func() error { _, err := e.cast(def, tok, intended(2)); return err }, ErrAlreadyVoted},
			{"forged signature", func() error { _, err := e.s.CastAnonymous(ctx, def.SurveyID, forged, ct); return err }, ErrBadToken},
			{"signature of another token", func() error { _, err := e.s.CastAnonymous(ctx, def.SurveyID, unsigned, ct); return err }, ErrBadToken},
			{"token of another survey", func() error { _, err := e.s.CastAnonymous(ctx, def.SurveyID, otherTok, ct); return err }, ErrOtherSurvey},
			{"garbage token", func() error {
				_, err := e.s.CastAnonymous(ctx, def.SurveyID, &Token{Message: []byte("x"), Signature: []byte("y")}, ct)
				return err
			}, ErrBadToken},
			{"malformed ciphertext", func() error { _, err := e.s.CastAnonymous(ctx, def.SurveyID, valid, ct[:100]); return err }, ErrInvalid},
			{"oversized ciphertext", func() error {
				_, err := e.s.CastAnonymous(ctx, def.SurveyID, valid, make([]byte, hpkeOverhead+MaxCiphertext/PadBlock*PadBlock+PadBlock))
				return err
			}, ErrInvalid},
			{"named ballot in an anonymous survey", func() error { _, err := e.s.CastNamed(ctx, voter(2), def.SurveyID, ct); return err }, ErrWrongMode},
			{"edit after opening", func() error {
				d2 := *def
				d2.Title = "Anders"
				s2, err := Sign(&d2, e.org.key, e.org.dev, e.org.membership, e.p.org.Certificate().Raw)
				if err != nil {
					return err
				}
				return e.s.Define(ctx, e.org.Caller, def.SurveyID, s2)
			}, ErrOpened},
			{"tally before closing", func() error { _, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private); return err }, ErrNotClosed},
			{"tally by a non-organiser", func() error { _, err := e.s.Tally(ctx, voter(1), def.SurveyID, tk.Private); return err }, ErrForbidden},
			{"ballot for an unknown survey", func() error { _, err := e.s.CastAnonymous(ctx, "srv_nope", valid, ct); return err }, ErrNotFound},
			{"token for an unknown survey", func() error { _, err := e.s.IssueToken(ctx, voter(5), "srv_nope", second.Blinded); return err }, ErrNotFound},
		} {
			err := tc.do()
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
			if after := e.state(t, def.SurveyID); after != before {
				t.Errorf("%s changed the stored state: %v -> %v", tc.name, before, after)
			}
		}
		if g, _ := e.s.Get(ctx, def.SurveyID); g.Signed.Definition == nil || !json.Valid(g.Signed.Definition) {
			t.Fatal("definition lost")
		} else if d2, _, _ := Verify(&g.Signed, e.p.ca.Pool()); d2.Title != def.Title {
			t.Fatal("definition changed after opening")
		}

		// After closing: no ballots, then the tally; a wrong key and a
		// second tally are refused.
		e.clk.set(def.ClosesAt)
		if _, err := e.s.CastAnonymous(ctx, def.SurveyID, valid, ct); !errors.Is(err, ErrNotOpen) {
			t.Fatalf("ballot after closing: %v", err)
		}
		wrong, _ := NewTallyKey()
		if _, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, wrong.Private); !errors.Is(err, ErrBadTallyKey) {
			t.Fatalf("wrong tally key: %v", err)
		}
		if _, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private); !errors.Is(err, ErrTallied) {
			t.Fatalf("second tally: %v", err)
		}
		if after := e.state(t, def.SurveyID); after != before {
			t.Errorf("closing changed the board: %v -> %v", before, after)
		}
	})
}

// TestTokenRetryIsIdempotent: a citizen whose answer was lost sends the
// same token request again and gets the same signature, counted once; a
// different second request is refused. Both hold on the node that issued
// the token, where the survey is cached and its token row is read with the
// survey's row, and on a node that has nothing cached, where it is read on
// its own.
func TestTokenRetryIsIdempotent(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		def, _ := e.survey(t, ModeAnonymous, everyone)
		e.clk.set(def.OpensAt)
		req, _ := NewTokenRequest(def)
		other, _ := NewTokenRequest(def)
		a, err := e.s.IssueToken(ctx, voter(1), def.SurveyID, req.Blinded)
		if err != nil {
			t.Fatal(err)
		}
		// signatures is how many signatures a node has made for the survey.
		signatures := func(s *Service) uint64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			if o, ok := s.cache[def.SurveyID]; ok {
				return o.signer.signed.Load()
			}
			return 0
		}
		fresh := e.node(t)
		for _, n := range []struct {
			name string
			s    *Service
		}{{"the issuing node", e.s}, {"a node with nothing cached", fresh}, {"that node again, cached", fresh}} {
			before := signatures(n.s)
			// The answer was lost; the client retries the same request.
			b, err := n.s.IssueToken(ctx, voter(1), def.SurveyID, req.Blinded)
			if err != nil {
				t.Fatalf("%s: retry: %v", n.name, err)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("%s: a retried request was answered with another signature", n.name)
			}
			if _, err := n.s.IssueToken(ctx, voter(1), def.SurveyID, other.Blinded); !errors.Is(err, ErrAlreadyIssued) {
				t.Fatalf("%s: a second request: %v, want ErrAlreadyIssued", n.name, err)
			}
			// Both were answered from the record, before the costly
			// signature.
			if after := signatures(n.s); after != before {
				t.Fatalf("%s: %d signatures made for a retry and a second request, want none", n.name, after-before)
			}
		}
		if n := e.count(t, `SELECT tokens_issued FROM surveys WHERE id = $1`, def.SurveyID); n != 1 {
			t.Fatalf("%d tokens counted, want 1", n)
		}
		if _, err := req.Finalize(a); err != nil {
			t.Fatalf("the signature: %v", err)
		}
		// Another citizen's first request is not taken for a second one.
		if _, err := e.s.IssueToken(ctx, voter(2), def.SurveyID, other.Blinded); err != nil {
			t.Fatalf("another citizen: %v", err)
		}
	})
}

// TestBallotRetryIsIdempotent: a voter whose answer was lost sends the
// same ballot again — the same token and the same ciphertext — and gets
// the receipt of the entry it already has, while the survey is open and
// after it closed, and the ballot is counted once; also when both copies
// arrive at once. Anything short of the very same ballot is what it was
// before: a second vote, a bad token, a closed survey.
func TestBallotRetryIsIdempotent(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		def, _ := e.survey(t, ModeAnonymous, everyone)
		e.clk.set(def.OpensAt)
		boardLen := func() int { return e.count(t, `SELECT board_len FROM surveys WHERE id = $1`, def.SurveyID) }
		sameEntry := func(what string, rec, want *Receipt) {
			t.Helper()
			if rec.Seq != want.Seq || !bytes.Equal(rec.Hash, want.Hash) {
				t.Fatalf("%s: receipt of entry %d, want %d", what, rec.Seq, want.Seq)
			}
			if err := VerifyReceipt(rec, e.p.ca.Pool()); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}

		tok := e.token(t, def, voter(1))
		ct, err := EncryptBallot(def, Nullifier(tok.Message), intended(1))
		if err != nil {
			t.Fatal(err)
		}
		first, err := e.s.CastAnonymous(ctx, def.SurveyID, tok, ct)
		if err != nil {
			t.Fatal(err)
		}
		again, err := e.s.CastAnonymous(ctx, def.SurveyID, tok, ct)
		if err != nil {
			t.Fatalf("the same ballot again: %v", err)
		}
		sameEntry("the same ballot again", again, first)
		if n := boardLen(); n != 1 {
			t.Fatalf("board of %d entries after one ballot sent twice", n)
		}

		// Both copies at once: one entry, every copy answered with it.
		tok2 := e.token(t, def, voter(2))
		ct2, _ := EncryptBallot(def, Nullifier(tok2.Message), intended(2))
		recs := make([]*Receipt, 6)
		errs := make([]error, len(recs))
		var wg sync.WaitGroup
		for i := range recs {
			wg.Go(func() { recs[i], errs[i] = e.s.CastAnonymous(ctx, def.SurveyID, tok2, ct2) })
		}
		wg.Wait()
		for i := range recs {
			if errs[i] != nil {
				t.Fatalf("copy %d of a ballot sent at once: %v", i, errs[i])
			}
			sameEntry("a copy sent at once", recs[i], recs[0])
		}
		if n := boardLen(); n != 2 {
			t.Fatalf("board of %d entries after two ballots, want 2", n)
		}

		// Not the same ballot: refused as before, nothing written.
		other, _ := EncryptBallot(def, Nullifier(tok.Message), intended(2))
		forged := &Token{Message: tok.Message, Signature: append([]byte(nil), tok.Signature...)}
		forged.Signature[7] ^= 0x01
		if _, err := e.s.CastAnonymous(ctx, def.SurveyID, tok, other); !errors.Is(err, ErrAlreadyVoted) {
			t.Fatalf("another ballot under a used token: %v, want ErrAlreadyVoted", err)
		}
		if _, err := e.s.CastAnonymous(ctx, def.SurveyID, forged, ct); !errors.Is(err, ErrBadToken) {
			t.Fatalf("the ballot with a forged signature of its token: %v, want ErrBadToken", err)
		}
		// Another node reads the entry on its own while it has nothing
		// cached (a retry answered there parses nothing), and with the
		// survey's row once the refusal has cached it: the same answers.
		fresh := e.node(t)
		for _, n := range []string{"a node with nothing cached", "that node again, cached"} {
			again, err := fresh.CastAnonymous(ctx, def.SurveyID, tok, ct)
			if err != nil {
				t.Fatalf("%s: the same ballot again: %v", n, err)
			}
			sameEntry(n+": the same ballot again", again, first)
			if _, err := fresh.CastAnonymous(ctx, def.SurveyID, tok, other); !errors.Is(err, ErrAlreadyVoted) {
				t.Fatalf("%s: another ballot under a used token: %v, want ErrAlreadyVoted", n, err)
			}
		}
		if n := boardLen(); n != 2 {
			t.Fatalf("board of %d entries after refusals, want 2", n)
		}

		// After closing: the same ballot still gets its receipt, from a
		// node that has the survey cached and from one that has not; a
		// new one is refused.
		tok3 := e.token(t, def, voter(3))
		e.clk.set(def.ClosesAt)
		for _, n := range []struct {
			name string
			s    *Service
		}{{"cached", e.s}, {"nothing cached", e.node(t)}} {
			late, err := n.s.CastAnonymous(ctx, def.SurveyID, tok, ct)
			if err != nil {
				t.Fatalf("the same ballot again after closing, %s: %v", n.name, err)
			}
			sameEntry("the same ballot after closing, "+n.name, late, first)
		}
		if _, err := e.cast(def, tok3, intended(3)); !errors.Is(err, ErrNotOpen) {
			t.Fatalf("a new ballot after closing: %v, want ErrNotOpen", err)
		}
		if n := boardLen(); n != 2 {
			t.Fatalf("board of %d entries after closing, want 2", n)
		}
	})
}

func TestDefinitionSignatures(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t, sets...))
	ctx := context.Background()
	draft, err := e.s.Create(ctx, e.org.Caller, councilID, ModeNamed)
	if err != nil {
		t.Fatal(err)
	}
	tk, _ := NewTallyKey()
	now := e.clk.now()
	def := &Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: councilID, Title: "Haushalt", Questions: questions()[:1],
		Audience: Audience{Kind: AudienceOrganisation, OrgID: councilID}, OpensAt: now.Add(time.Minute), ClosesAt: now.Add(time.Hour),
		Mode: ModeNamed, Results: ResultsOrganisation, TallyKey: tk.Public, SignedAt: now}
	orgDER := e.p.org.Certificate().Raw

	agent := e.p.member(t, "acc_agent", "agent", e.p.org)
	e.dir.set(councilID, agent.AccountID, "agent")
	if _, err := e.s.Create(ctx, agent.Caller, councilID, ModeNamed); !errors.Is(err, ErrForbidden) {
		t.Errorf("draft by an agent: %v", err)
	}
	if _, err := e.s.Create(ctx, voter(1), councilID, ModeAnonymous); !errors.Is(err, ErrForbidden) {
		t.Errorf("draft by a citizen: %v", err)
	}
	byAgent, _ := Sign(def, agent.key, agent.dev, agent.membership, orgDER)
	outsider := e.p.member(t, "acc_out", "", nil)
	byOutsider, _ := Sign(def, outsider.key, outsider.dev, e.org.membership, orgDER)
	good, _ := Sign(def, e.org.key, e.org.dev, e.org.membership, orgDER)
	tampered := *good
	tampered.Definition = []byte(string(good.Definition))
	tampered.Definition[20] ^= 0x01 // inside the survey id

	if _, _, err := Verify(byAgent, e.p.ca.Pool()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed by an agent: %v", err)
	}
	if _, _, err := Verify(byOutsider, e.p.ca.Pool()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed by another device: %v", err)
	}
	if _, _, err := Verify(&tampered, e.p.ca.Pool()); err == nil {
		t.Error("tampered definition verifies")
	}
	other := newPKI(t)
	if _, _, err := Verify(good, other.ca.Pool()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another deployment's CA: %v", err)
	}
	signer, err := func() (Signer, error) { _, s, err := Verify(good, e.p.ca.Pool()); return s, err }()
	if err != nil || signer.AccountID != e.org.AccountID || signer.Role != "organiser" {
		t.Fatalf("good definition: %v %+v", err, signer)
	}
	if err := e.s.Define(ctx, agent.Caller, draft.SurveyID, good); !errors.Is(err, ErrForbidden) {
		t.Errorf("defined by an agent: %v", err)
	}
	if err := e.s.Define(ctx, e.org.Caller, draft.SurveyID, good); err != nil {
		t.Fatal(err)
	}

	// Named mode: one ballot per member, the voter on the board; only
	// members may read the result.
	e.clk.set(def.OpensAt)
	ct, _ := EncryptBallot(def, NamedNullifier(def.SurveyID, agent.AccountID), []any{0})
	first, err := e.s.CastNamed(ctx, agent.Caller, def.SurveyID, ct)
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := EncryptBallot(def, NamedNullifier(def.SurveyID, agent.AccountID), []any{1})
	if _, err := e.s.CastNamed(ctx, agent.Caller, def.SurveyID, ct2); !errors.Is(err, ErrAlreadyVoted) {
		t.Fatalf("second named ballot: %v", err)
	}
	// The first ballot again (its answer was lost): its receipt, once.
	if again, err := e.s.CastNamed(ctx, agent.Caller, def.SurveyID, ct); err != nil || again.Seq != first.Seq || !bytes.Equal(again.Hash, first.Hash) {
		t.Fatalf("the same named ballot again: %+v, %v; want the receipt of entry %d", again, err, first.Seq)
	}
	// So on a node with nothing cached, and on that node again.
	fresh := e.node(t)
	for _, n := range []string{"nothing cached", "cached"} {
		if again, err := fresh.CastNamed(ctx, agent.Caller, def.SurveyID, ct); err != nil || again.Seq != first.Seq || !bytes.Equal(again.Hash, first.Hash) {
			t.Fatalf("the same named ballot again, %s: %+v, %v; want the receipt of entry %d", n, again, err, first.Seq)
		}
		if _, err := fresh.CastNamed(ctx, agent.Caller, def.SurveyID, ct2); !errors.Is(err, ErrAlreadyVoted) {
			t.Fatalf("second named ballot, %s: %v", n, err)
		}
	}
	if n := e.count(t, `SELECT board_len FROM surveys WHERE id = $1`, def.SurveyID); n != 1 {
		t.Fatalf("board of %d entries after one named ballot sent twice", n)
	}
	if _, err := e.s.CastNamed(ctx, voter(9), def.SurveyID, ct); !errors.Is(err, ErrNotEligible) {
		t.Fatalf("named ballot of a non-member: %v", err)
	}
	e.clk.set(def.ClosesAt)
	if _, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Result(ctx, nil, def.SurveyID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("organisation result without a session: %v", err)
	}
	sr, err := e.s.Result(ctx, &agent.Caller, def.SurveyID)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := VerifyResult(sr, e.p.ca.Pool())
	entries, head := e.board(t, def)
	if err := CheckBoard(def, entries, head); err != nil || entries[0].Voter != agent.AccountID {
		t.Fatalf("named board: %v %+v", err, entries)
	}
	if st.Result.Questions[0].Options[0].Count != 1 {
		t.Fatalf("named count: %+v", st.Result.Questions[0])
	}
}
