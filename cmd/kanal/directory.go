package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

func directoryCommands() []*command {
	return []*command{
		{
			name: "directory ca", args: "[--crl]", nargs: 0,
			summary: "print the deployment CA certificate (PEM); no login needed",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.ca, "crl", false, "print the current revocation list instead")
			},
			run: directoryCA,
		},
		{
			name: "directory devices", args: "<account-id>", nargs: 1,
			summary: "list an account's devices and whether each is revoked",
			run:     directoryDevices,
		},
		{
			name: "directory org", args: "<org-id>", nargs: 1,
			summary: "show an organisation and its agents",
			run:     directoryOrg,
		},
	}
}

func directoryCA(ctx context.Context, c *cli, o *opts, _ []string) error {
	dir, err := c.api(o, nil).DirectoryCA(ctx)
	if err != nil {
		return err
	}
	out := dir.Certificate
	if o.ca {
		out = dir.CRL
	}
	_, err = io.WriteString(c.stdout, out)
	return err
}

func directoryDevices(ctx context.Context, c *cli, o *opts, args []string) error {
	_, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	devs, err := api.AccountDevices(ctx, args[0])
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSTATUS\tREVOKED AT")
	for _, d := range devs {
		at := "-"
		if d.RevokedAt != nil {
			at = d.RevokedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.DeviceID, d.Status, at)
	}
	return tw.Flush()
}

func directoryOrg(ctx context.Context, c *cli, o *opts, args []string) error {
	_, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	org, err := api.DirectoryOrg(ctx, args[0])
	if err != nil {
		return err
	}
	verified := "unverified"
	if org.Verified {
		verified = "verified"
	}
	fmt.Fprintf(c.stdout, "%s %q (%s, %s)\n", org.OrgID, oneLine(org.Name), org.Kind, verified)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, m := range org.Members {
		fmt.Fprintf(tw, "  %s\t%s\t%d devices\n", m.AccountID, m.Role, len(m.Devices))
	}
	return tw.Flush()
}
