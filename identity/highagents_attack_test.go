package identity

import (
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/eidtest"
	"github.com/kanal-server/kanal/internal/web"
)

// TestAttackAgentWithoutHigh: an organisation that requires level high of
// its agents gets none whose account has no eID linked, whoever adds
// them; only its operator, owners and admins change the setting.
func TestAttackAgentWithoutHigh(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		x := newEIDEnv(t, d)
		f := x.newOrg(KindOffice)
		org := "/v1/orgs/" + f.org.OrgID
		on, off := OrgSettingsRequest{RequireHighForAgents: new(true)}, OrgSettingsRequest{RequireHighForAgents: new(false)}

		// Only the operator, an owner or an admin sets it.
		x.mustProblem(x.do("PATCH", org, f.agent.session.Token, on), 403, web.TypeForbidden)
		x.mustProblem(x.do("PATCH", org, f.admin.session.Token, `{}`), 400, "urn:kanal:problem:validation")
		x.mustProblem(x.do("PATCH", "/v1/orgs/org_nosuchorg", x.env.op, on), 404, web.TypeNotFound)
		var o Organisation
		x.must(x.do("PATCH", org, f.admin.session.Token, off), 200).decode(t, &o)
		if o.RequireHighForAgents {
			t.Fatalf("after off: %+v", o)
		}
		x.must(x.do("PATCH", org, f.owner.session.Token, on), 200).decode(t, &o)
		if !o.RequireHighForAgents {
			t.Fatalf("after on: %+v", o)
		}

		// An account without an eID: refused, by the admin, the owner and
		// the operator alike, nothing stored.
		u := x.newUser("kai@example.de", "kai's long password")
		members, audits := x.count("identity_members"), x.countWhere("identity_audit", "action <> 'operator.request'")
		for _, tok := range []string{f.admin.session.Token, f.owner.session.Token, x.env.op} {
			r := x.do("POST", org+"/members", tok, AddMemberRequest{AccountID: u.account, Role: RoleAgent})
			x.mustProblem(r, 403, web.TypeInsufficientLevel)
			if !strings.Contains(string(r.body), "kanal eid link") {
				t.Fatalf("the problem does not name the step: %s", r.body)
			}
		}
		if x.count("identity_members") != members || x.countWhere("identity_audit", "action <> 'operator.request'") != audits {
			t.Fatalf("a refused addition changed something: members %d→%d, audit %d→%d", members, x.count("identity_members"), audits, x.countWhere("identity_audit", "action <> 'operator.request'"))
		}
		// Other roles are not agents: an admin needs no eID.
		x.must(x.do("POST", org+"/members", f.owner.session.Token, AddMemberRequest{AccountID: u.account, Role: RoleAdmin}), 201)
		x.must(x.do("DELETE", org+"/members/"+u.account, f.owner.session.Token, nil), 204)

		// Once kai has linked an eID (a high session, proven by the
		// device), the admin adds him as an agent.
		l := x.begin(u)
		x.must(x.callback(l.query), 200)
		x.must(x.complete(u, l.start.FlowID), 200)
		var m Member
		x.must(x.do("POST", org+"/members", f.admin.session.Token, AddMemberRequest{AccountID: u.account, Role: RoleAgent}), 201).decode(t, &m)
		if m.Role != RoleAgent || len(m.Memberships) != 1 {
			t.Fatalf("member %+v", m)
		}

		// Setting it off again: an account without an eID may be an agent.
		v := x.newUser("vera@example.de", "vera's long password")
		x.mustProblem(x.do("POST", org+"/members", x.env.op, AddMemberRequest{AccountID: v.account, Role: RoleAgent}), 403, web.TypeInsufficientLevel)
		x.must(x.do("PATCH", org, x.env.op, off), 200)
		x.must(x.do("POST", org+"/members", x.env.op, AddMemberRequest{AccountID: v.account, Role: RoleAgent}), 201)
	})
}

// TestAttackAgentUnlinksEID: an agent of an organisation that requires
// level high of its agents cannot shed the eID and stay an agent: the
// unlink is refused (409 eid-required) naming the organisation and the
// step, and changes nothing. Once an admin has removed the agent, or
// where no organisation requires it, the unlink works.
func TestAttackAgentUnlinksEID(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		x := newEIDEnv(t, d)
		f := x.newOrg(KindOffice)
		org := "/v1/orgs/" + f.org.OrgID
		x.must(x.do("PATCH", org, x.env.op, OrgSettingsRequest{RequireHighForAgents: new(true)}), 200)
		kai := x.newUser("kai@example.de", "kai's long password")
		l := x.begin(kai)
		x.must(x.callback(l.query), 200)
		x.must(x.complete(kai, l.start.FlowID), 200)
		x.must(x.do("POST", org+"/members", f.admin.session.Token, AddMemberRequest{AccountID: kai.account, Role: RoleAgent}), 201)

		bindings, sessionsHigh := x.count("identity_eid_bindings"), x.countWhere("identity_sessions", "level = 3")
		r := x.do("DELETE", "/v1/eid/link", kai.session.Token, nil)
		x.mustProblem(r, 409, TypeEIDRequired)
		for _, want := range []string{f.org.OrgID, "requires an eID of its agents", "remove you"} {
			if !strings.Contains(string(r.body), want) {
				t.Fatalf("the problem does not say %q: %s", want, r.body)
			}
		}
		if x.count("identity_eid_bindings") != bindings || x.countWhere("identity_sessions", "level = 3") != sessionsHigh {
			t.Fatal("a refused unlink changed the binding or the sessions")
		}
		if m := x.me(kai); !m.EIDLinked || m.Level != "high" {
			t.Fatalf("after the refused unlink: %+v", m)
		}
		// Removed as an agent and added back as an admin (not an agent),
		// the rule does not hold: the unlink works.
		x.must(x.do("DELETE", org+"/members/"+kai.account, f.owner.session.Token, nil), 204)
		x.must(x.do("POST", org+"/members", f.owner.session.Token, AddMemberRequest{AccountID: kai.account, Role: RoleAdmin}), 201)
		x.must(x.do("DELETE", "/v1/eid/link", kai.session.Token, nil), 204)
		if m := x.me(kai); m.EIDLinked || m.Level != "substantial" {
			t.Fatalf("after the unlink: %+v", m)
		}
		// And without a linked eID he cannot be made an agent again.
		x.must(x.do("DELETE", org+"/members/"+kai.account, f.owner.session.Token, nil), 204)
		x.mustProblem(x.do("POST", org+"/members", f.owner.session.Token, AddMemberRequest{AccountID: kai.account, Role: RoleAgent}), 403, web.TypeInsufficientLevel)

		// An agent of an organisation that does not require it unlinks freely.
		g := x.newOrg(KindOffice)
		ute := x.newUser("ute@example.de", "ute's long password")
		x.op.AddPerson(eidtest.Person{Subject: "ute-subject", GivenName: "Ute", FamilyName: "Muster"})
		x.op.LoginAs("ute-subject", eidtest.ACRHigh)
		l = x.begin(ute)
		x.must(x.callback(l.query), 200)
		x.must(x.complete(ute, l.start.FlowID), 200)
		x.must(x.do("POST", "/v1/orgs/"+g.org.OrgID+"/members", g.admin.session.Token, AddMemberRequest{AccountID: ute.account, Role: RoleAgent}), 201)
		x.must(x.do("DELETE", "/v1/eid/link", ute.session.Token, nil), 204)
	})
}
