package identity

import (
	"context"
	"fmt"
	"testing"

	"github.com/kanal-server/kanal/internal/benchcpu"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// BenchmarkCheckSessions: the periodic recheck of a node's streams'
// sessions, asked one by one (CheckSession per stream, as before) and
// gathered (CheckSessions for all); one op is 200 live sessions checked.
// cpu-ns/op is this process's CPU (SQLite's work included, PostgreSQL's
// not); ns/op on PostgreSQL is mostly round trips.
func BenchmarkCheckSessions(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			_, e, users := benchUsers(b, engine, 200)
			refs := make([]string, len(users))
			for i, u := range users {
				refs[i] = hashToken(u.session.Token)
			}
			ctx := context.Background()
			b.Run("one-by-one", func(b *testing.B) {
				done := benchcpu.Start(b)
				for range b.N {
					for _, r := range refs {
						if err := e.svc.CheckSession(ctx, r); err != nil {
							b.Fatal(err)
						}
					}
				}
				done()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(refs)), "ns/session")
			})
			b.Run("gathered", func(b *testing.B) {
				done := benchcpu.Start(b)
				for range b.N {
					errs, err := e.svc.CheckSessions(ctx, refs)
					if err != nil {
						b.Fatal(err)
					}
					for _, err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				done()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(refs)), "ns/session")
			})
		})
	}
}

// benchUsers opens a database of engine for identity and signs up n users,
// each with an enrolled device and a session.
func benchUsers(b *testing.B, engine string, n int) (*db.DB, *env, []*user) {
	d := dbtest.Open(b, engine, migrationSets()...)
	e := newEnv(b, d, func(o *Options) { o.SignupLimits = SignupLimits{PerClient: 1000, Global: 1000} })
	users := make([]*user, n)
	for i := range users {
		users[i] = e.newUser(fmt.Sprintf("u%d@example.org", i), "")
	}
	return d, e, users
}
