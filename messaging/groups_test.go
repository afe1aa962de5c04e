package messaging_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// call sends a JSON request to any route of the send environment.
func (e *sendEnv) call(dev *device, method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	st, _, out := e.request(dev, method, path, body)
	return st, out
}

// notices returns the group.change notices in a device's mailbox, in order.
func (e *sendEnv) notices(device string) []kind.GroupChangeBody {
	e.t.Helper()
	envs, err := e.mb.Fetch(context.Background(), device, 0, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []kind.GroupChangeBody
	for _, env := range envs {
		if env.Sender != messaging.NoticeSender {
			continue
		}
		var n messaging.NoticeBody
		if err := json.Unmarshal(env.Ciphertext, &n); err != nil {
			e.t.Fatal(err)
		}
		st, err := messaging.ParseNoticeStatement(n.Statement)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := ca.VerifyNotarized(n.Notary, e.dir.ca.Pool(), st.Time, messaging.NoticePurpose(st.Kind), n.Statement, n.Signature); err != nil {
			e.t.Fatalf("notice %s: %v", st.ID, err)
		}
		if st.Conversation != env.Conversation || st.Recipient != device || st.Kind != kind.GroupChange {
			e.t.Fatalf("notice signed for %s in %s (%s), envelope for %s in %s", st.Recipient, st.Conversation, st.Kind, device, env.Conversation)
		}
		m, err := kind.Unmarshal(st.Message)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, *m.Body.(*kind.GroupChangeBody))
	}
	return out
}

