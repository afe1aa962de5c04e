package identity

import (
	"testing"
	"time"
)

// TestAttackOldOperatorToken: the adversary holds an operator token that
// leaked long ago and was never rotated. Past its expiry it opens no
// operator route and changes nothing. Both engines.
func TestAttackOldOperatorToken(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		e.must(e.do("GET", "/v1/admin/audit", e.op, nil), 200)
		e.clock.advance(DefaultOperatorTokenTTL + time.Second)
		resp := e.do("POST", "/v1/admin/orgs", e.op, CreateOrgRequest{Name: "Fake Amt", Kind: KindOffice})
		if resp.status != 401 {
			t.Fatalf("operator token accepted %v after issue: %d", DefaultOperatorTokenTTL+time.Second, resp.status)
		}
		if n := e.countWhere("identity_orgs", "1 = 1"); n != 0 {
			t.Fatalf("%d organisations after the refused request", n)
		}
	})
}
