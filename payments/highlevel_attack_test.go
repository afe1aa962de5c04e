package payments

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/payments/jws"
)

// TestAttackContractAboveHighAmount: above the amount its seller signed
// into the offer, a contract is registered only by the buyer from a high
// session; a substantial buyer, or the seller on the buyer's behalf, is
// refused with insufficient-level-of-assurance and nothing is stored.
func TestAttackContractAboveHighAmount(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.offerMod = func(o *jws.Offer) { o.HighAboveCents = o.TotalCents - 1 }
		contract := w.contract("offer-high", ca.LevelSubstantial)
		buyer, high := actor(citizen), actor(citizen)
		high.Level = ca.LevelHigh
		before := w.snapshot()
		for _, a := range []Actor{buyer, actor(seller)} {
			_, _, err := w.s.RegisterContract(ctx, a, "k-"+a.AccountID, contract)
			if !errors.Is(err, ErrLevelHigh) {
				t.Fatalf("%s at %v: %v", a.AccountID, a.Level, err)
			}
			p := problem(err)
			if p == nil || p.Status != http.StatusForbidden || p.Type != web.TypeInsufficientLevel || !strings.Contains(p.Detail, "kanal eid link") {
				t.Fatalf("problem %+v", p)
			}
		}
		// A high session of the seller is not the buyer's acceptance.
		sellerHigh := actor(seller)
		sellerHigh.Level = ca.LevelHigh
		if _, _, err := w.s.RegisterContract(ctx, sellerHigh, "k-sh", contract); !errors.Is(err, ErrLevelHigh) {
			t.Fatalf("seller in a high session: %v", err)
		}
		w.unchanged(before, "contracts above the seller's amount from no high session of the buyer")
		// The buyer's high session registers it; the seller then gets the
		// same record.
		info, _, err := w.s.RegisterContract(ctx, high, "k-high", contract)
		if err != nil || info.TotalCents != 5000 {
			t.Fatalf("high: %+v %v", info, err)
		}
		if again, _, err := w.s.RegisterContract(ctx, actor(seller), "k-s2", contract); err != nil || again.ContractID != info.ContractID {
			t.Fatalf("seller after the buyer: %+v %v", again, err)
		}

		// At the amount exactly, or without one, substantial is enough.
		w.now = w.now.Add(time.Minute)
		w.offerMod = func(o *jws.Offer) { o.HighAboveCents = o.TotalCents }
		if _, _, err := w.s.RegisterContract(ctx, buyer, "k-eq", w.contract("offer-equal", ca.LevelSubstantial)); err != nil {
			t.Fatalf("at the amount: %v", err)
		}
		w.offerMod = nil
		if _, _, err := w.s.RegisterContract(ctx, buyer, "k-none", w.contract("offer-none", ca.LevelSubstantial)); err != nil {
			t.Fatalf("without an amount: %v", err)
		}
	})
}