func TestGroups(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, true)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("alice", "alice-laptop", false)
		bob := e.enroll("bob", "bob-phone", false)
		carol := e.enroll("carol", "carol-phone", true)
		mallory := e.enroll("mallory", "mallory-phone", false)

		st, out := e.call(alice, "POST", "/v1/groups", messaging.CreateGroupRequest{Members: []messaging.GroupMemberRequest{{AccountID: "bob", Role: "member"}}})
		if st != 201 {
			t.Fatalf("create: %d %v", st, out)
		}
		gid := out["group_id"].(string)
		if !messaging.ValidGroupID(gid) {
			t.Fatalf("group id %q", gid)
		}
		// Bob is invited, not a member: alice's devices are told of the
		// group and the invitation, bob's of his invitation only.
		for _, dev := range []string{"alice-phone", "alice-laptop"} {
			ns := e.notices(dev)
			if len(ns) != 2 || ns[0].Op != "created" || ns[0].AccountID != "alice" || ns[1].Op != "invited" || ns[1].AccountID != "bob" || ns[1].By != "alice" {
				t.Fatalf("%s notices: %+v", dev, ns)
			}
		}
		if ns := e.notices("bob-phone"); len(ns) != 1 || ns[0].Op != "invited" || ns[0].AccountID != "bob" || ns[0].Role != "member" {
			t.Fatalf("bob-phone notices: %+v", ns)
		}
		if ms := out["members"].([]any); len(ms) != 1 || len(out["invitations"].([]any)) != 1 {
			t.Fatalf("created group: %v", out)
		}
		// Bob accepts: every device of every member is told, bob's after
		// the member list.
		if st, out := e.call(bob, "POST", "/v1/groups/"+gid+"/invitation/accept", nil); st != 200 || len(out["members"].([]any)) != 2 || len(out["invitations"].([]any)) != 0 {
			t.Fatalf("accept: %d %v", st, out)
		}
		for _, dev := range []string{"alice-phone", "alice-laptop"} {
			if ns := e.notices(dev); len(ns) != 3 || ns[2].Op != "added" || ns[2].AccountID != "bob" || ns[2].By != "alice" {
				t.Fatalf("%s notices: %+v", dev, ns)
			}
		}
		if ns := e.notices("bob-phone"); len(ns) != 3 || ns[1].Op != "member" || ns[1].AccountID != "alice" || ns[2].Op != "added" || ns[2].AccountID != "bob" {
			t.Fatalf("bob-phone notices: %+v", ns)
		}
		if len(e.notices("carol-phone")) != 0 {
			t.Fatal("a non-member was told about the group")
		}

		// A send to the group must address every member device but the sender's.
		send := func(dev *device, clientID string, ids ...string) (int, map[string]any) {
			st, _, out := e.post(dev, messaging.SendRequest{To: messaging.SendTo{GroupID: gid}, ClientID: clientID, Class: "message", Envelopes: envelopesFor(ids...)})
			return st, out
		}
		st, out = send(alice, "g1")
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		if got := strs(out["devices"]); len(got) != 2 || got[0] != "alice-laptop" || got[1] != "bob-phone" {
			t.Fatalf("devices %v", got)
		}
		if acc := out["accounts"].(map[string]any); acc["bob-phone"] != "bob" || acc["alice-laptop"] != "alice" {
			t.Fatalf("accounts %v", acc)
		}
		if st, out = send(alice, "g1", "alice-laptop", "bob-phone"); st != 201 {
			t.Fatalf("group send: %d %v", st, out)
		}
		if out["conversation_id"] != gid {
			t.Fatalf("conversation %v", out["conversation_id"])
		}

		// What a non-member must not do: read, send, add, remove.
		envBefore, sendsBefore := e.stored()
		st, out = e.call(mallory, "GET", "/v1/groups/"+gid, nil)
		wantProblem(t, st, out, 404, messaging.TypeNotMember)
		st, out = send(mallory, "m1", "alice-phone", "alice-laptop", "bob-phone")
		wantProblem(t, st, out, 404, messaging.TypeNotMember)
		st, out = e.call(mallory, "POST", "/v1/groups/"+gid+"/members", messaging.GroupMemberRequest{AccountID: "mallory", Role: "admin"})
		wantProblem(t, st, out, 404, messaging.TypeNotMember)
		st, out = e.call(mallory, "DELETE", "/v1/groups/"+gid+"/members/bob", nil)
		wantProblem(t, st, out, 404, messaging.TypeNotMember)
		// A plain member must not add or remove others or change roles.
		st, out = e.call(bob, "POST", "/v1/groups/"+gid+"/members", messaging.GroupMemberRequest{AccountID: "mallory", Role: "member"})
		wantProblem(t, st, out, 403, messaging.TypeNotAdmin)
		st, out = e.call(bob, "DELETE", "/v1/groups/"+gid+"/members/alice", nil)
		wantProblem(t, st, out, 403, messaging.TypeNotAdmin)
		st, out = e.call(bob, "PATCH", "/v1/groups/"+gid+"/members/bob", messaging.GroupRoleRequest{Role: "admin"})
		wantProblem(t, st, out, 403, messaging.TypeNotAdmin)
		// Bad input.
		st, out = e.call(alice, "POST", "/v1/groups/"+gid+"/members", messaging.GroupMemberRequest{AccountID: "carol", Role: "owner"})
		wantProblem(t, st, out, 400, web.TypeValidation)
		st, out = e.call(alice, "POST", "/v1/groups/"+gid+"/members", messaging.GroupMemberRequest{AccountID: "nobody", Role: "member"})
		wantProblem(t, st, out, 404, messaging.TypeUnknownRecipient)
		st, out = e.call(alice, "POST", "/v1/groups/"+gid+"/members", messaging.GroupMemberRequest{AccountID: "bob", Role: "member"})
		wantProblem(t, st, out, 409, messaging.TypeAlreadyMember)
		// The last admin cannot leave while others remain.
		st, out = e.call(alice, "DELETE", "/v1/groups/"+gid+"/members/alice", nil)
		wantProblem(t, st, out, 409, messaging.TypeLastAdmin)
		if envAfter, sendsAfter := e.stored(); envAfter != envBefore || sendsAfter != sendsBefore {
			t.Fatalf("refused requests stored something: %d→%d envelopes, %d→%d sends", envBefore, envAfter, sendsBefore, sendsAfter)
		}

		// Alice invites carol, who accepts: carol sees the change, is told
		// who was there before (op member), and now must be addressed.
		if st, out = e.call(alice, "POST", "/v1/groups/"+gid+"/members", messaging.GroupMemberRequest{AccountID: "carol", Role: "member"}); st != 200 {
			t.Fatalf("add: %d %v", st, out)
		}
		if st, out = e.call(carol, "POST", "/v1/groups/"+gid+"/invitation/accept", nil); st != 200 {
			t.Fatalf("accept: %d %v", st, out)
		}
		ns := e.notices("carol-phone")
		roster := map[string]string{}
		for _, n := range ns {
			if n.Op == "member" {
				roster[n.AccountID] = n.Role
			}
		}
		if len(ns) != 4 || ns[0].Op != "invited" || ns[3].Op != "added" || ns[3].AccountID != "carol" || len(roster) != 2 ||
			roster["alice"] != "admin" || roster["bob"] != "member" {
			t.Fatalf("carol notices: %+v", ns)
		}
		if ns := e.notices("bob-phone"); ns[len(ns)-1].Op != "added" || ns[len(ns)-1].AccountID != "carol" {
			t.Fatalf("bob's last notice: %+v", ns[len(ns)-1])
		}
		// A device carol enrolls later missed all that: when it publishes
		// its keys, it is told the members.
		tablet := e.enroll("carol", "carol-tablet", false)
		roster = map[string]string{}
		for _, n := range e.notices("carol-tablet") {
			if n.Op != "member" || n.GroupID != gid {
				t.Fatalf("carol's new device: %+v", n)
			}
			roster[n.AccountID] = n.Role
		}
		if len(roster) != 3 || roster["carol"] != "member" {
			t.Fatalf("carol's new device is told %v", roster)
		}
		// Publishing again with the same identity key tells it nothing more.
		if st, out := e.call(tablet, "PUT", "/v1/prekeys", tablet.publishRequest(t)); st != 200 {
			t.Fatalf("publish again: %d %v", st, out)
		}
		if n := len(e.notices("carol-tablet")); n != 3 {
			t.Fatalf("publishing again stored %d notices, want 3", n)
		}
		st, out = send(bob, "b1", "alice-phone", "alice-laptop")
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		if got := strs(out["missing"]); len(got) != 2 || got[0] != "carol-phone" || got[1] != "carol-tablet" {
			t.Fatalf("missing %v", got)
		}
		// Bob leaves; everyone, bob included, is told; bob can no longer send.
		if st, out = e.call(bob, "DELETE", "/v1/groups/"+gid+"/members/bob", nil); st != 200 {
			t.Fatalf("leave: %d %v", st, out)
		}
		for _, dev := range []string{"alice-phone", "bob-phone", "carol-phone"} {
			ns := e.notices(dev)
			if last := ns[len(ns)-1]; last.Op != "left" || last.AccountID != "bob" {
				t.Fatalf("%s: last notice %+v", dev, last)
			}
		}
		st, out = send(bob, "b2", "alice-phone", "alice-laptop", "carol-phone", "carol-tablet")
		wantProblem(t, st, out, 404, messaging.TypeNotMember)
		// A member's device asks for the member list again: it alone gets
		// it. A former member does not.
		before, tabletBefore := len(e.notices("carol-phone")), len(e.notices("carol-tablet"))
		if st, out := e.call(tablet, "POST", "/v1/groups/"+gid+"/roster", nil); st != 202 {
			t.Fatalf("roster: %d %v", st, out)
		}
		ns = e.notices("carol-tablet")
		if len(ns) != tabletBefore+2 || ns[len(ns)-1].Op != "member" || ns[len(ns)-2].Op != "member" {
			t.Fatalf("roster notices: %+v", ns)
		}
		if n := len(e.notices("carol-phone")); n != before {
			t.Fatalf("another device got the roster: %d → %d notices", before, n)
		}
		envBefore, _ = e.stored()
		st, out = e.call(bob, "POST", "/v1/groups/"+gid+"/roster", nil)
		wantProblem(t, st, out, 404, messaging.TypeNotMember)
		if envAfter, _ := e.stored(); envAfter != envBefore {
			t.Fatalf("a former member's roster request stored %d envelopes", envAfter-envBefore)
		}

		// Lists and roles.
		st, out = e.call(carol, "GET", "/v1/groups", nil)
		if gs := out["groups"].([]any); st != 200 || len(gs) != 1 || gs[0].(map[string]any)["members"] != float64(2) {
			t.Fatalf("list: %d %v", st, out)
		}
		if st, out = e.call(alice, "PATCH", "/v1/groups/"+gid+"/members/carol", messaging.GroupRoleRequest{Role: "admin"}); st != 200 {
			t.Fatalf("role: %d %v", st, out)
		}
		if st, out = e.call(alice, "DELETE", "/v1/groups/"+gid+"/members/alice", nil); st != 200 {
			t.Fatalf("admin leaves after handing over: %d %v", st, out)
		}
		st, out = e.call(carol, "GET", "/v1/groups/"+gid, nil)
		var members []string
		for _, m := range out["members"].([]any) {
			members = append(members, m.(map[string]any)["account_id"].(string)+":"+m.(map[string]any)["role"].(string))
		}
		sort.Strings(members)
		if st != 200 || len(members) != 1 || members[0] != "carol:admin" {
			t.Fatalf("members %v", members)
		}
	})
}

