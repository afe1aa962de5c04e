package cases

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		c, replay, err := w.s.Open(ctx, as(citizen), amt, hund("sub-1"))
		if err != nil || replay {
			t.Fatal(err, replay)
		}
		if c.Status != StatusReceived || c.DueDate != "2026-05-18" || c.Seq != 1 || c.FeeRequest == "" {
			t.Fatalf("opened %+v", c)
		}
		// The citizen's client retries: the same case, no second fee.
		again, replay, err := w.s.Open(ctx, as(citizen), amt, hund("sub-1"))
		if err != nil || !replay || again.ID != c.ID || again.FeeRequest != c.FeeRequest || w.fees.charged[c.ID] != 1 {
			t.Fatalf("replay %+v %v %v %v", again, replay, err, w.fees.charged)
		}
		if _, err := w.s.Assign(ctx, as(agentA), c.ID, agentA); err != nil {
			t.Fatal(err)
		}
		for _, st := range []string{StatusNeedsInformation, StatusInProgress, StatusDecided} {
			if c, err = w.s.SetStatus(ctx, as(agentB), c.ID, st); err != nil {
				t.Fatal(st, err)
			}
		}
		if c.Status != StatusDecided || c.Assignee != agentA || c.Seq != 5 {
			t.Fatalf("decided %+v", c)
		}
		// Decided is final.
		if _, err := w.s.SetStatus(ctx, as(agentA), c.ID, StatusInProgress); !errors.Is(err, ErrTransition) {
			t.Fatalf("reopen: %v", err)
		}
		got, evs, err := w.s.Get(ctx, as(citizen), c.ID)
		if err != nil || got.Status != StatusDecided || len(evs) != 5 {
			t.Fatalf("citizen's view %+v %v %v", got, evs, err)
		}
		var trail []string
		for _, e := range evs {
			trail = append(trail, fmt.Sprintf("%d %s %s %s", e.Seq, e.Status, e.Assignee, e.Actor))
		}
		want := "1 received  account:acc_citizen|2 received acc_agent_a account:acc_agent_a|3 needs_information acc_agent_a account:acc_agent_b|" +
			"4 in_progress acc_agent_a account:acc_agent_b|5 decided acc_agent_a account:acc_agent_b"
		if strings.Join(trail, "|") != want {
			t.Fatalf("history\n%s\nwant\n%s", strings.Join(trail, "|"), want)
		}
		// Every change was announced once, in order.
		var seqs []int
		for _, a := range w.ann.all() {
			seqs = append(seqs, a.Seq)
		}
		if fmt.Sprint(seqs) != "[1 2 3 4 5]" {
			t.Fatalf("announced %v", seqs)
		}
	})
}

func TestListFilters(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		var ids []string
		for i := range 7 {
			r := hund(fmt.Sprintf("sub-%d", i))
			if i%2 == 1 {
				r = OpenRequest{SubmissionID: r.SubmissionID, TemplateID: "sperrmuell", Version: "2.1.0", TemplateHash: hundHash}
			}
			w.s.now = func() time.Time { return t0.Add(time.Duration(i) * time.Minute) }
			c, _, err := w.s.Open(ctx, as(fmt.Sprintf("acc_c%d", i)), amt, r)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, c.ID)
		}
		w.s.Assign(ctx, as(agentA), ids[2], agentA)
		w.s.SetStatus(ctx, as(agentA), ids[2], StatusNeedsInformation)
		w.s.Assign(ctx, as(agentA), ids[4], agentB)
		list := func(f Filter) string {
			cs, err := w.s.List(ctx, as(agentB), amt, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range cs {
				for i, id := range ids {
					if id == c.ID {
						out = append(out, fmt.Sprint(i))
					}
				}
			}
			return strings.Join(out, ",")
		}
		for _, c := range []struct {
			f    Filter
			want string
		}{
			{Filter{}, "6,5,4,3,2,1,0"},
			{Filter{Status: StatusNeedsInformation}, "2"},
			{Filter{Assignee: agentB}, "4"},
			{Filter{Assignee: "none"}, "6,5,3,1,0"},
			{Filter{Limit: 3}, "6,5,4"},
			{Filter{Limit: 3, After: ids[4]}, "3,2,1"},
			{Filter{Status: StatusReceived, Assignee: agentB}, "4"},
		} {
			if got := list(c.f); got != c.want {
				t.Errorf("%+v: %s, want %s", c.f, got, c.want)
			}
		}
		// The sperrmüll template has no fee: no payment request.
		if c, _, _ := w.s.Get(ctx, as(agentA), ids[1]); c.FeeRequest != "" || c.DueDate != "2026-05-11" {
			t.Fatalf("no-fee case %+v", c)
		}
	})
}

