package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

func directoryCommands() []*command {
	return []*command{
		{
			name: "directory ca", args: "[--crl | --org-crl ORG]", nargs: 0,
			summary: "print the deployment CA certificate (PEM); no login needed",
			help: `Prints the deployment's root certificate and, where the root is kept
offline, its issuing intermediates after it (current first): the file
'kanal verify --ca' and 'kanal form import --ca' read. With --crl, prints the CA's current revocation list of device certificates
instead; with --org-crl, the revocation list of an organisation's
membership certificates (signed by the organisation, which 'kanal verify'
checks). Both are PEM.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.ca, "crl", false, "print the current revocation list instead")
				fs.StringVar(&o.orgCRL, "org-crl", "", "print this `organisation`'s membership revocation list instead")
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
	api := c.api(o, nil)
	if o.orgCRL != "" {
		// Only parsed here: the organisation certificate that signs it
		// travels in every offer, and 'kanal verify' checks the signature.
		der, err := api.OrgCRL(ctx, o.orgCRL, nil)
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
		return err
	}
	dir, err := api.DirectoryCA(ctx)
	if err != nil {
		return err
	}
	certs, err := ca.ParseCertificatesPEM([]byte(dir.Certificate + strings.Join(dir.Intermediates, "")))
	if err != nil {
		return err
	}
	if len(certs) == 0 {
		return errors.New("kanald sent no CA certificate")
	}
	// The intermediates must be the root's, or the file would be refused
	// later by everything that reads it.
	if _, err := ca.TrustPool(certs[0], certs[1:]); err != nil {
		return err
	}
	if !o.ca {
		for _, cert := range certs {
			if _, err := c.stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})); err != nil {
				return err
			}
		}
		return nil
	}
	// The device list is signed by the current issuing intermediate, or by
	// the root where the root issues.
	der, err := api.CRL(ctx, certs[min(1, len(certs)-1)])
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
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
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	n := c.names(ctx, o, st, api)
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
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", n.account(m.AccountID), m.Role, plural(len(m.Devices), "device"))
	}
	return tw.Flush()
}