// enroll enrolls a device and publishes its keys, as every real device
// does before it can be addressed.
func (e *sendEnv) enroll(account, id string, p256 bool) *device {
	e.t.Helper()
	d := e.dir.enroll(e.t, account, id, p256)
	if st, out := e.call(d, "PUT", "/v1/prekeys", d.publishRequest(e.t)); st != 200 {
		e.t.Fatalf("publish %s: %d %v", id, st, out)
	}
	return d
}

// A device that has not published its keys is not addressed: it could not
// read the message, and it must not block its account's conversations.
func TestSendSkipsUnpublishedDevices(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		e.dir.enroll(t, "bob", "bob-new", false) // enrolled, keys not yet published
		st, _, out := e.post(alice, toAccount("bob", "c1"))
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		if got := strs(out["devices"]); len(got) != 1 || got[0] != "bob-phone" {
			t.Fatalf("devices %v", got)
		}
		st, _, out = e.post(alice, toAccount("bob", "c1", "bob-phone", "bob-new"))
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		if got := strs(out["stale"]); len(got) != 1 || got[0] != "bob-new" {
			t.Fatalf("stale %v", got)
		}
	})
}

// Idempotency rows outlive their window only until the expiry sweep.
func TestExpireSends(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		if st, _, out := e.post(alice, toAccount("bob", "c1", "bob-phone")); st != 201 {
			t.Fatalf("send: %d %v", st, out)
		}
		if n, err := e.svc.ExpireSends(context.Background()); err != nil || n != 0 {
			t.Fatalf("fresh row expired: %d %v", n, err)
		}
		*e.now = e.now.Add(messaging.SendIdempotency + time.Minute)
		if n, err := e.svc.ExpireSends(context.Background()); err != nil || n != 1 {
			t.Fatalf("expired %d, %v; want 1", n, err)
		}
		if _, sends := e.stored(); sends != 0 {
			t.Fatalf("%d idempotency rows left", sends)
		}
	})
}

