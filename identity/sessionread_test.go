package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

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

// TestCheckSessions: the gathered recheck of many streams' sessions gives,
// for each ref, what CheckSession gives it alone — live, logged out,
// expired, its device revoked, no such session, a ref given twice — and
// a thousand refs at once (SQLite's parameters, PostgreSQL's array) are
// answered in order.
func TestCheckSessions(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		live, out, expired, revoked := e.newUser("live@example.org", ""), e.newUser("out@example.org", ""),
			e.newUser("expired@example.org", ""), e.newUser("revoked@example.org", "")
		e.must(e.do("DELETE", "/v1/sessions/current", out.session.Token, nil), 204)
		if _, err := d.Exec(ctx, `UPDATE identity_sessions SET expires_at = $1 WHERE token_hash = $2`,
			e.clock.now().Unix(), hashToken(expired.session.Token)); err != nil {
			t.Fatal(err)
		}
		e.must(e.do("DELETE", "/v1/devices/"+revoked.device, revoked.session.Token, nil), 204)
		ref := func(u *user) string { return hashToken(u.session.Token) }
		want := map[string]error{ref(live): nil, ref(out): ErrSessionEnded, ref(expired): ErrSessionEnded,
			ref(revoked): ErrUnknownDevice, hashToken("kanal_s_none"): ErrSessionEnded}
		refs := []string{ref(live), ref(out), ref(expired), ref(revoked), hashToken("kanal_s_none"), ref(live)}
		for i := len(refs); i < MaxCheckSessions; i++ {
			if i%100 == 0 {
				refs = append(refs, ref(live))
			} else {
				refs = append(refs, hashToken(fmt.Sprint("kanal_s_unknown", i)))
			}
		}
		got, err := e.svc.CheckSessions(ctx, refs)
		if err != nil || len(got) != len(refs) {
			t.Fatalf("%d results, %v", len(got), err)
		}
		for i, r := range refs {
			alone := e.svc.CheckSession(ctx, r)
			if w, ok := want[r]; ok && !errors.Is(alone, w) || !ok && !errors.Is(alone, ErrSessionEnded) {
				t.Fatalf("ref %d: CheckSession says %v", i, alone)
			}
			if !errors.Is(got[i], alone) || (got[i] == nil) != (alone == nil) {
				t.Fatalf("ref %d: CheckSessions says %v, CheckSession %v", i, got[i], alone)
			}
		}
		if _, err := e.svc.CheckSessions(ctx, append(refs, ref(live))); err == nil {
			t.Fatalf("%d refs at once taken", len(refs)+1)
		}
	})
}

// TestSessionReadsWaitForTheRunningQuery: lookups that come while a query
// runs start none of their own: they wait, and the next query reads all
// of them at once.
func TestSessionReadsWaitForTheRunningQuery(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		users := []*user{e.newUser("a@example.org", ""), e.newUser("b@example.org", "")}
		q := e.svc.sessions
		// A query runs, started just now.
		q.mu.Lock()
		q.running, q.started = 1, time.Now()
		q.mu.Unlock()
		const n = 16
		errs := make(chan error, n)
		for i := range n {
			go func() {
				u := users[i%len(users)]
				row, found, err := q.read(context.Background(), hashToken(u.session.Token))
				if err == nil && (!found || row.device != u.device) {
					err = fmt.Errorf("lookup %d for %s: found %v, %+v", i, u.device, found, row)
				}
				errs <- err
			}()
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			q.mu.Lock()
			waiting, running := len(q.waiting), q.running
			q.mu.Unlock()
			if running != 1 {
				t.Fatalf("%d queries running: a lookup started its own beside the running one", running)
			}
			if waiting == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d lookups queued", waiting, n)
			}
		}
		// The running query ends: the next reads every lookup queued.
		q.mu.Lock()
		q.handOffLocked()
		if len(q.waiting) != 0 {
			t.Errorf("%d lookups left for a later query", len(q.waiting))
		}
		q.mu.Unlock()
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.running != 0 || len(q.waiting) != 0 {
			t.Fatalf("after: %d running, %d waiting", q.running, len(q.waiting))
		}
	})
}

// TestSessionReadsPastAStalledQuery: a query that has run longer than
// sessionReadPatience (a stalled connection) does not hold up the
// lookups that come: the next starts a second query, which answers it
// and stops, leaving the stalled one its place.
func TestSessionReadsPastAStalledQuery(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		u := e.newUser("a@example.org", "")
		q := e.svc.sessions
		q.mu.Lock()
		q.running, q.started = 1, time.Now().Add(-sessionReadPatience)
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		row, found, err := q.read(ctx, hashToken(u.session.Token))
		if err != nil || !found || row.device != u.device {
			t.Fatalf("lookup beside a stalled query: found %v, %+v, %v", found, row, err)
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.running != 1 || len(q.waiting) != 0 {
			t.Fatalf("after: %d running (want the stalled one), %d waiting", q.running, len(q.waiting))
		}
		// A second reader that finishes its batch while lookups wait
		// leaves them to the next query rather than staying on as a
		// second reader.
		newLookup := func() *sessionLookup {
			return &sessionLookup{hash: hashToken(u.session.Token), done: make(chan struct{}), lead: make(chan []*sessionLookup, 1)}
		}
		w := newLookup()
		q.running, q.waiting = 2, []*sessionLookup{w}
		q.mu.Unlock()
		b := newLookup()
		q.runBatch(ctx, []*sessionLookup{b})
		q.mu.Lock()
		if !b.found || b.err != nil {
			t.Fatalf("second reader's batch: found %v, %v", b.found, b.err)
		}
		if q.running != 1 || len(q.waiting) != 1 || len(w.lead) != 0 {
			t.Fatalf("after the second reader's batch: %d running, %d waiting, handed %d", q.running, len(q.waiting), len(w.lead))
		}
		q.running, q.waiting = 0, nil
	})
}

// TestSessionReadsUseCoveringIndexes: on SQLite every read of a session by
// its token's hash — a request's (sessionQuery), a stream's recheck
// (CheckSession, CheckSessions) — is answered from the covering indexes
// of migration 0007 alone, without reading a row of either table; and
// the answers stay right as sessions end (TestCheckSessions).
func TestSessionReadsUseCoveringIndexes(t *testing.T) {
	d := dbtest.Open(t, "sqlite", migrationSets()...)
	for name, q := range map[string]string{
		"request":  sessionQuery(db.SQLite, 4),
		"recheck":  checkSessionSQL(db.SQLite) + "= $1",
		"rechecks": checkSessionsSQL(db.SQLite) + "IN ($1, $2, $3)",
	} {
		plan := dbtest.SQLitePlan(t, d, q, "a", "b", "c", "d")
		want := []string{
			"SEARCH s USING COVERING INDEX identity_sessions_read (token_hash=?)",
			"SEARCH d USING COVERING INDEX identity_devices_read (id=?)",
		}
		if !slices.Equal(plan, want) {
			t.Errorf("%s: plan %q, want %q", name, plan, want)
		}
	}
}
