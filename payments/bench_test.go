package payments

import (
	"context"
	"fmt"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/payments/jws"
)

// BenchmarkCreateRequest measures an idempotent create: validation, the
// request, its transition, a balanced ledger transaction with its check,
// the audit line and the idempotency record, in one transaction.
func BenchmarkCreateRequest(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			d := dbtest.SQLite(b, Migrations())
			if engine == "postgres" {
				d = dbtest.Postgres(b, Migrations())
			}
			w := newWorld(b, d)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, fmt.Sprint("k", i), fee()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWebhook measures a verified webhook that pays a request:
// HMAC check, event id insert, conditional update, ledger, audit.
func BenchmarkWebhook(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			d := dbtest.SQLite(b, Migrations())
			if engine == "postgres" {
				d = dbtest.Postgres(b, Migrations())
			}
			w := newWorld(b, d)
			ctx := context.Background()
			ids := make([]string, b.N)
			for i := range ids {
				r, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, fmt.Sprint("k", i), fee())
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = r.RequestID
			}
			b.ResetTimer()
			for i, id := range ids {
				hdr, body := webhook(b, w.now, WebhookEvent{ID: fmt.Sprint("evt_", i), Type: "payment.succeeded", PaymentID: "p", RequestID: id, AmountCents: 3700, Currency: "EUR"})
				if _, _, err := w.s.HandleWebhook(ctx, "psp", hdr, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyContract measures offline verification of a contract:
// two signatures, three certificate chains, the membership and the CRL.
func BenchmarkVerifyContract(b *testing.B) {
	w := newWorld(b, dbtest.SQLite(b, Migrations()))
	contract := w.contract("offer-1", ca.LevelSubstantial)
	opts := jws.VerifyOptions{CA: w.ca.Certificate()}
	b.ResetTimer()
	for range b.N {
		if _, err := jws.VerifyContract(contract, opts); err != nil {
			b.Fatal(err)
		}
	}
}
