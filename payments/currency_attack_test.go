package payments

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestAttackForeignCurrencyCredit: a payer (anyone who can send a bank
// transfer) sends USD 37.00 with the reference of an open EUR 37.00
// request. The credit must not pay the request, must stay out of the EUR
// books, and the operator cannot resolve it as payment of the request.
func TestAttackForeignCurrencyCredit(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		p := fee()
		p.Reference = "RF18 5390 0754 7034"
		r, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "k1", p)
		if err != nil {
			t.Fatal(err)
		}
		xml, err := os.ReadFile("testdata/camt053.xml")
		if err != nil {
			t.Fatal(err)
		}
		// Only the first entry (37.00 with the request's reference) stays, in USD.
		doc := string(xml)
		start, end := strings.Index(doc, "<Ntry>"), strings.LastIndex(doc, "</Ntry>")+len("</Ntry>")
		first := doc[start : strings.Index(doc, "</Ntry>")+len("</Ntry>")]
		doc = doc[:start] + strings.Replace(first, `<Amt Ccy="EUR">37.00</Amt>`, `<Amt Ccy="USD">37.00</Amt>`, 1) + doc[end:]
		if !strings.Contains(doc, `Ccy="USD">37.00`) {
			t.Fatal("test statement not built")
		}
		bankBefore, _ := w.s.Balance(ctx, orgAmt, AccBank)
		unallocBefore, _ := w.s.Balance(ctx, "", AccUnmatched)
		ledgerBefore := w.snapshot().ledger
		op := Actor{Operator: true}
		res, err := w.s.ImportStatement(ctx, op, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matched) != 0 || len(res.Unmatched) != 1 || res.Unmatched[0].Currency != "USD" {
			t.Fatalf("import %+v", res)
		}
		if got, _ := w.s.Request(ctx, op, r.RequestID); got.Status != StatusOpen {
			t.Fatalf("request paid by a USD credit: %+v", got)
		}
		bank, _ := w.s.Balance(ctx, orgAmt, AccBank)
		unalloc, _ := w.s.Balance(ctx, "", AccUnmatched)
		if bank != bankBefore || unalloc != unallocBefore || w.snapshot().ledger != ledgerBefore {
			t.Fatalf("USD credit booked to the EUR books: bank %d → %d, unallocated %d → %d", bankBefore, bank, unallocBefore, unalloc)
		}
		before := w.snapshot()
		if _, err := w.s.Resolve(ctx, op, res.Unmatched[0].ID, r.RequestID, ""); !errors.Is(err, ErrState) {
			t.Fatalf("USD credit resolved as payment of an EUR request: %v", err)
		}
		w.unchanged(before, "resolving a USD credit to an EUR request")
		if got, _ := w.s.Request(ctx, op, r.RequestID); got.Status != StatusOpen {
			t.Fatalf("request %+v", got)
		}
		// Sent back: resolved, still nothing in the EUR books.
		if _, err := w.s.Resolve(ctx, op, res.Unmatched[0].ID, "", "returned to the payer"); err != nil {
			t.Fatal(err)
		}
		if bank, _ := w.s.Balance(ctx, orgAmt, AccBank); bank != bankBefore || w.snapshot().ledger != ledgerBefore {
			t.Fatalf("returning a USD credit moved EUR: bank %d", bank)
		}
		w.balanced()
	})
}
