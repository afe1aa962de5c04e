package identity

import (
	"context"
	"fmt"
	"testing"
)

// An organisation has at most MaxOrgMembers members, so that a citizen's
// message to it — one envelope per device of every member, and one per
// other device of the citizen — fits one send. The member past the limit
// is refused with too-many-members and nothing changes; after a removal
// there is room again.
func TestOrgMemberLimit(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		f := e.newOrg(KindOffice) // owner, admin and agent
		for i := 3; i < MaxOrgMembers; i++ {
			id := fmt.Sprintf("acc_member%03d", i)
			if _, err := e.d.Exec(context.Background(), `INSERT INTO identity_accounts (id, email, created_at) VALUES ($1, $2, 0)`,
				id, fmt.Sprintf("m%03d@example.de", i)); err != nil {
				t.Fatal(err)
			}
			e.must(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", e.op, AddMemberRequest{AccountID: id, Role: RoleAgent}), 201)
		}
		extra := e.newUser("one-too-many@example.de", "one too many's long password")
		before := e.count("identity_members")
		e.mustProblem(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", e.op, AddMemberRequest{AccountID: extra.account, Role: RoleAgent}), 409, TypeTooManyMembers)
		e.mustProblem(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", f.owner.session.Token, AddMemberRequest{Email: extra.email, Role: RoleAgent}), 409, TypeTooManyMembers)
		if n := e.count("identity_members"); n != before || n != MaxOrgMembers {
			t.Fatalf("%d members after refusals, want %d", n, MaxOrgMembers)
		}
		e.must(e.do("DELETE", "/v1/orgs/"+f.org.OrgID+"/members/acc_member050", e.op, nil), 204)
		e.must(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", e.op, AddMemberRequest{AccountID: extra.account, Role: RoleAgent}), 201)
	})
}
