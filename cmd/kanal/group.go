package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kanal-server/kanal/messaging"
	mclient "github.com/kanal-server/kanal/messaging/client"
)

// The group commands. The server keeps a group's member list, so that it
// knows whose devices a group message goes to; what the members say goes
// end to end with 'kanal send <group>' and 'kanal chat <group>'.

// groupOpts are the flags of the group commands.
type groupOpts struct {
	admin bool // add as admin instead of member
}

func groupCommands() []*command {
	var g groupOpts
	adminFlag := func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&g.admin, "admin", false, "make the account an admin of the group (admins add and remove members)")
	}
	return []*command{
		{
			name: "group create", args: "[account-id…]", nargs: -1,
			summary: "create a group with you as its admin and invite the accounts (prints its id)",
			help: `Creates a group; you are its first admin. The accounts given are invited:
each becomes a member when it accepts ('kanal group accept <group>'), and
until then no message of the group reaches it. Write to the group with
'kanal send <group> <text>' or 'kanal chat <group>'.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error { return groupCreate(ctx, c, o, args) },
		},
		{
			name: "group add", args: "[--admin] <group-id> <account-id>", nargs: 2,
			summary: "invite an account to a group (admins only); it becomes a member when it accepts",
			flags:   adminFlag,
			run:     func(ctx context.Context, c *cli, o *opts, args []string) error { return groupAdd(ctx, c, o, &g, args) },
		},
		{
			name: "group remove", args: "<group-id> <account-id>", nargs: 2,
			summary: "remove an account from a group, or withdraw its invitation (admins only)",
			run:     groupRemove,
		},
		{
			name: "group leave", args: "<group-id>", nargs: 1,
			summary: "leave a group",
			help:    "The last admin cannot leave while others remain: make another member admin first.",
			run:     groupLeave,
		},
		{
			name: "group list", nargs: 0,
			summary: "list your groups",
			run:     groupList,
		},
		{
			name: "group show", args: "<group-id>", nargs: 1,
			summary: "show a group's members and their roles, and who is invited",
			run:     groupShow,
		},
		{
			name: "group invitations", nargs: 0,
			summary: "list the groups you are invited to",
			run:     groupInvitations,
		},
		{
			name: "group accept", args: "<group-id>", nargs: 1,
			summary: "accept an invitation: become a member of the group",
			run:     groupAccept,
		},
		{
			name: "group decline", args: "<group-id>", nargs: 1,
			summary: "decline an invitation",
			help: `Declines an invitation to a group. For 90 days nobody can invite you to
that group again, and the one who invited you cannot invite you to any group.`,
			run: groupDecline,
		},
	}
}

// groupClient opens the key store and this device's end-to-end client.
func (c *cli) groupClient(ctx context.Context, o *opts) (*mclient.Client, *namer, error) {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	mc, err := c.messenger(ctx, o, st)
	if err != nil {
		return nil, nil, err
	}
	return mc, c.names(ctx, o, st, api), nil
}

// checkGroupID refuses what is not a group id before asking the server.
func checkGroupID(cmd, id string) error {
	if !messaging.ValidGroupID(id) {
		return &usageError{cmd: cmd, msg: fmt.Sprintf("%q is not a group id (g_ and 32 hex digits; see 'kanal group list')", id)}
	}
	return nil
}

// checkAccountID refuses what is not an account id before asking the server.
func checkAccountID(cmd, id string) error {
	if !strings.HasPrefix(id, "acc_") {
		return &usageError{cmd: cmd, msg: fmt.Sprintf("%q is not an account id (acc_…)", id)}
	}
	return nil
}

func groupCreate(ctx context.Context, c *cli, o *opts, args []string) error {
	members := make([]messaging.GroupMemberRequest, 0, len(args))
	for _, a := range args {
		if err := checkAccountID("group create", a); err != nil {
			return err
		}
		members = append(members, messaging.GroupMemberRequest{AccountID: a, Role: messaging.GroupMember})
	}
	mc, _, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	g, err := mc.CreateGroup(ctx, members...)
	if err != nil {
		return err
	}
	// The id alone on stdout, so that G=$(kanal group create …) works.
	fmt.Fprintf(c.stderr, "Created a group; you are its admin.\n")
	if len(g.Invitations) > 0 {
		fmt.Fprintf(c.stderr, "Invited %s; each becomes a member on accepting ('kanal group accept %s').\n",
			plural(len(g.Invitations), "account"), g.GroupID)
	}
	fmt.Fprintln(c.stdout, g.GroupID)
	return nil
}

func groupAdd(ctx context.Context, c *cli, o *opts, g *groupOpts, args []string) error {
	if err := checkGroupID("group add", args[0]); err != nil {
		return err
	}
	if err := checkAccountID("group add", args[1]); err != nil {
		return err
	}
	role := messaging.GroupMember
	if g.admin {
		role = messaging.GroupAdmin
	}
	mc, n, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	grp, err := mc.AddGroupMember(ctx, args[0], args[1], role)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Invited %s to %s as %s; the group has %s and %s.\n", n.account(args[1]), args[0], role,
		plural(len(grp.Members), "member"), plural(len(grp.Invitations), "invitation"))
	return nil
}

func groupRemove(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := checkGroupID("group remove", args[0]); err != nil {
		return err
	}
	if err := checkAccountID("group remove", args[1]); err != nil {
		return err
	}
	mc, n, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	before, err := mc.Group(ctx, args[0])
	if err != nil {
		return err
	}
	grp, err := mc.RemoveGroupMember(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	for _, inv := range before.Invitations {
		if inv.AccountID == args[1] {
			fmt.Fprintf(c.stdout, "Withdrew the invitation of %s to %s.\n", n.account(args[1]), args[0])
			return nil
		}
	}
	fmt.Fprintf(c.stdout, "Removed %s from %s; the group has %s.\n", n.account(args[1]), args[0], plural(len(grp.Members), "member"))
	return nil
}

func groupLeave(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := checkGroupID("group leave", args[0]); err != nil {
		return err
	}
	mc, n, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	if _, err := mc.RemoveGroupMember(ctx, args[0], n.me); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "You left %s.\n", args[0])
	return nil
}

func groupList(ctx context.Context, c *cli, o *opts, _ []string) error {
	mc, _, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	l, err := mc.Groups(ctx)
	if err != nil {
		return err
	}
	if len(l.Groups) == 0 {
		fmt.Fprintln(c.stdout, "You are in no group yet: 'kanal group create' starts one.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tYOUR ROLE\tMEMBERS")
	for _, s := range l.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.GroupID, s.Role, plural(s.Members, "member"))
	}
	return tw.Flush()
}

func groupShow(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := checkGroupID("group show", args[0]); err != nil {
		return err
	}
	mc, n, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	g, err := mc.Group(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "group       %s\ncreated by  %s on %s\n%s:\n", g.GroupID, n.account(g.CreatedBy),
		g.CreatedAt.Local().Format("2006-01-02"), plural(len(g.Members), "member"))
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, m := range g.Members {
		mark := " "
		if m.AccountID == n.me {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s %s\t%s\tsince %s\n", mark, n.account(m.AccountID), m.Role, m.AddedAt.Local().Format("2006-01-02"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(g.Invitations) == 0 {
		return nil
	}
	fmt.Fprintf(c.stdout, "%s:\n", plural(len(g.Invitations), "invitation"))
	for _, inv := range g.Invitations {
		fmt.Fprintf(tw, "  %s\t%s\tinvited by %s, until %s\n", n.account(inv.AccountID), inv.Role, n.account(inv.InvitedBy), inv.ExpiresAt.Local().Format("2006-01-02"))
	}
	return tw.Flush()
}

func groupInvitations(ctx context.Context, c *cli, o *opts, _ []string) error {
	mc, n, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	l, err := mc.Invitations(ctx)
	if err != nil {
		return err
	}
	if len(l.Invitations) == 0 {
		fmt.Fprintln(c.stdout, "You have no invitations.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tINVITED BY\tAS\tMEMBERS\tUNTIL")
	for _, inv := range l.Invitations {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", inv.GroupID, n.account(inv.InvitedBy), inv.Role, plural(inv.Members, "member"),
			inv.ExpiresAt.Local().Format("2006-01-02"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "Accept with 'kanal group accept <group>', decline with 'kanal group decline <group>'.")
	return nil
}

func groupAccept(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := checkGroupID("group accept", args[0]); err != nil {
		return err
	}
	mc, _, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	g, err := mc.AcceptInvitation(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "You are now a member of %s; the group has %s.\n", args[0], plural(len(g.Members), "member"))
	return nil
}

func groupDecline(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := checkGroupID("group decline", args[0]); err != nil {
		return err
	}
	mc, _, err := c.groupClient(ctx, o)
	if err != nil {
		return err
	}
	out, err := mc.DeclineInvitation(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "You declined the invitation to %s; you cannot be invited to it again before %s.\n",
		args[0], out.BlockedUntil.Local().Format("2006-01-02"))
	return nil
}
