package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/client"
)

func adminCommands() []*command {
	tokenFlag := operatorTokenFlags
	const tokenHelp = `Authorised by the operator token, which kanald writes to
<data-dir>/operator-token (mode 0600): from --token-file or
KANAL_OPERATOR_TOKEN_FILE, or --token or KANAL_OPERATOR_TOKEN. Needs no key
store.`
	return []*command{
		{
			name: "admin org create", args: "[--kind office|council|merchant] <name>", nargs: 1,
			summary: "create an organisation (prints its id)",
			help:    "The organisation stays unverified until 'kanal admin org verify'.\n" + tokenHelp,
			flags: func(fs *flag.FlagSet, o *opts) {
				tokenFlag(fs, o)
				fs.StringVar(&o.kind, "kind", identity.KindOffice, "`kind` of organisation: office, council or merchant")
			},
			run: adminOrgCreate,
		},
		{
			name: "admin org verify", args: "<org-id>", nargs: 1,
			summary: "verify an organisation: the CA issues its certificate",
			help:    tokenHelp,
			flags:   tokenFlag,
			run:     adminOrgVerify,
		},
		{
			name: "admin org member add", args: "[--role R] <org-id> <email|account-id>", nargs: 2,
			summary: "add an account to an organisation",
			help: `Roles: owner, admin, agent; councils also organiser, merchants also seller.
Each of the member's active devices gets a membership certificate.
` + tokenHelp,
			flags: func(fs *flag.FlagSet, o *opts) {
				tokenFlag(fs, o)
				fs.StringVar(&o.role, "role", identity.RoleAgent, "the member's `role`")
			},
			run: adminMemberAdd,
		},
		{
			name: "admin org require-high", args: "<org-id> on|off", nargs: 2,
			summary: "require level high (a linked eID) of an organisation's new agents",
			help:    requireHighHelp + tokenHelp,
			flags:   tokenFlag,
			run:     adminRequireHigh,
		},
		{
			name: "admin org member remove", args: "<org-id> <account-id>", nargs: 2,
			summary: "remove an account from an organisation; its memberships are revoked",
			help:    tokenHelp,
			flags:   tokenFlag,
			run:     adminMemberRemove,
		},
	}
}

// operatorTokenFlags adds --token and --token-file.
func operatorTokenFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.token, "token", "", "operator `token` (default $KANAL_OPERATOR_TOKEN)")
	fs.StringVar(&o.tokenFile, "token-file", "", "`file` holding the operator token, such as kanal-data/operator-token (default $KANAL_OPERATOR_TOKEN_FILE)")
}

// operatorToken finds the operator token: --token, --token-file,
// KANAL_OPERATOR_TOKEN, KANAL_OPERATOR_TOKEN_FILE, in that order.
func (c *cli) operatorToken(o *opts) (string, error) {
	switch {
	case o.token != "":
		return o.token, nil
	case o.tokenFile != "":
		return readTokenFile(o.tokenFile)
	case c.env("KANAL_OPERATOR_TOKEN") != "":
		return c.env("KANAL_OPERATOR_TOKEN"), nil
	case c.env("KANAL_OPERATOR_TOKEN_FILE") != "":
		return readTokenFile(c.env("KANAL_OPERATOR_TOKEN_FILE"))
	}
	return "", errors.New("no operator token: pass --token-file kanal-data/operator-token, or set KANAL_OPERATOR_TOKEN_FILE or KANAL_OPERATOR_TOKEN")
}

// readTokenFile reads an operator token file. Like ssh with a private
// key, it refuses a file that others may read: the token is as good as
// the operator.
func readTokenFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the operator token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("operator token file %s is readable by others (mode %04o); chmod 600 it and reset the token with kanald operator reset", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the operator token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, "kanal_op_") || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s holds no operator token (kanal_op_…)", path)
	}
	return tok, nil
}

func (c *cli) operator(o *opts) (*client.Client, error) {
	tok, err := c.operatorToken(o)
	if err != nil {
		return nil, err
	}
	return c.api(o, nil).WithToken(tok), nil
}

func adminOrgCreate(ctx context.Context, c *cli, o *opts, args []string) error {
	api, err := c.operator(o)
	if err != nil {
		return err
	}
	org, err := api.CreateOrg(ctx, args[0], o.kind)
	if err != nil {
		return err
	}
	// The id alone on stdout, so that ORG=$(kanal admin org create …) works.
	fmt.Fprintf(c.stderr, "Created %s %q (unverified).\n", org.Kind, oneLine(org.Name))
	fmt.Fprintln(c.stdout, org.OrgID)
	return nil
}

