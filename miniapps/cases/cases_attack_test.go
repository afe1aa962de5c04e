package cases

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestAttackOutsidersWorkACase: a citizen (even the case's own), another
// organisation's agent, and a member of the office without an agent role
// try, with their own sessions, to list the inbox, read, assign and move
// a case. Every attempt is refused — an outsider is not even told the
// case exists — and nothing changes.
func TestAttackOutsidersWorkACase(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		c, _, err := w.s.Open(ctx, as(citizen), amt, hund("sub-1"))
		if err != nil {
			t.Fatal(err)
		}
		before, announced := rowCounts(t, w.d), len(w.ann.all())
		for _, who := range []string{citizen, foreign, "acc_member", "acc_nobody"} {
			if _, err := w.s.List(ctx, as(who), amt, Filter{}); !errors.Is(err, ErrForbidden) {
				t.Errorf("%s lists the inbox: %v", who, err)
			}
			if _, err := w.s.Assign(ctx, as(who), c.ID, who); !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrNotFound) {
				t.Errorf("%s assigns: %v", who, err)
			}
			// Assigning the office's own agent does not help either.
			if _, err := w.s.Assign(ctx, as(who), c.ID, agentA); !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrNotFound) {
				t.Errorf("%s assigns agent A: %v", who, err)
			}
			if _, err := w.s.SetStatus(ctx, as(who), c.ID, StatusDecided); !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrNotFound) {
				t.Errorf("%s decides: %v", who, err)
			}
			if who != citizen {
				if _, _, err := w.s.Get(ctx, as(who), c.ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("%s reads the case: %v", who, err)
				}
			}
		}
		// The other organisation's agent cannot assign the case to
		// herself by naming it under her own organisation either: the
		// case's organisation is the server's, not the caller's.
		if _, err := w.s.List(ctx, as(foreign), other, Filter{}); err != nil {
			t.Fatal(err)
		} else if cs, _ := w.s.List(ctx, as(foreign), other, Filter{}); len(cs) != 0 {
			t.Fatalf("the other organisation's inbox holds %d cases", len(cs))
		}
		if after := rowCounts(t, w.d); after != before || len(w.ann.all()) != announced {
			t.Fatalf("changed: %s → %s, %d → %d announcements", before, after, announced, len(w.ann.all()))
		}
		if got, _, _ := w.s.Get(ctx, as(agentA), c.ID); got.Status != StatusReceived || got.Assignee != "" || got.Seq != 1 {
			t.Fatalf("case changed: %+v", got)
		}
	})
}

// TestAttackFeeAccount: an agent without the admin role, another
// organisation's admin and a citizen try to redirect the office's fees to
// their own account. Refused; the account stays the office's.
func TestAttackFeeAccount(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		thief := FeeAccount{Creditor: "Mallory", IBAN: "DE02120300000000202051"}
		for _, who := range []string{agentA, foreign, citizen} {
			if _, err := w.s.SetFeeAccount(ctx, as(who), amt, thief); !errors.Is(err, ErrForbidden) {
				t.Errorf("%s sets the fee account: %v", who, err)
			}
		}
		if _, err := w.s.SetFeeAccount(ctx, as(agentB), amt, FeeAccount{Creditor: "Stadtkasse", IBAN: "not an iban"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad IBAN: %v", err)
		}
		if _, err := w.s.FeeAccount(ctx, as(citizen), amt); !errors.Is(err, ErrForbidden) {
			t.Errorf("citizen reads the fee account: %v", err)
		}
		got, err := w.s.FeeAccount(ctx, as(agentA), amt)
		if err != nil || got.Creditor != "Stadtkasse" || got.IBAN != "DE89370400440532013000" {
			t.Fatalf("fee account %+v %v", got, err)
		}
	})
}

// TestAttackLevelTooLow: a form whose template needs level high (a
// weapons-possession card, say) is refused to a substantial session — with
// the step to take — and opens nothing; a high session opens it.
func TestAttackLevelTooLow(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		req := OpenRequest{SubmissionID: "sub-w", TemplateID: "waffen", Version: "1.0.0", TemplateHash: hundHash}
		before, announced := rowCounts(t, w.d), len(w.ann.all())
		for _, level := range []string{"", "low", "substantial"} {
			a := as(citizen)
			a.Level = level
			_, _, err := w.s.Open(ctx, a, amt, req)
			if !errors.Is(err, ErrLevel) {
				t.Fatalf("a %q session opens a high form: %v", level, err)
			}
			if p := problem(err); p == nil || p.Status != http.StatusForbidden || !strings.Contains(p.Detail, "kanal eid link") {
				t.Errorf("problem for %q: %+v", level, p)
			}
		}
		if after := rowCounts(t, w.d); after != before || len(w.ann.all()) != announced {
			t.Fatalf("a refused open changed rows %v -> %v or announced", before, after)
		}
		a := as(citizen)
		a.Level = "high"
		if c, _, err := w.s.Open(ctx, a, amt, req); err != nil || c.Status != StatusReceived {
			t.Fatalf("a high session: %v %+v", err, c)
		}
	})
}
