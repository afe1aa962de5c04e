package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	mclient "github.com/kanal-server/kanal/messaging/client"
)

// The broadcast commands. An organisation's announcements (the council's
// notices) reach every account that follows it; they are signed by the
// agent who posted them for the organisation, and not end-to-end
// encrypted: they are public notices, and the server reads them.

func broadcastCommands() []*command {
	return []*command{
		{
			name: "follow", args: "<org-id>", nargs: 1,
			summary: "receive an organisation's announcements (the council's notices) on all your devices",
			help: `From now on, every announcement the organisation posts reaches all your
devices; 'kanal inbox' shows it as the organisation's verified
announcement. Announcements are signed, not end-to-end encrypted: they are
public notices, and the server can read them.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error { return follow(ctx, c, o, args[0]) },
		},
		{
			name: "unfollow", args: "<org-id>", nargs: 1,
			summary: "stop receiving an organisation's announcements",
			run:     func(ctx context.Context, c *cli, o *opts, args []string) error { return unfollow(ctx, c, o, args[0]) },
		},
		{
			name: "following", nargs: 0,
			summary: "list the organisations whose announcements you receive",
			run:     following,
		},
		{
			name: "broadcast post", args: "<org-id> <text>", nargs: -1,
			summary: "post an announcement to an organisation's followers (its agents only)",
			help: `Signs the text with this device's key and its membership certificate of
the organisation, and posts it: it is stored once and reaches every device
of every follower. The text is not end-to-end encrypted — post only what
is meant for the public.`,
			run: broadcastPost,
		},
	}
}

func checkOrgID(cmd, id string) error {
	if !strings.HasPrefix(id, "org_") || len(id) > 64 {
		return &usageError{cmd: cmd, msg: fmt.Sprintf("%q is not an organisation id (org_…; see 'kanal directory')", id)}
	}
	return nil
}

func (c *cli) broadcastClient(ctx context.Context, o *opts) (*mclient.Client, error) {
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return nil, err
	}
	return c.messenger(ctx, o, st)
}

func follow(ctx context.Context, c *cli, o *opts, org string) error {
	if err := checkOrgID("follow", org); err != nil {
		return err
	}
	mc, err := c.broadcastClient(ctx, o)
	if err != nil {
		return err
	}
	if _, err := mc.Follow(ctx, org); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "You follow %s: its announcements reach all your devices.\n", org)
	return nil
}

func unfollow(ctx context.Context, c *cli, o *opts, org string) error {
	if err := checkOrgID("unfollow", org); err != nil {
		return err
	}
	mc, err := c.broadcastClient(ctx, o)
	if err != nil {
		return err
	}
	if err := mc.Unfollow(ctx, org); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "You no longer follow %s.\n", org)
	return nil
}

func following(ctx context.Context, c *cli, o *opts, _ []string) error {
	mc, err := c.broadcastClient(ctx, o)
	if err != nil {
		return err
	}
	l, err := mc.Following(ctx)
	if err != nil {
		return err
	}
	if len(l.Following) == 0 {
		fmt.Fprintln(c.stdout, "You follow no organisation: 'kanal follow <org>' starts.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORGANISATION\tSINCE")
	for _, f := range l.Following {
		fmt.Fprintf(tw, "%s\t%s\n", f.OrgID, f.FollowedAt.Local().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

func broadcastPost(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) < 2 {
		return &usageError{cmd: "broadcast post", msg: "give the organisation and the text"}
	}
	org, text := args[0], strings.Join(args[1:], " ")
	if err := checkOrgID("broadcast post", org); err != nil {
		return err
	}
	mc, err := c.broadcastClient(ctx, o)
	if err != nil {
		return err
	}
	r, err := mc.Announce(ctx, org, mclient.NewMessageID(), text)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Announcement %s posted to %s's followers (%d devices).\n", r.PostID, org, r.Devices)
	return nil
}