func adminOrgVerify(ctx context.Context, c *cli, o *opts, args []string) error {
	api, err := c.operator(o)
	if err != nil {
		return err
	}
	org, err := api.VerifyOrg(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Verified %s %q (%s).\n", org.Kind, oneLine(org.Name), org.OrgID)
	return nil
}

// orgCommands let an organisation's owners and admins manage its members
// with their own session, without the operator.
func orgCommands() []*command {
	const sessionHelp = `Needs a substantial session ('kanal login') of an owner or admin of the
organisation; an admin cannot add or remove owners. The operator does the
same with 'kanal admin org member'.`
	return []*command{
		{
			name: "org member add", args: "[--role R] <org-id> <email|account-id>", nargs: 2,
			summary: "add an account to your organisation (owners and admins)",
			help: `Roles: owner, admin, agent; councils also organiser, merchants also seller.
Each of the member's active devices gets a membership certificate.
` + sessionHelp,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.role, "role", identity.RoleAgent, "the member's `role`")
			},
			run: orgMemberAdd,
		},
		{
			name: "org require-high", args: "<org-id> on|off", nargs: 2,
			summary: "require level high (a linked eID) of your organisation's new agents",
			help:    requireHighHelp + sessionHelp,
			run:     orgRequireHigh,
		},
		{
			name: "org member remove", args: "<org-id> <account-id>", nargs: 2,
			summary: "remove an account from your organisation; its memberships are revoked",
			help:    sessionHelp,
			run:     orgMemberRemove,
		},
	}
}

// The operator (with its token) and an organisation's owners and admins
// (with their own session) manage members through the same routes.
var (
	adminMemberAdd    = memberAdd(func(_ context.Context, c *cli, o *opts) (*client.Client, error) { return c.operator(o) })
	adminMemberRemove = memberRemove(func(_ context.Context, c *cli, o *opts) (*client.Client, error) { return c.operator(o) })
	orgMemberAdd      = memberAdd(sessionAPI)
	orgMemberRemove   = memberRemove(sessionAPI)
	adminRequireHigh  = requireHigh(func(_ context.Context, c *cli, o *opts) (*client.Client, error) { return c.operator(o) })
	orgRequireHigh    = requireHigh(sessionAPI)
)

const requireHighHelp = `The organisation's agents must then have an eID linked ('kanal eid link'):
adding an agent without one is refused. Members already there stay.
`

func requireHigh(with apiFor) func(context.Context, *cli, *opts, []string) error {
	return func(ctx context.Context, c *cli, o *opts, args []string) error {
		var on bool
		switch args[1] {
		case "on":
			on = true
		case "off":
		default:
			return fmt.Errorf("say on or off, not %q", args[1])
		}
		api, err := with(ctx, c, o)
		if err != nil {
			return err
		}
		org, err := api.RequireHighForAgents(ctx, args[0], on)
		if err != nil {
			return err
		}
		if org.RequireHighForAgents {
			fmt.Fprintf(c.stdout, "%s now adds only agents with an eID linked (level high).\n", org.OrgID)
		} else {
			fmt.Fprintf(c.stdout, "%s adds agents without an eID.\n", org.OrgID)
		}
		return nil
	}
}

func sessionAPI(ctx context.Context, c *cli, o *opts) (*client.Client, error) {
	_, api, err := c.openSession(ctx, o)
	return api, err
}

type apiFor func(context.Context, *cli, *opts) (*client.Client, error)

func memberAdd(with apiFor) func(context.Context, *cli, *opts, []string) error {
	return func(ctx context.Context, c *cli, o *opts, args []string) error {
		api, err := with(ctx, c, o)
		if err != nil {
			return err
		}
		m, err := api.AddMember(ctx, args[0], args[1], o.role)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Added account %s to %s as %s (%s).\n",
			m.AccountID, m.OrgID, m.Role, plural(len(m.Memberships), "membership certificate"))
		return nil
	}
}

func memberRemove(with apiFor) func(context.Context, *cli, *opts, []string) error {
	return func(ctx context.Context, c *cli, o *opts, args []string) error {
		api, err := with(ctx, c, o)
		if err != nil {
			return err
		}
		if err := api.RemoveMember(ctx, args[0], args[1]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Removed account %s from %s.\n", args[1], args[0])
		return nil
	}
}