// TestBadInput: refused with the domain's error, nothing stored.
func TestBadInput(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		c, _, err := w.s.Open(ctx, as(citizen), amt, hund("sub-1"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.s.SetStatus(ctx, as(agentA), c.ID, StatusInProgress); err != nil {
			t.Fatal(err)
		}
		before := rowCounts(t, w.d)
		for name, tc := range map[string]struct {
			org string
			r   OpenRequest
			err error
		}{
			"unknown form":          {amt, OpenRequest{SubmissionID: "s2", TemplateID: "katze", Version: "1.0.0", TemplateHash: hundHash}, ErrUnknownTemplate},
			"unknown version":       {amt, OpenRequest{SubmissionID: "s2", TemplateID: "hund", Version: "1.0.1", TemplateHash: hundHash}, ErrUnknownTemplate},
			"withdrawn form":        {amt, OpenRequest{SubmissionID: "s2", TemplateID: "alt", Version: "1.0.0", TemplateHash: hundHash}, ErrWithdrawn},
			"other hash":            {amt, OpenRequest{SubmissionID: "s2", TemplateID: "hund", Version: "1.0.0", TemplateHash: "sha256:" + strings.Repeat("2", 64)}, ErrTemplateMismatch},
			"version not semver":    {amt, OpenRequest{SubmissionID: "s2", TemplateID: "hund", Version: "1", TemplateHash: hundHash}, ErrInvalid},
			"hash upper case":       {amt, OpenRequest{SubmissionID: "s2", TemplateID: "hund", Version: "1.0.0", TemplateHash: "sha256:" + strings.Repeat("A", 64)}, ErrInvalid},
			"submission id spaces":  {amt, OpenRequest{SubmissionID: "s 2", TemplateID: "hund", Version: "1.0.0", TemplateHash: hundHash}, ErrInvalid},
			"unknown organisation":  {"org_nobody", hund("s2"), ErrNotFound},
			"same id, other params": {amt, OpenRequest{SubmissionID: "sub-1", TemplateID: "sperrmuell", Version: "2.1.0", TemplateHash: hundHash}, ErrConflict},
			"same id, other org":    {other, OpenRequest{SubmissionID: "sub-1", TemplateID: "sperrmuell", Version: "2.1.0", TemplateHash: hundHash}, ErrConflict},
			"fee, no fee account":   {other, hund("s3"), ErrNoFeeAccount},
		} {
			if _, _, err := w.s.Open(ctx, as(citizen), tc.org, tc.r); !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", name, err, tc.err)
			}
		}
		for name, f := range map[string]func() error{
			"unknown status":    func() error { _, err := w.s.SetStatus(ctx, as(agentA), c.ID, "closed"); return err },
			"back to received":  func() error { _, err := w.s.SetStatus(ctx, as(agentA), c.ID, StatusReceived); return err },
			"assign a member":   func() error { _, err := w.s.Assign(ctx, as(agentA), c.ID, "acc_member"); return err },
			"assign a stranger": func() error { _, err := w.s.Assign(ctx, as(agentA), c.ID, "acc_nobody"); return err },
			"list bad status":   func() error { _, err := w.s.List(ctx, as(agentA), amt, Filter{Status: "x"}); return err },
			"list huge page":    func() error { _, err := w.s.List(ctx, as(agentA), amt, Filter{Limit: MaxList + 1}); return err },
			"list foreign after": func() error {
				_, err := w.s.List(ctx, as(agentA), amt, Filter{After: "case_" + strings.Repeat("a", 26)})
				return err
			},
		} {
			if err := f(); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTransition) {
				t.Errorf("%s: %v", name, err)
			}
		}
		if after := rowCounts(t, w.d); after != before {
			t.Fatalf("rows changed: %s → %s", before, after)
		}
	})
}

func TestOpenLimit(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.s.Limit = 2
		for i := range 2 {
			if _, _, err := w.s.Open(ctx, as(citizen), amt, hund(fmt.Sprint("s", i))); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := w.s.Open(ctx, as(citizen), amt, hund("s9")); !errors.Is(err, ErrTooMany) {
			t.Fatalf("third: %v", err)
		}
		// Another organisation counts apart.
		if _, _, err := w.s.Open(ctx, as(citizen), other, OpenRequest{SubmissionID: "s9", TemplateID: "sperrmuell", Version: "2.1.0", TemplateHash: hundHash}); err != nil {
			t.Fatal(err)
		}
	})
}
