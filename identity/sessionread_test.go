package identity

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestSessionReadsConcurrent: many lookups at once, some of sessions that
// exist, some of hashes no session has, some whose requests gave up
// before or while waiting, each get their own answer — a row of another
// session is never handed to a request, and a request that gave up does
// not stall the ones after it.
func TestSessionReadsConcurrent(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		users := []*user{e.newUser("a@example.org", ""), e.newUser("b@example.org", ""), e.newUser("c@example.org", "")}
		var wg sync.WaitGroup
		for g := range 48 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					ctx := context.Background()
					if (g+i)%7 == 0 {
						c, cancel := context.WithCancel(ctx)
						cancel()
						ctx = c
					}
					u := users[(g+i)%len(users)]
					h := hashToken(u.session.Token)
					if (g+i)%5 == 0 {
						h = hashToken(fmt.Sprint("kanal_s_unknown", g, i))
					}
					row, found, err := e.svc.sessions.read(ctx, h)
					switch {
					case err != nil && ctx.Err() == nil:
						t.Errorf("lookup %d/%d: %v", g, i, err)
					case err != nil:
					case (g+i)%5 == 0 && found:
						t.Errorf("lookup %d/%d of an unknown hash found %+v", g, i, row)
					case (g+i)%5 != 0 && (!found || row.hash != h || row.device != u.device || row.account != u.account):
						t.Errorf("lookup %d/%d for %s: found %v, %+v", g, i, u.device, found, row)
					}
				}
			}()
		}
		wg.Wait()
		// The queue is empty and idle: a lookup now runs at once.
		if _, found, err := e.svc.sessions.read(context.Background(), hashToken(users[0].session.Token)); err != nil || !found {
			t.Fatalf("after: %v %v", found, err)
		}
		e.svc.sessions.mu.Lock()
		defer e.svc.sessions.mu.Unlock()
		if len(e.svc.sessions.waiting) != 0 || e.svc.sessions.running != 0 {
			t.Fatalf("%d waiting, %d running", len(e.svc.sessions.waiting), e.svc.sessions.running)
		}
	})
}
