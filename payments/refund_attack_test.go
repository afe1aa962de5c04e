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
		// at runs fn in racers goroutines released together.
		at := func(fn func(i int)) {
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					fn(i)
				}()
			}
			close(start)
			wg.Wait()
		}
		// Reads first, so that the pool holds a connection per racer and
		// the refunds start together rather than one connection at a time.
		at(func(int) { _, _ = w.s.Request(ctx, owner, r.RequestID) })
		at(func(i int) { _, _, errs[i] = w.s.Refund(ctx, owner, r.RequestID, fmt.Sprintf("rf-%d", i), 3700) })
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

// TestRefundProviderDown: a refund the provider does not confirm stays
// booked and pending — nothing else can be refunded in its place — and is
// paid out once when the client retries with its key, or by the sweep.
func TestRefundProviderDown(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		r, pay := w.pay(t, "k1")
		hdr, body := webhook(t, w.now, WebhookEvent{ID: "evt_1", Type: "payment.succeeded", PaymentID: pay, RequestID: r.RequestID, AmountCents: 3700, Currency: "EUR"})
		if _, _, err := w.s.HandleWebhook(ctx, "psp", hdr, body); err != nil {
			t.Fatal(err)
		}
		owner := actor("acc-amtsleiter")
		pending := func() (n int) {
			t.Helper()
			if err := w.d.QueryRow(ctx, `SELECT COUNT(*) FROM payments_refunds WHERE status = 'pending'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		w.psp.down.Store(true)
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", 3000); !errors.Is(err, ErrProvider) {
			t.Fatalf("refund with the provider down: %v", err)
		}
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-2", 3000); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a second refund beside a booked one: %v", err)
		}
		if got, _ := w.s.Balance(ctx, orgAmt, AccRefunds); got != 3000 || pending() != 1 || w.psp.refunds.Load() != 0 {
			t.Fatalf("booked %d, %d pending, %d paid out", got, pending(), w.psp.refunds.Load())
		}
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", 3000); !errors.Is(err, ErrProvider) {
			t.Fatalf("retry with the provider still down: %v", err)
		}
		w.psp.down.Store(false)
		res, replay, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", 3000)
		if err != nil || !replay || res.RefundedCents != 3000 || pending() != 0 || w.psp.refunds.Load() != 1 {
			t.Fatalf("retry: %+v %v %v, %d pending, %d paid out", res, replay, err, pending(), w.psp.refunds.Load())
		}

		// A client that never retries: the sweep pays out, once.
		w.psp.down.Store(true)
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-3", 700); !errors.Is(err, ErrProvider) {
			t.Fatalf("refund with the provider down: %v", err)
		}
		w.psp.down.Store(false)
		if n, err := w.s.RetryRefunds(ctx); err != nil || n != 0 {
			t.Fatalf("sweep before RefundRetryAfter: %d %v", n, err)
		}
		w.now = w.now.Add(RefundRetryAfter)
		for range 2 {
			if _, err := w.s.RetryRefunds(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if pending() != 0 || w.psp.refunds.Load() != 2 {
			t.Fatalf("after the sweep: %d pending, %d paid out", pending(), w.psp.refunds.Load())
		}
		w.balanced()
	})
}
