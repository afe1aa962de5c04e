package payments

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestAttackRefundRace: an organisation admin — or whoever holds a
// substantial session of one — sends many refunds of the whole amount at
// once, each with its own Idempotency-Key, so that every one passes the
// "is anything left to refund" check before any is booked and the
// provider pays out several times. The refund is booked first, under a
// conditional update, and only the booked one reaches the provider.
func TestAttackRefundRace(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		r, pay := w.pay(t, "k1")
		hdr, body := webhook(t, w.now, WebhookEvent{ID: "evt_1", Type: "payment.succeeded", PaymentID: pay, RequestID: r.RequestID, AmountCents: 3700, Currency: "EUR"})
		if _, _, err := w.s.HandleWebhook(ctx, "psp", hdr, body); err != nil {
			t.Fatal(err)
		}
		const racers = 20
		owner := actor("acc-amtsleiter")
		errs := make([]error, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, _, errs[i] = w.s.Refund(ctx, owner, r.RequestID, fmt.Sprintf("rf-%d", i), 3700)
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrState):
				t.Fatalf("a losing refund: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d of %d concurrent full refunds succeeded, want exactly 1", won, racers)
		}
		if n := w.psp.refunds.Load(); n != 1 {
			t.Fatalf("the provider paid out %d refunds of the whole amount, want 1", n)
		}
		if got, _ := w.s.Balance(ctx, orgAmt, AccRefunds); got != 3700 {
			t.Fatalf("refunds account %d, want 3700", got)
		}
		w.balanced()
	})
}
