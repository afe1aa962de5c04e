package identity

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOperatorActionsAudited: every request made with an operator token
// is in the audit log with the token's id, before the change it makes,
// and no entry holds the token.
func TestOperatorActionsAudited(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		var org Organisation
		e.must(e.do("POST", "/v1/admin/orgs", e.op, CreateOrgRequest{Name: "Amt", Kind: KindOffice}), 201).decode(t, &org)
		e.mustProblem(e.do("POST", "/v1/admin/orgs/org_nope/verify", e.op, nil), 404, "urn:kanal:problem:not-found")
		var al AuditList
		e.must(e.do("GET", "/v1/admin/audit", e.op, nil), 200).decode(t, &al)
		type row struct{ actor, action, detail string }
		want := []row{
			{"kanald", "operator.issue", "op1 expires "},
			{"operator:op1", "operator.request", "POST /v1/admin/orgs"},
			{"operator:op1", "org.create", "office: Amt"},
			{"operator:op1", "operator.request", "POST /v1/admin/orgs/org_nope/verify"},
			{"operator:op1", "operator.request", "GET /v1/admin/audit"},
		}
		if len(al.Entries) != len(want) {
			t.Fatalf("audit %+v, want %d entries", al.Entries, len(want))
		}
		for i, w := range want {
			g := al.Entries[i]
			if g.Actor != w.actor || g.Action != w.action || !strings.HasPrefix(g.Detail, w.detail) {
				t.Fatalf("entry %d = %+v, want %+v", i, g, w)
			}
			if strings.Contains(g.Detail+g.Actor, "kanal_op_") {
				t.Fatalf("entry %d holds a token: %+v", i, g)
			}
		}
	})
}

// TestOperatorReset: a reset issues the next token, revokes every earlier
// one and says so in the audit log; a reset whose hand-over fails issues
// nothing and revokes nothing.
func TestOperatorReset(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		opts := func(deliver func(string, OperatorToken) error) OperatorOptions {
			return OperatorOptions{Actor: "kanald operator reset", Deliver: deliver, Now: e.clock.now, TTL: 24 * time.Hour}
		}
		if _, _, err := ResetOperator(t.Context(), e.d, opts(func(string, OperatorToken) error { return errors.New("disk full") })); err == nil {
			t.Fatal("reset succeeded without handing the token over")
		}
		e.must(e.do("GET", "/v1/admin/audit", e.op, nil), 200)

		var fresh string
		tok, revoked, err := ResetOperator(t.Context(), e.d, opts(func(s string, _ OperatorToken) error { fresh = s; return nil }))
		if err != nil || tok.ID != "op2" || len(revoked) != 1 || revoked[0] != "op1" || !tok.ExpiresAt.Equal(e.clock.now().Add(24*time.Hour)) {
			t.Fatalf("reset: %+v %v %v", tok, revoked, err)
		}
		e.mustProblem(e.do("GET", "/v1/admin/audit", e.op, nil), 401, TypeInvalidToken)
		var al AuditList
		e.must(e.do("GET", "/v1/admin/audit", fresh, nil), 200).decode(t, &al)
		var reset *AuditEntry
		for i, a := range al.Entries {
			if a.Action == "operator.reset" {
				reset = &al.Entries[i]
			}
		}
		if reset == nil || reset.Actor != "kanald operator reset" || !strings.HasSuffix(reset.Detail, "; revoked op1") {
			t.Fatalf("reset entry %+v", reset)
		}
		cur, ok, err := CurrentOperator(t.Context(), e.d, e.clock.now())
		if err != nil || !ok || cur.ID != "op2" {
			t.Fatalf("current %+v %v %v", cur, ok, err)
		}
		// The fresh token expires after its own lifetime.
		e.clock.advance(24*time.Hour + time.Second)
		e.mustProblem(e.do("GET", "/v1/admin/audit", fresh, nil), 401, TypeInvalidToken)
		if _, ok, _ := CurrentOperator(t.Context(), e.d, e.clock.now()); ok {
			t.Fatal("an expired token is current")
		}
		// A lifetime outside the bounds is refused.
		for _, ttl := range []time.Duration{time.Minute, MaxOperatorTokenTTL + time.Hour} {
			o := opts(func(string, OperatorToken) error { return nil })
			o.TTL = ttl
			if _, _, err := ResetOperator(t.Context(), e.d, o); err == nil {
				t.Fatalf("lifetime %v accepted", ttl)
			}
		}
	})
}

// TestOperatorResetConcurrent: resets racing on two connections leave
// exactly one working token, the one a successful reset handed over.
func TestOperatorResetConcurrent(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		const n = 4
		toks := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, errs[i] = ResetOperator(t.Context(), e.d, OperatorOptions{Actor: "test", Now: e.clock.now,
					Deliver: func(s string, _ OperatorToken) error { toks[i] = s; return nil }})
			}()
		}
		wg.Wait()
		working := 0
		for i := range n {
			if e.do("GET", "/v1/admin/audit", toks[i], nil).status == 200 {
				working++
				if errs[i] != nil {
					t.Fatalf("reset %d failed (%v) but its token works", i, errs[i])
				}
			}
		}
		if working != 1 || e.countWhere("identity_operator_tokens", "revoked_at IS NULL") != 1 {
			t.Fatalf("%d tokens work after concurrent resets (errors %v)", working, errs)
		}
		if e.do("GET", "/v1/admin/audit", e.op, nil).status != 401 {
			t.Fatal("the first token survived the resets")
		}
	})
}
