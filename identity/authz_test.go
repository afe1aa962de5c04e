package identity

import (
	"encoding/pem"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
)

// orgFixture is an organisation with an owner, an admin and an agent.
type orgFixture struct {
	org                 Organisation
	owner, admin, agent *user
}

func (e *env) newOrg(kind string) orgFixture {
	e.t.Helper()
	var f orgFixture
	e.must(e.do("POST", "/v1/admin/orgs", e.op, CreateOrgRequest{Name: "Bürgeramt Musterstadt", Kind: kind}), 201).decode(e.t, &f.org)
	e.must(e.do("POST", "/v1/admin/orgs/"+f.org.OrgID+"/verify", e.op, nil), 200).decode(e.t, &f.org)
	f.owner = e.newUser("owner-"+f.org.OrgID+"@example.de", "owner's long password")
	f.admin = e.newUser("admin-"+f.org.OrgID+"@example.de", "admin's long password")
	f.agent = e.newUser("agent-"+f.org.OrgID+"@example.de", "agent's long password")
	e.must(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", e.op, AddMemberRequest{AccountID: f.owner.account, Role: RoleOwner}), 201)
	e.must(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", f.owner.session.Token, AddMemberRequest{Email: f.admin.email, Role: RoleAdmin}), 201)
	e.must(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", f.admin.session.Token, AddMemberRequest{AccountID: f.agent.account, Role: RoleAgent}), 201)
	return f
}

// TestAuthorizationTable lists every route with what each kind of caller
// gets. A route registered but missing here fails the test.
func TestAuthorizationTable(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		alice := e.newUser("alice@example.de", "alice's long password")
		low := e.login(alice.device, alice.key, "") // alice's device, no password: low
		bob := e.newUser("bob@example.de", "bob's long password")
		carol := e.newUser("carol@example.de", "carol's long password")
		e.must(e.do("DELETE", "/v1/devices/"+carol.device, carol.session.Token, nil), 204)
		f := e.newOrg(KindOffice)

		tokens := map[string]string{
			"anonymous": "", "low": low.Token, "substantial": alice.session.Token, "other": bob.session.Token,
			"revoked": carol.session.Token, "agent": f.agent.session.Token, "admin": f.admin.session.Token,
			"owner": f.owner.session.Token, "operator": e.op,
		}
		callers := []string{"anonymous", "low", "substantial", "other", "revoked", "agent", "admin", "owner", "operator"}
		// sessions(code) is what every live session gets.
		sessions := func(code int, over map[string]int) map[string]int {
			m := map[string]int{"anonymous": 401, "revoked": 401, "operator": 401,
				"low": code, "substantial": code, "other": code, "agent": code, "admin": code, "owner": code}
			for k, v := range over {
				m[k] = v
			}
			return m
		}
		operatorOnly := func(code int) map[string]int {
			m := map[string]int{}
			for _, c := range callers {
				m[c] = 401
			}
			m["operator"] = code
			return m
		}
		all := func(code int) map[string]int {
			m := map[string]int{}
			for _, c := range callers {
				m[c] = code
			}
			return m
		}
		org := f.org.OrgID
		table := []struct {
			pattern string
			method  string
			path    string
			body    func(caller string) any
			want    map[string]int
		}{
			{"POST /v1/signup", "POST", "/v1/signup", func(c string) any { return SignupRequest{Email: c + "-new@example.de"} }, all(202)},
			{"POST /v1/signup/verify", "POST", "/v1/signup/verify", func(c string) any { return VerifyRequest{Email: c + "-new@example.de", Code: "x"} }, all(400)},
			// A too-short password: authorised callers reach validation (400), nothing changes.
			{"PUT /v1/account/password", "PUT", "/v1/account/password", func(string) any { return PasswordRequest{Password: "short"} }, sessions(400, nil)},
			// A bad CSR: authorised callers reach validation; a low session may not add devices.
			{"POST /v1/devices", "POST", "/v1/devices", func(string) any { return EnrollRequest{Name: "x", CSR: "AAAA"} }, sessions(403, map[string]int{"substantial": 400, "other": 400, "agent": 400, "admin": 400, "owner": 400})},
			{"GET /v1/devices", "GET", "/v1/devices", nil, sessions(200, nil)},
			// alice's device: other accounts get 404; alice's low session 403.
			{"POST /v1/devices/{id}/renew", "POST", "/v1/devices/" + alice.device + "/renew", func(string) any { return RenewRequest{CSR: "AAAA"} },
				sessions(400, map[string]int{"other": 404, "agent": 404, "admin": 404, "owner": 404})},
			{"DELETE /v1/devices/{id}", "DELETE", "/v1/devices/dev_nosuchdevice", nil, sessions(404, nil)},
			// bob's device: every other account gets 404 (bob's own call is in TestRevocation).
			{"DELETE /v1/devices/{id} (bob's)", "DELETE", "/v1/devices/" + bob.device, nil,
				map[string]int{"anonymous": 401, "revoked": 401, "operator": 401, "low": 404, "substantial": 404, "agent": 404, "admin": 404, "owner": 404}},
			{"POST /v1/sessions/challenge", "POST", "/v1/sessions/challenge", func(string) any { return ChallengeRequest{DeviceID: alice.device} }, all(200)},
			{"POST /v1/sessions", "POST", "/v1/sessions", func(string) any {
				return LoginRequest{ChallengeID: "chl_x", DeviceID: alice.device, Signature: "AAAA"}
			}, all(401)},
			{"POST /v1/sessions/refresh", "POST", "/v1/sessions/refresh", func(string) any { return RefreshRequest{RefreshToken: "kanal_r_x"} }, all(401)},
			// Logout: only unauthorised callers are tried here (TestFullFlow logs out).
			{"DELETE /v1/sessions/current", "DELETE", "/v1/sessions/current", nil, map[string]int{"anonymous": 401, "revoked": 401, "operator": 401}},
			{"GET /v1/me", "GET", "/v1/me", nil, sessions(200, nil)},
			// Without an eID provider (eid_attack_test.go runs one).
			{"POST /v1/eid/start", "POST", "/v1/eid/start", func(string) any { return EIDStartRequest{SealKey: "AAAA"} }, sessions(501, map[string]int{"low": 403})},
			{"GET /v1/eid/callback", "GET", "/v1/eid/callback?state=x&code=y", nil, all(501)},
			{"POST /v1/eid/complete", "POST", "/v1/eid/complete", func(string) any {
				return EIDCompleteRequest{FlowID: "eid_x", ChallengeID: "chl_x", Signature: "AAAA"}
			}, sessions(501, nil)},
			{"DELETE /v1/eid/link", "DELETE", "/v1/eid/link", nil, sessions(501, map[string]int{"low": 403})},
			{"POST /v1/admin/orgs", "POST", "/v1/admin/orgs", func(string) any { return CreateOrgRequest{Name: "Rat", Kind: KindCouncil} }, operatorOnly(201)},
			{"POST /v1/admin/orgs/{id}/verify", "POST", "/v1/admin/orgs/" + org + "/verify", nil, operatorOnly(200)},
			{"GET /v1/admin/audit", "GET", "/v1/admin/audit", nil, operatorOnly(200)},
			// Unchanged settings: the operator, an owner or an admin may.
			{"PATCH /v1/orgs/{id}", "PATCH", "/v1/orgs/" + org, func(string) any { return OrgSettingsRequest{RequireHighForAgents: new(false)} },
				map[string]int{"anonymous": 401, "revoked": 401, "low": 403, "substantial": 403, "other": 403, "agent": 403, "admin": 200, "owner": 200, "operator": 200}},
			// Adding an unknown address: authorised callers get 404 after the role check.
			{"POST /v1/orgs/{id}/members", "POST", "/v1/orgs/" + org + "/members", func(string) any { return AddMemberRequest{Email: "nobody@example.de", Role: RoleAgent} },
				map[string]int{"anonymous": 401, "revoked": 401, "low": 403, "substantial": 403, "other": 403, "agent": 403, "admin": 404, "owner": 404, "operator": 404}},
			{"POST /v1/orgs/{id}/members (owner role)", "POST", "/v1/orgs/" + org + "/members", func(string) any { return AddMemberRequest{Email: "nobody@example.de", Role: RoleOwner} },
				map[string]int{"agent": 403, "admin": 403, "owner": 404, "operator": 404}},
			{"DELETE /v1/orgs/{id}/members/{account_id}", "DELETE", "/v1/orgs/" + org + "/members/acc_nosuchaccount", nil,
				map[string]int{"anonymous": 401, "revoked": 401, "low": 403, "substantial": 403, "other": 403, "agent": 403, "admin": 404, "owner": 404, "operator": 404}},
			{"DELETE /v1/orgs/{id}/members/{account_id} (an admin)", "DELETE", "/v1/orgs/" + org + "/members/" + f.admin.account, nil,
				map[string]int{"agent": 403, "admin": 403}},
			{"DELETE /v1/orgs/{id}/members/{account_id} (the owner)", "DELETE", "/v1/orgs/" + org + "/members/" + f.owner.account, nil,
				map[string]int{"agent": 403, "admin": 403}},
			{"GET /v1/directory/accounts/{id}/devices", "GET", "/v1/directory/accounts/" + alice.account + "/devices", nil, sessions(200, nil)},
			{"GET /v1/directory/orgs/{id}", "GET", "/v1/directory/orgs/" + org, nil, sessions(200, nil)},
			{"GET /v1/directory/ca", "GET", "/v1/directory/ca", nil, all(200)},
			{"GET /v1/directory/crl", "GET", "/v1/directory/crl", nil, all(200)},
			{"GET /v1/directory/orgs/{id}/crl", "GET", "/v1/directory/orgs/" + org + "/crl", nil, all(200)},
			// Anyone may ask; a body that is not an OCSP request is refused.
			{"POST /v1/ocsp", "POST", "/v1/ocsp", nil, all(415)},
			{"POST /v1/directory/orgs/{id}/ocsp", "POST", "/v1/directory/orgs/" + org + "/ocsp", nil, all(415)},
		}
		covered := map[string]bool{}
		forbidden := 0
		for _, row := range table {
			p := row.pattern
			if i := len(p); i > 0 && p[i-1] == ')' {
				for j := range p {
					if p[j] == '(' {
						p = p[:j-1]
						break
					}
				}
			}
			covered[p] = true
			for _, c := range callers {
				want, ok := row.want[c]
				if !ok {
					continue
				}
				var body any
				if row.body != nil {
					body = row.body(c)
				}
				r := e.do(row.method, row.path, tokens[c], body)
				if r.status != want {
					t.Errorf("%s as %s: %d %s, want %d", row.pattern, c, r.status, r.body, want)
				}
				if want == 401 || want == 403 {
					forbidden++
				}
			}
		}
		for _, rt := range e.svc.Routes() {
			if !covered[rt.Pattern] {
				t.Errorf("route %s (%s) is not in the authorization table", rt.Pattern, rt.Auth)
			}
		}
		if forbidden < 10 {
			t.Fatalf("only %d forbidden cases", forbidden)
		}
		// Nothing the refused callers tried changed the organisation.
		var d DirectoryOrg
		e.must(e.do("GET", "/v1/directory/orgs/"+org, low.Token, nil), 200).decode(t, &d)
		if len(d.Members) != 3 {
			t.Fatalf("members %+v", d.Members)
		}
	})
}

// TestOrganisations: verification, roles, membership certificates that
// chain through the organisation, a new device getting its membership,
// removal revoking them, and the audit log.
func TestOrganisations(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		f := e.newOrg(KindMerchant)
		if !f.org.Verified || f.org.Certificate == "" {
			t.Fatalf("org %+v", f.org)
		}
		// Roles by kind.
		e.mustProblem(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", e.op, AddMemberRequest{AccountID: f.agent.account, Role: RoleOrganiser}), 400, TypeInvalidRole)
		e.mustProblem(e.do("POST", "/v1/orgs/"+f.org.OrgID+"/members", e.op, AddMemberRequest{AccountID: f.agent.account, Role: RoleSeller}), 409, "urn:kanal:problem:conflict")
		// An unverified organisation has no members yet.
		var council Organisation
		e.must(e.do("POST", "/v1/admin/orgs", e.op, CreateOrgRequest{Name: "Rat", Kind: KindCouncil}), 201).decode(t, &council)
		e.mustProblem(e.do("POST", "/v1/orgs/"+council.OrgID+"/members", e.op, AddMemberRequest{AccountID: f.agent.account, Role: RoleOrganiser}), 409, TypeNotVerified)
		e.mustProblem(e.do("POST", "/v1/admin/orgs", e.op, `{"name":"X","kind":"bank"}`), 400, "urn:kanal:problem:validation")

		// The agent's device certificate and membership verify together.
		key2 := newP256(t)
		er := e.approve(f.agent, key2) // a new device gets a membership too
		var d DirectoryOrg
		e.must(e.do("GET", "/v1/directory/orgs/"+f.org.OrgID, f.agent.session.Token, nil), 200).decode(t, &d)
		orgBlock, _ := pem.Decode([]byte(d.Certificate))
		var agentDevices []MemberDevice
		for _, m := range d.Members {
			if m.AccountID == f.agent.account {
				agentDevices = m.Devices
			}
		}
		if len(agentDevices) != 2 {
			t.Fatalf("agent devices %+v", agentDevices)
		}
		for _, md := range agentDevices {
			mb, _ := pem.Decode([]byte(md.MembershipCertificate))
			db_, _ := pem.Decode([]byte(md.Certificate))
			m, err := ca.VerifyMembership(mb.Bytes, orgBlock.Bytes, e.ca.Pool(), e.clock.now())
			if err != nil || m.Role != RoleAgent || m.OrgID != f.org.OrgID {
				t.Fatalf("membership %+v %v", m, err)
			}
			id, err := ca.VerifyDevice(db_.Bytes, e.ca.Pool(), e.clock.now())
			if err != nil || ca.CheckSameDevice(id, m) != nil {
				t.Fatalf("device and membership differ: %v", err)
			}
		}
		_ = er
		var me MeResponse
		e.must(e.do("GET", "/v1/me", f.agent.session.Token, nil), 200).decode(t, &me)
		if len(me.Organisations) != 1 || me.Organisations[0].Role != RoleAgent {
			t.Fatalf("me %+v", me)
		}
		// Owners remove admins; the member's memberships are revoked.
		e.must(e.do("DELETE", "/v1/orgs/"+f.org.OrgID+"/members/"+f.admin.account, f.owner.session.Token, nil), 204)
		e.must(e.do("DELETE", "/v1/orgs/"+f.org.OrgID+"/members/"+f.agent.account, f.owner.session.Token, nil), 204)
		if n := e.countWhere("identity_memberships", "account_id = '"+f.agent.account+"' AND revoked_at IS NULL"); n != 0 {
			t.Fatalf("%d live memberships after removal", n)
		}
		e.must(e.do("GET", "/v1/directory/orgs/"+f.org.OrgID, f.agent.session.Token, nil), 200).decode(t, &d)
		if len(d.Members) != 1 {
			t.Fatalf("members after removal %+v", d.Members)
		}
		// The audit log holds every change, in order, and refuses edits.
		var al AuditList
		e.must(e.do("GET", "/v1/admin/audit", e.op, nil), 200).decode(t, &al)
		var actions []string
		for _, a := range al.Entries {
			if a.Action == "operator.request" || a.Action == "operator.issue" {
				continue // the operator's requests themselves; see TestOperatorActionsAudited
			}
			actions = append(actions, a.Action)
		}
		want := []string{"org.create", "org.verify", "member.add", "member.add", "member.add", "org.create", "member.remove", "member.remove"}
		if len(actions) != len(want) {
			t.Fatalf("audit %v, want %v", actions, want)
		}
		for i := range want {
			if actions[i] != want[i] {
				t.Fatalf("audit %v, want %v", actions, want)
			}
		}
		if _, err := e.d.Exec(t.Context(), `UPDATE identity_audit SET actor = 'x'`); err == nil {
			t.Fatal("audit log accepted an UPDATE")
		}
		if _, err := e.d.Exec(t.Context(), `DELETE FROM identity_audit`); err == nil {
			t.Fatal("audit log accepted a DELETE")
		}
	})
}

func (e *env) countWhere(table, where string) int {
	e.t.Helper()
	var n int
	if err := e.d.QueryRow(e.t.Context(), `SELECT COUNT(*) FROM `+table+` WHERE `+where).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}
