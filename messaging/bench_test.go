package messaging_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
)

// BenchmarkClaimBundle measures one claim of one device's bundle: the rate
// limit upsert, the directory lookup (in memory here) and the transaction
// that takes one one-time prekey of each kind ("one-time"), or finds none
// and serves the last-resort key ("last-resort"). Each claim comes from
// another account so the rate limit never refuses.
func BenchmarkClaimBundle(b *testing.B) {
	engines := map[string]func(testing.TB, ...db.Migrations) *db.DB{"sqlite": dbtest.SQLite}
	if os.Getenv(dbtest.PostgresEnv) != "" {
		engines["postgres"] = dbtest.Postgres
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		open, ok := engines[engine]
		if !ok {
			continue
		}
		for _, oneTime := range []bool{true, false} {
			name := engine + "/last-resort"
			if oneTime {
				name = engine + "/one-time"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				d := open(b, messaging.Migrations())
				now := testNow
				dir := newFakeDir(b)
				s := newService(b, d, dir, &now)
				bob := dir.enroll(b, "bob", "bob-phone", false)
				if _, err := s.Publish(ctx, bob.caller(), bob.publishRequest(b)); err != nil {
					b.Fatal(err)
				}
				next := uint32(1)
				refill := func() {
					for range messaging.MaxStoredPrekeys / messaging.MaxPrekeyBatch {
						if _, err := s.AddPrekeys(ctx, bob.caller(), bob.batch(b, next, messaging.MaxPrekeyBatch, messaging.MaxPrekeyBatch)); err != nil {
							b.Fatal(err)
						}
						next += messaging.MaxPrekeyBatch
					}
				}
				if oneTime {
					refill()
				}
				req := &messaging.ClaimRequest{AccountID: "bob"}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if oneTime && i > 0 && i%messaging.MaxStoredPrekeys == 0 {
						b.StopTimer()
						refill()
						b.StartTimer()
					}
					resp, err := s.Claim(ctx, messaging.Caller{AccountID: fmt.Sprint("c", i), DeviceID: "d"}, req)
					if err != nil {
						b.Fatal(err)
					}
					if len(resp.Bundles) != 1 || resp.Bundles[0].Bundle.HasOneTimePrekey() != oneTime {
						b.Fatalf("claim %d: %+v", i, resp)
					}
				}
			})
		}
	}
}
