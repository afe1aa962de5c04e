package payments

import (
	"context"
	"testing"
	"time"
)

// TestRetentionEndsAfterTenYears: a settled request and its books stay
// until the tenth calendar year after the one it was settled in has
// ended, then the sweep deletes them whole; an open request stays.
func TestRetentionEndsAfterTenYears(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		p := fee()
		p.DueDate = t0.Format(time.DateOnly)
		settled, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "k1", p)
		if err != nil {
			t.Fatal(err)
		}
		w.now = t0.Add(24 * time.Hour)
		if n, err := w.s.ExpireDue(ctx); err != nil || n != 1 {
			t.Fatalf("expire: %d %v", n, err)
		}
		open, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "k2", fee())
		if err != nil {
			t.Fatal(err)
		}
		count := func(q string, args ...any) int {
			t.Helper()
			var n int
			if err := w.d.QueryRow(ctx, q, args...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		// The last day of the tenth year after: still kept.
		w.now = time.Date(t0.Year()+RetentionYears, 12, 31, 23, 59, 0, 0, time.UTC)
		if n, err := w.s.ExpireRecords(ctx); err != nil || n != 0 {
			t.Fatalf("within retention: %d %v", n, err)
		}
		if count(`SELECT COUNT(*) FROM payments_ledger_tx WHERE request_id = $1`, settled.RequestID) == 0 {
			t.Fatal("the books of the settled request are gone before their time")
		}
		w.now = time.Date(t0.Year()+RetentionYears+1, 1, 1, 0, 0, 1, 0, time.UTC)
		if n, err := w.s.ExpireRecords(ctx); err != nil || n != 1 {
			t.Fatalf("after retention: %d %v", n, err)
		}
		for _, table := range []string{"payments_ledger_tx", "payments_transitions", "payments_requests"} {
			col := "request_id"
			if table == "payments_requests" {
				col = "id"
			}
			if c := count(`SELECT COUNT(*) FROM `+table+` WHERE `+col+` = $1`, settled.RequestID); c != 0 {
				t.Errorf("%s keeps %d rows of the settled request", table, c)
			}
		}
		if c := count(`SELECT COUNT(*) FROM payments_requests WHERE id = $1`, open.RequestID); c != 1 {
			t.Error("the open request was deleted")
		}
		if c := count(`SELECT COUNT(*) FROM payments_ledger_entries e JOIN payments_ledger_tx x ON x.id = e.tx_id WHERE x.request_id = $1`, open.RequestID); c == 0 {
			t.Error("the open request's books were deleted")
		}
		if n, err := w.s.ExpireRecords(ctx); err != nil || n != 0 {
			t.Fatalf("again: %d %v", n, err)
		}
		w.balanced()
	})
}
