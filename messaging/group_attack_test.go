package messaging_test

import (
	"context"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
)

// TestAttackGroupFlood: another citizen creates groups with a victim in a
// loop, and adds and removes them in a group they administer, to flood the
// victim's devices with notices. Both are limited per device; a refused
// request writes nothing; the victim can still leave; another device's
// groups are not held back.
func TestAttackGroupFlood(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, true)
		mallory := e.enroll("mallory", "mallory-phone", true)
		victim := e.enroll("victim", "victim-phone", true)
		alice := e.enroll("alice", "alice-phone", true)
		with := messaging.CreateGroupRequest{Members: []messaging.GroupMemberRequest{{AccountID: "victim", Role: "member"}}}
		var last string
		for i := range messaging.MaxGroupCreatesPerWindow {
			st, out := e.call(mallory, "POST", "/v1/groups", with)
			if st != 201 {
				t.Fatalf("creation %d: %d %v", i, st, out)
			}
			last = out["group_id"].(string)
		}
		before := countEnvelopes(t, e, "victim-phone")
		st, out := e.call(mallory, "POST", "/v1/groups", with)
		if st != 429 || out["type"] != string(web.TypeRateLimited) {
			t.Fatalf("creation over the limit: %d %v, want 429 rate-limited", st, out)
		}
		if after := countEnvelopes(t, e, "victim-phone"); after != before {
			t.Fatalf("a refused creation wrote %d notices to the victim", after-before)
		}
		// Adding and removing the victim again and again in one group.
		path := "/v1/groups/" + last
		changes := 0
		for ; changes < messaging.MaxGroupChangesPerWindow+2; changes++ {
			var st int
			if changes%2 == 0 {
				st, _ = e.call(mallory, "DELETE", path+"/members/victim", nil)
			} else {
				st, _ = e.call(mallory, "POST", path+"/members", messaging.GroupMemberRequest{AccountID: "victim", Role: "member"})
			}
			if st == 429 {
				break
			}
			if st != 200 {
				t.Fatalf("change %d: %d", changes, st)
			}
		}
		if changes != messaging.MaxGroupChangesPerWindow {
			t.Fatalf("%d membership changes before the limit, want %d", changes, messaging.MaxGroupChangesPerWindow)
		}
		// The victim is in none of mallory's groups, and declines any
		// invitation whatever the limits.
		if st, out := e.call(victim, "GET", "/v1/groups", nil); st != 200 || len(out["groups"].([]any)) != 0 {
			t.Fatalf("the victim's groups: %d %v", st, out)
		}
		st, out = e.call(victim, "GET", "/v1/invitations", nil)
		invs, _ := out["invitations"].([]any)
		if st != 200 || len(invs) == 0 {
			t.Fatalf("the victim's invitations: %d %v", st, out)
		}
		if st, out := e.call(victim, "POST", "/v1/groups/"+invs[0].(map[string]any)["group_id"].(string)+"/invitation/decline", nil); st != 200 {
			t.Fatalf("declining: %d %v", st, out)
		}
		// Another device is not held back.
		if st, out := e.call(alice, "POST", "/v1/groups", messaging.CreateGroupRequest{}); st != 201 {
			t.Fatalf("alice's group: %d %v", st, out)
		}
	})
}

func countEnvelopes(t *testing.T, e *sendEnv, device string) int {
	t.Helper()
	envs, err := e.mb.Fetch(context.Background(), device, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return len(envs)
}

// firstGroupOf returns a group dev's account is a member of.
func firstGroupOf(t *testing.T, e *sendEnv, dev *device) string {
	t.Helper()
	st, out := e.call(dev, "GET", "/v1/groups", nil)
	if st != 200 {
		t.Fatalf("list groups: %d %v", st, out)
	}
	groups, _ := out["groups"].([]any)
	if len(groups) == 0 {
		t.Fatal("the victim is in no group")
	}
	return groups[0].(map[string]any)["group_id"].(string)
}
