package main

import (
	"os"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// newSession is a CLI session against srv with the usual passphrase and
// password.
func newSession(t *testing.T, srv *kanaldtest.Server) *session {
	return &session{t: t, work: t.TempDir(), vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
}

// TestGroupsCLI: a group made, written to, changed and left through the
// CLI — and what a plain member may not do.
func TestGroupsCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	var steps []step
	steps = append(steps, signUpSteps(s, srv, "alice", "alice@example.org", "ALICE")...)
	steps = append(steps, signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...)
	steps = append(steps, signUpSteps(s, srv, "carol", "carol@example.org", "CAROL")...)
	s.run(steps)
	s.run([]step{
		{cmd: "kanal group list", want: []string{"You are in no group yet"}},
		{cmd: "kanal group create $BOB", want: []string{"Created a group; you are its admin.", "Invited 1 account"},
			set: map[string]string{"G": `(?m)^(g_[0-9a-f]{32})$`}},
		{cmd: "kanal group show $G", want: []string{"1 member:", "* $ALICE", "1 invitation:", "$BOB"}},
		// Bob is invited, not a member, until he accepts.
		{home: "bob", cmd: "kanal group list", want: []string{"You are in no group yet"}},
		{home: "bob", cmd: "kanal group invitations", want: []string{"$G", "$ALICE", "member", "1 member", "kanal group accept"}},
		{home: "bob", cmd: "kanal group accept $G", want: []string{"You are now a member of $G; the group has 2 members."}},
		{home: "bob", cmd: "kanal group invitations", want: []string{"You have no invitations."}},
		{home: "bob", cmd: "kanal group accept $G", exit: 1, want: []string{"kanal: group accept: "}},
		{cmd: "kanal group list", want: []string{"GROUP", "$G", "admin", "2 members"}},
		{cmd: "kanal group show $G", want: []string{"* $ALICE", "admin", "$BOB", "member", "2 members:"}},
		{cmd: "kanal send $G 'Hallo Gruppe'", want: []string{"sent"}},
		{home: "bob", cmd: "kanal inbox", want: []string{"$G", "Hallo Gruppe"}},
		{home: "bob", cmd: "kanal group list", want: []string{"$G", "member", "2 members"}},

		// A plain member may not add or remove.
		{home: "bob", cmd: "kanal group add $G $CAROL", exit: 1, want: []string{"kanal: group add: "}},
		{home: "bob", cmd: "kanal group remove $G $ALICE", exit: 1, want: []string{"kanal: group remove: "}},
		{cmd: "kanal group show $G", want: []string{"2 members:"}, not: []string{"$CAROL"}},
		// Bad input never reaches the server.
		{cmd: "kanal group add g_nope $CAROL", exit: 2, want: []string{`"g_nope" is not a group id`}},
		{cmd: "kanal group add $G carol@example.org", exit: 2, want: []string{`"carol@example.org" is not an account id`}},

		{cmd: "kanal group add --admin $G $CAROL", want: []string{"Invited $CAROL to $G as admin; the group has 2 members and 1 invitation."}},
		{home: "carol", cmd: "kanal group accept $G", want: []string{"the group has 3 members."}},
		{home: "carol", cmd: "kanal inbox", want: []string{"$G"}},
		{cmd: "kanal group remove $G $BOB", want: []string{"Removed $BOB from $G; the group has 2 members."}},
		{home: "bob", cmd: "kanal group list", want: []string{"You are in no group yet"}},
		{home: "bob", cmd: "kanal group show $G", exit: 1, want: []string{"kanal: group show: "}},
		{home: "carol", cmd: "kanal group leave $G", want: []string{"You left $G."}},
		{cmd: "kanal group show $G", want: []string{"1 member:", "* $ALICE"}, not: []string{"$CAROL", "1 members"}},
		// Bob declines a second invitation: alice cannot invite him again.
		{cmd: "kanal group create", want: []string{"Created a group"}, set: map[string]string{"G2": `(?m)^(g_[0-9a-f]{32})$`}},
		{cmd: "kanal group add $G2 $BOB", want: []string{"Invited $BOB"}},
		{cmd: "kanal group remove $G2 $BOB", want: []string{"Withdrew the invitation of $BOB to $G2."}},
		{cmd: "kanal group add $G2 $BOB", want: []string{"Invited $BOB"}},
		{home: "bob", cmd: "kanal group decline $G2", want: []string{"You declined the invitation to $G2"}},
		{home: "bob", cmd: "kanal group invitations", want: []string{"You have no invitations."}},
		{cmd: "kanal group add $G2 $BOB", exit: 1, want: []string{"kanal: group add: "}},
		{home: "bob", cmd: "kanal group decline g_nope", exit: 2, want: []string{`"g_nope" is not a group id`}},
		{cmd: "kanal help group", want: []string{"group create", "group add", "group remove", "group leave", "group list", "group show",
			"group invitations", "group accept", "group decline"}},
	})
}
