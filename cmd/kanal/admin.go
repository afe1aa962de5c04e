package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/client"
)

func adminCommands() []*command {
	tokenFlag := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.token, "token", "", "operator `token` (default $KANAL_OPERATOR_TOKEN)")
	}
	const tokenHelp = `Authorised by the operator token kanald printed at its first start, from
--token or KANAL_OPERATOR_TOKEN. Needs no key store.`
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
			name: "admin org member remove", args: "<org-id> <account-id>", nargs: 2,
			summary: "remove an account from an organisation; its memberships are revoked",
			help:    tokenHelp,
			flags:   tokenFlag,
			run:     adminMemberRemove,
		},
	}
}

func (c *cli) operator(o *opts) (*client.Client, error) {
	tok := o.token
	if tok == "" {
		tok = c.env("KANAL_OPERATOR_TOKEN")
	}
	if tok == "" {
		return nil, errors.New("no operator token: set KANAL_OPERATOR_TOKEN or pass --token")
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

func adminMemberAdd(ctx context.Context, c *cli, o *opts, args []string) error {
	api, err := c.operator(o)
	if err != nil {
		return err
	}
	m, err := api.AddMember(ctx, args[0], args[1], o.role)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Added account %s to %s as %s (%d membership certificates).\n",
		m.AccountID, m.OrgID, m.Role, len(m.Memberships))
	return nil
}

func adminMemberRemove(ctx context.Context, c *cli, o *opts, args []string) error {
	api, err := c.operator(o)
	if err != nil {
		return err
	}
	if err := api.RemoveMember(ctx, args[0], args[1]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Removed account %s from %s.\n", args[1], args[0])
	return nil
}
