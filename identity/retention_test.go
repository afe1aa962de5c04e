package identity

import (
	"context"
	"testing"
	"time"
)

// TestExpireSessions: the sweep deletes setup tokens and challenges past
// their expiry at once, keeps an expired session so that it is still
// answered "session expired" while its login could be refreshed, then
// deletes it with its refresh token and the login throttle counters.
func TestExpireSessions(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		u := e.newUser("sweep@example.org", "correct horse battery")
		// A failed login leaves throttle counters (by account, by address).
		e.do("POST", "/v1/sessions", "", e.loginReq(u.device, u.key, "wrong password, long"))
		for _, table := range []string{"identity_sessions", "identity_refresh_tokens", "identity_setup_tokens", "identity_challenges", "identity_throttle"} {
			if e.count(table) == 0 {
				t.Fatalf("%s is empty before the sweep", table)
			}
		}
		if n, err := e.svc.ExpireSessions(ctx); err != nil || n != 0 {
			t.Fatalf("nothing has expired yet: %d %v", n, err)
		}
		e.clock.advance(SetupTokenLifetime + time.Second)
		if _, err := e.svc.ExpireSessions(ctx); err != nil {
			t.Fatal(err)
		}
		if e.count("identity_setup_tokens") != 0 || e.count("identity_challenges") != 0 {
			t.Fatal("an expired setup token or challenge survived the sweep")
		}
		e.clock.advance(SessionLifetime)
		if _, err := e.svc.ExpireSessions(ctx); err != nil {
			t.Fatal(err)
		}
		e.mustProblem(e.do("GET", "/v1/me", u.session.Token, nil), 401, TypeSessionExpired)
		e.clock.advance(RefreshLifetime)
		if _, err := e.svc.ExpireSessions(ctx); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"identity_sessions", "identity_refresh_tokens"} {
			if n := e.count(table); n != 0 {
				t.Errorf("%s keeps %d rows past their retention", table, n)
			}
		}
		// Sign-up counters are ExpireSignups' to sweep.
		var n int
		if err := e.d.QueryRow(ctx, `SELECT COUNT(*) FROM identity_throttle WHERE key NOT LIKE 'signup:%'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("identity_throttle keeps %d login counters past their retention (%v)", n, err)
		}
		e.mustProblem(e.do("GET", "/v1/me", u.session.Token, nil), 401, TypeInvalidToken)
	})
}
