package identity

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/benchcpu"
	"github.com/kanal-server/kanal/internal/db"
)

// BenchmarkSessionRead: one request's read of its session, one lookup at
// a time (what each request over HTTP does when no other waits with it;
// on SQLite nearly every query reads a single session), among 20,000
// live sessions of 200 devices (a city's node holds more). On SQLite it
// compares the statement over the two tables' rows ("tables", the read
// before migration 0007) with the one over the covering indexes
// ("covering", sessionQuery), and the latter under a context with a
// deadline ("covering-timeout", as query gave it on SQLite before: the
// cost of the goroutines that watch such a context); "request" is the
// lookup as identify makes it, on both engines. cpu-ns/op is this
// process's CPU (SQLite's work included, PostgreSQL's not).
func BenchmarkSessionRead(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			d, e, users := benchUsers(b, engine, 200)
			ctx := context.Background()
			// More sessions of the same devices, as more logins would
			// leave them, in one transaction.
			refs := make([]string, 20000)
			expires := e.clock.now().Add(time.Hour).Unix()
			if err := d.Tx(ctx, func(tx *sql.Tx) error {
				for i := range refs {
					u := users[i%len(users)]
					refs[i] = hashToken(fmt.Sprintf("kanal_s_bench%d", i))
					if _, err := tx.ExecContext(ctx, `INSERT INTO identity_sessions (token_hash, family, account_id, device_id, level, expires_at, revoked) VALUES ($1, $2, $3, $4, 1, $5, 0)`,
						refs[i], refs[i][:16], u.account, u.device, expires); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if engine == "sqlite" {
				tables := strings.Replace(sessionQuery(db.SQLite, 1), sessionsJoin(db.SQLite), sessionsJoin(db.Postgres), 1)
				for _, c := range []struct {
					name, q string
					timeout bool
				}{{"tables", tables, false}, {"covering", sessionQuery(db.SQLite, 1), false}, {"covering-timeout", sessionQuery(db.SQLite, 1), true}} {
					b.Run(c.name, func(b *testing.B) {
						done := benchcpu.Start(b)
						i := 0
						for b.Loop() {
							qctx, cancel := ctx, context.CancelFunc(func() {})
							if c.timeout {
								qctx, cancel = context.WithTimeout(ctx, sessionReadTimeout)
							}
							rows, err := d.Query(qctx, c.q, refs[i*7919%len(refs)])
							if err != nil {
								b.Fatal(err)
							}
							n := 0
							for rows.Next() {
								n++
							}
							if err := rows.Close(); err != nil || n != 1 {
								b.Fatalf("%d rows: %v", n, err)
							}
							cancel()
							i++
						}
						done()
					})
				}
			}
			b.Run("request", func(b *testing.B) {
				done := benchcpu.Start(b)
				i := 0
				for b.Loop() {
					if _, found, err := e.svc.sessions.read(ctx, refs[i*7919%len(refs)]); err != nil || !found {
						b.Fatalf("found %v: %v", found, err)
					}
					i++
				}
				done()
			})
		})
	}
}
