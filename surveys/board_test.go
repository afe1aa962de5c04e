package surveys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// boardOf runs an anonymous survey with n ballots, one of them malformed
// inside its encryption, and returns it closed.
func boardOf(t *testing.T, n int) (*env, *Definition, *TallyKeyPair, []Entry, *Head, []*Receipt) {
	e := newEnv(t, dbtest.SQLite(t, sets...))
	def, tk := e.survey(t, ModeAnonymous, everyone)
	e.clk.set(def.OpensAt)
	var recs []*Receipt
	for i := range n {
		tok := e.token(t, def, voter(i))
		var rec *Receipt
		var err error
		if i == 1 {
			// A client that encrypts an out-of-range answer: the server
			// cannot see it, so it is accepted and counted as invalid.
			ct, serr := sealBallot(def, Nullifier(tok.Message), []byte(`{"answers":[7,[0],[0,1,2],3,null]}`))
			if serr != nil {
				t.Fatal(serr)
			}
			rec, err = e.s.CastAnonymous(context.Background(), def.SurveyID, tok, ct)
		} else {
			rec, err = e.cast(def, tok, intended(i))
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	e.clk.set(def.ClosesAt)
	entries, head := e.board(t, def)
	return e, def, tk, entries, head, recs
}

func TestReceipts(t *testing.T) {
	_, def, _, entries, head, recs := boardOf(t, 4)
	if err := CheckBoard(def, entries, head); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := FindReceipt(entries, r); err != nil {
			t.Fatalf("counted ballot %d: %v", r.Seq, err)
		}
	}
	madeUp := &Receipt{SurveyID: def.SurveyID, Seq: 2, Hash: make([]byte, 32)}
	rand.Read(madeUp.Hash)
	if err := FindReceipt(entries, madeUp); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("made-up receipt: %v", err)
	}
	if err := FindReceipt(entries, &Receipt{SurveyID: def.SurveyID, Seq: 99, Hash: recs[0].Hash}); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("receipt past the end: %v", err)
	}
}

// TestAlteringAnyEntryBreaksTheChain changes each field of each entry in
// turn, and also drops, swaps and appends entries: every change must make
// CheckBoard fail.
func TestAlteringAnyEntryBreaksTheChain(t *testing.T) {
	_, def, _, entries, head, _ := boardOf(t, 3)
	clone := func() []Entry {
		out := make([]Entry, len(entries))
		for i, e := range entries {
			out[i] = Entry{Seq: e.Seq, Prev: bytes.Clone(e.Prev), Nullifier: bytes.Clone(e.Nullifier), TokenMessage: bytes.Clone(e.TokenMessage),
				TokenSignature: bytes.Clone(e.TokenSignature), Voter: e.Voter, Ciphertext: bytes.Clone(e.Ciphertext), Hash: bytes.Clone(e.Hash)}
		}
		return out
	}
	fields := map[string]func(e *Entry){
		"seq":             func(e *Entry) { e.Seq += 1 },
		"prev":            func(e *Entry) { e.Prev[0] ^= 1 },
		"nullifier":       func(e *Entry) { e.Nullifier[0] ^= 1 },
		"token message":   func(e *Entry) { e.TokenMessage[40] ^= 1 },
		"token signature": func(e *Entry) { e.TokenSignature[0] ^= 1 },
		"voter":           func(e *Entry) { e.Voter = "acc_x" },
		"ciphertext":      func(e *Entry) { e.Ciphertext[len(e.Ciphertext)-1] ^= 1 },
		"hash":            func(e *Entry) { e.Hash[0] ^= 1 },
	}
	for i := range entries {
		for name, f := range fields {
			b := clone()
			f(&b[i])
			if err := CheckBoard(def, b, head); !errors.Is(err, ErrBadBoard) {
				t.Errorf("entry %d, %s altered: %v", i+1, name, err)
			}
			// Even with every later hash recomputed the chain breaks at the
			// signed head. (Recomputing undoes an altered hash itself.)
			if name == "hash" {
				continue
			}
			b = clone()
			f(&b[i])
			for j := i; j < len(b); j++ {
				if j > i {
					b[j].Prev = b[j-1].Hash
				}
				b[j].Hash = b[j].ComputeHash(def.SurveyID)
			}
			if err := CheckBoard(def, b, head); !errors.Is(err, ErrBadBoard) {
				t.Errorf("entry %d, %s altered and rehashed: %v", i+1, name, err)
			}
		}
	}
	b := clone()
	if err := CheckBoard(def, b[:len(b)-1], head); !errors.Is(err, ErrBadBoard) {
		t.Error("dropped last entry accepted")
	}
	b = clone()
	b[0], b[1] = b[1], b[0]
	if err := CheckBoard(def, b, head); !errors.Is(err, ErrBadBoard) {
		t.Error("swapped entries accepted")
	}
	b = clone()
	dup := b[0]
	dup.Seq, dup.Prev = int64(len(b)+1), b[len(b)-1].Hash
	dup.Hash = dup.ComputeHash(def.SurveyID)
	h2 := *head
	h2.Length, h2.Hash = head.Length+1, dup.Hash
	if err := CheckBoard(def, append(b, dup), &h2); !errors.Is(err, ErrBadBoard) {
		t.Error("a token counted twice accepted")
	}
}

