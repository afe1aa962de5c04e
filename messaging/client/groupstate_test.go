package client

import (
	"maps"
	"slices"
	"testing"

	"github.com/kanal-server/kanal/messaging/kind"
)

// TestGroupRosterRules: which group.change notices a device takes as the
// group's members, in the orders the server sends them. A device that
// followed the changes from its join takes no roster (a member row written
// into the database reaches it no other way); a newcomer takes the roster
// that precedes its "added"; a device whose state is new takes the roster
// that follows an old "added" for itself.
func TestGroupRosterRules(t *testing.T) {
	const grp = "g_0123456789abcdef0123456789abcdef"
	ch := func(op, account string) kind.GroupChangeBody {
		return kind.GroupChangeBody{GroupID: grp, Op: op, AccountID: account, By: "acc_anna", Role: "member"}
	}
	for _, tc := range []struct {
		name    string
		notices []kind.GroupChangeBody
		want    []string
	}{
		{"creator ignores a later roster", []kind.GroupChangeBody{ch("created", "acc_me"), ch("added", "acc_ben"), ch("member", "acc_mallory")},
			[]string{"acc_ben", "acc_me"}},
		{"newcomer takes the roster before its add, not after", []kind.GroupChangeBody{ch("member", "acc_anna"), ch("added", "acc_me"), ch("member", "acc_mallory")},
			[]string{"acc_anna", "acc_me"}},
		{"new state: an old add of itself, then the roster", []kind.GroupChangeBody{ch("added", "acc_me"), ch("member", "acc_anna"), ch("member", "acc_me")},
			[]string{"acc_anna", "acc_me"}},
		{"invitations change no member", []kind.GroupChangeBody{ch("created", "acc_me"), ch("invited", "acc_mallory"),
			ch("declined", "acc_mallory"), ch("invited", "acc_eve"), {GroupID: grp, Op: "uninvited", AccountID: "acc_eve", By: "acc_me"}},
			[]string{"acc_me"}},
		{"an invitee is no member before its add", []kind.GroupChangeBody{ch("invited", "acc_me")}, []string{}},
		{"a change after a removal of another", []kind.GroupChangeBody{ch("created", "acc_me"), ch("added", "acc_ben"), ch("removed", "acc_ben")},
			[]string{"acc_me"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{store: NewMemoryStore(), account: "acc_me"}
			for _, n := range tc.notices {
				if err := c.applyGroupChange(grp, &n); err != nil {
					t.Fatal(err)
				}
			}
			m, err := c.GroupMembers(grp)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, tc.want) {
				t.Fatalf("members %v, want %v", got, tc.want)
			}
		})
	}
}