// addBare registers a device in the directory without keys: enough to be
// an addressee of notices, and cheap enough for a thousand of them.
func (f *fakeDir) addBare(account, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[id] = messaging.Device{DeviceID: id, AccountID: account}
}

// A group at the limits — MaxGroupMembers members, invited, with
// identity's ten devices each — is created, and every change and notice
// reaches every device: the envelopes are split by the parameters one
// statement can carry (SQLite takes 32,766).
func TestGroupAtMaxima(t *testing.T) {
	const devicesPerAccount = 10 // identity.MaxDevices
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, true)
		ctx := context.Background()
		owner := e.enroll("owner", "owner-d0", false)
		var req messaging.CreateGroupRequest
		accounts := []string{"owner"}
		for i := 0; i < messaging.MaxGroupMembers-1; i++ {
			a := fmt.Sprintf("acct%03d", i)
			for j := 0; j < devicesPerAccount; j++ {
				e.dir.addBare(a, fmt.Sprintf("%s-d%d", a, j))
			}
			req.Members = append(req.Members, messaging.GroupMemberRequest{AccountID: a, Role: messaging.GroupMember})
			accounts = append(accounts, a)
		}
		for j := 1; j < devicesPerAccount; j++ {
			e.dir.addBare("owner", fmt.Sprintf("owner-d%d", j))
		}
		g, err := e.svc.CreateGroup(ctx, owner.caller(), &req)
		if err != nil {
			t.Fatalf("create group of %d members × %d devices: %v", len(req.Members)+1, devicesPerAccount, err)
		}
		if len(g.Members)+len(g.Invitations) != messaging.MaxGroupMembers {
			t.Fatalf("%d members, %d invitations", len(g.Members), len(g.Invitations))
		}
		// The owner's devices are told of the group and of 99
		// invitations; each invitee's devices of its own invitation.
		// (TestGroupAndOfficeAtTheMaxima has them all accept and
		// messages the group.)
		for i, a := range accounts {
			want := messaging.MaxGroupMembers
			if i > 0 {
				want = 1
			}
			for j := 0; j < devicesPerAccount; j++ {
				dev := fmt.Sprintf("%s-d%d", a, j)
				if n, err := e.mb.Depth(ctx, dev); err != nil || n != want {
					t.Fatalf("%s holds %d notices (%v), want %d", dev, n, err, want)
				}
			}
		}
		// A notice to every device of the group's members.
		msg, err := kind.New("m1", testNow, &kind.GroupChangeBody{GroupID: g.GroupID, Op: "role", AccountID: "owner", By: "owner", Role: messaging.GroupAdmin})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := msg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.PostNotice(ctx, messaging.Notice{Accounts: accounts, Conversation: g.GroupID, Message: raw}); err != nil {
			t.Fatalf("notice to %d devices: %v", len(accounts)*devicesPerAccount, err)
		}
		if n, err := e.mb.Depth(ctx, "acct042-d9"); err != nil || n != 2 {
			t.Fatalf("acct042-d9 holds %d envelopes (%v)", n, err)
		}
	})
}