func TestSignedHeadTamper(t *testing.T) {
	e, def, _, _, _, _ := boardOf(t, 2)
	_, sh, err := e.s.Board(context.Background(), def.SurveyID, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyHead(sh, e.p.ca.Pool()); err != nil {
		t.Fatal(err)
	}
	bad := *sh
	bad.Head = json.RawMessage(strings.Replace(string(sh.Head), `"length":2`, `"length":1`, 1))
	if _, err := VerifyHead(&bad, e.p.ca.Pool()); !errors.Is(err, ErrBadBoard) {
		t.Fatalf("altered head: %v", err)
	}
}

func TestTallyCountsInvalidOpenly(t *testing.T) {
	e, def, tk, entries, _, _ := boardOf(t, 4)
	sr, err := e.s.Tally(context.Background(), e.org.Caller, def.SurveyID, tk.Private)
	if err != nil {
		t.Fatal(err)
	}
	st, err := VerifyResult(sr, e.p.ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if st.Result.Valid != 3 || len(st.Result.Invalid) != 1 || st.Result.Invalid[0].Seq != 2 ||
		!strings.Contains(st.Result.Invalid[0].Reason, "out of range") {
		t.Fatalf("invalid ballots: %+v", st.Result.Invalid)
	}
	// A ciphertext moved to another entry no longer decrypts.
	moved := append([]Entry(nil), entries...)
	moved[0].Ciphertext, moved[2].Ciphertext = entries[2].Ciphertext, entries[0].Ciphertext
	r, err := Tally(def, tk.Private, moved)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Invalid) != 3 || r.Invalid[0].Reason != "does not decrypt" {
		t.Fatalf("moved ciphertexts: %+v", r.Invalid)
	}

	// The reports: CSV with counts and percentages, SVG that parses.
	var csv, svg bytes.Buffer
	if err := WriteCSV(&csv, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv.String(), "Ja,") || !strings.Contains(csv.String(), "invalid,,1") {
		t.Fatalf("csv:\n%s", csv.String())
	}
	if err := WriteSVG(&svg, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svg.String(), "<svg") || !strings.Contains(svg.String(), "Marktplatz") {
		t.Fatalf("svg:\n%s", svg.String())
	}
}

func TestReportsEscapeText(t *testing.T) {
	st := &Statement{Result: Result{SurveyID: "srv_x", Title: `<script>alert(1)</script>`, Questions: []QuestionResult{
		{Prompt: "Q & A", Kind: KindText, Answered: 1, Texts: []string{"=HYPERLINK(\"http://x\")"}},
		{Prompt: "P", Kind: KindSingle, Answered: 1, Options: []OptionResult{{Label: `"><svg onload=x>`, Count: 1, Percent: 100}}},
	}}, TalliedAt: time.Now()}
	var svg, csv bytes.Buffer
	if err := WriteSVG(&svg, st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(svg.String(), "<script") || strings.Contains(svg.String(), "<svg onload") {
		t.Fatalf("svg not escaped:\n%s", svg.String())
	}
	if err := WriteCSV(&csv, st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(csv.String(), ",=HYPERLINK") || !strings.Contains(csv.String(), "'=HYPERLINK") {
		t.Fatalf("csv formula not neutralised:\n%s", csv.String())
	}
}

func TestTallyPoll(t *testing.T) {
	t0 := time.Now()
	votes := []PollVote{
		{Voter: "a", Choices: []int{0}, SentAt: t0},
		{Voter: "a", Choices: []int{1}, SentAt: t0.Add(time.Second)}, // changes the vote
		{Voter: "b", Choices: []int{1}, SentAt: t0},
		{Voter: "c", Choices: []int{0, 1}, SentAt: t0},                 // two choices in a single poll
		{Voter: "d", Choices: []int{5}, SentAt: t0},                    // out of range
		{Voter: "e", Choices: []int{0}, SentAt: t0.Add(2 * time.Hour)}, // after closing
	}
	c := TallyPoll(2, false, t0.Add(time.Hour), votes)
	if c.Counts[0] != 0 || c.Counts[1] != 2 || c.Voters != 2 || c.Ignored != 3 {
		t.Fatalf("%+v", c)
	}
}
