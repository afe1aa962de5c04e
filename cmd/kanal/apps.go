package main

import (
	"context"
	"encoding/json"

	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/miniapps"
	maclient "github.com/kanal-server/kanal/miniapps/client"
)

// appOpts are the flags of the mini-app commands.
type appOpts struct {
	grant        string
	all          bool
	conversation string
}

func appCommands() []*command {
	var ao appOpts
	return []*command{
		{
			name: "org app register", args: "<manifest.json>", nargs: 1,
			summary: "sign a mini-app's manifest as an organisation member and register it",
			help: `Reads the manifest (JSON: app_id, org_id, name, version, origins,
redirect_uris, launch_url, icon, scopes; see docs/miniapps.md), sets
issued_at to now, signs it with this device's key, device certificate and
membership certificate of the organisation (a JWS with x5c), and registers
it. The first registration prints the app's client secret, once: its
backend needs it. A new version asking for more scopes waits for the
operator's approval again.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return orgAppRegister(ctx, c, o, args[0])
			},
		},
		{
			name: "admin apps list", args: "", nargs: 0,
			summary: "list every registered mini-app with its status",
			flags:   operatorTokenFlags,
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error {
				api, err := c.appsOperator(o)
				if err != nil {
					return err
				}
				apps, err := api.AdminApps(ctx)
				if err != nil {
					return err
				}
				return printApps(c, apps, true)
			},
		},
		{
			name: "admin apps approve", args: "<app-id>", nargs: 1,
			summary: "approve a mini-app's latest manifest: citizens see it",
			flags:   operatorTokenFlags,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				api, err := c.appsOperator(o)
				if err != nil {
					return err
				}
				a, err := api.Approve(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "Approved %s version %d (scopes %s).\n", a.ID, a.ApprovedVersion, strings.Join(a.Manifest.Scopes, " "))
				return nil
			},
		},
		{
			name: "admin apps suspend", args: "<app-id>", nargs: 1,
			summary: "suspend a mini-app: no sign-in, no token, no bridge",
			flags:   operatorTokenFlags,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				api, err := c.appsOperator(o)
				if err != nil {
					return err
				}
				a, err := api.Suspend(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "Suspended %s.\n", a.ID)
				return nil
			},
		},
		{
			name: "apps", args: "", nargs: 0,
			summary: "list the approved mini-apps",
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error {
				_, api, err := c.appsSession(ctx, o)
				if err != nil {
					return err
				}
				apps, err := api.Apps(ctx)
				if err != nil {
					return err
				}
				return printApps(c, apps, false)
			},
		},
		{
			name: "app consent", args: "<app-id> (--grant SCOPE,… | --all)", nargs: 1,
			summary: "show a mini-app's scopes and grant some (the others are refused)",
			help: `Shows the app, its verified organisation and what each scope lets it do,
and records your decision per scope: --grant names the scopes granted
(openid is required), --all grants every scope of the manifest. Every
decision is kept, with its time and the manifest version.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&ao.grant, "grant", "", "comma-separated `scopes` to grant")
				fs.BoolVar(&ao.all, "all", false, "grant every scope the app asks for")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return appConsent(ctx, c, o, &ao, args[0])
			},
		},
		{
			name: "app open", args: "<app-id> [--conversation ID]", nargs: 1,
			summary: "open a mini-app: prints its URL with a launch token",
			help: `Your device's session asks kanal for a launch token for the app (after
consent): a short-lived JWS by the deployment naming your pairwise
subject in the app and the conversation it is opened from (by default
the one with the app's organisation). Open the printed URL in a browser:
the app signs you in with it, once, within two minutes.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&ao.conversation, "conversation", "", "the conversation `id` the app is opened from")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				_, api, err := c.appsSession(ctx, o)
				if err != nil {
					return err
				}
				out, err := api.Open(ctx, args[0], ao.conversation)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "Launch token valid until %s.\n", out.ExpiresAt.Local().Format(time.TimeOnly))
				fmt.Fprintln(c.stdout, out.URL)
				return nil
			},
		},
		{
			name: "consent list", args: "", nargs: 0,
			summary: "list your consents to mini-apps, each decision with its time",
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error {
				_, api, err := c.appsSession(ctx, o)
				if err != nil {
					return err
				}
				list, err := api.Consents(ctx)
				if err != nil {
					return err
				}
				if len(list) == 0 {
					fmt.Fprintln(c.stdout, "no consents")
					return nil
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "APP\tGRANTED\tREFUSED\tDECIDED\tVERSION")
				for _, s := range list {
					last := s.Records[len(s.Records)-1]
					granted := strings.Join(s.Granted, " ")
					if last.Decision == miniapps.DecisionRevoked {
						granted = "(revoked)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", s.AppID, dash(granted), dash(strings.Join(s.Refused, " ")),
						last.DecidedAt.Local().Format(time.DateTime), last.ManifestVersion)
				}
				return tw.Flush()
			},
		},
		{
			name: "consent revoke", args: "<app-id>", nargs: 1,
			summary: "revoke your consent to a mini-app; its tokens end at once",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				_, api, err := c.appsSession(ctx, o)
				if err != nil {
					return err
				}
				if _, err := api.Revoke(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "Revoked your consent to %s; its tokens no longer work.\n", args[0])
				return nil
			},
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) appsSession(ctx context.Context, o *opts) (*keystore.Store, *maclient.Client, error) {
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	return st, maclient.New(c.serverURL(o, st), st.Data.SessionToken, nil), nil
}

func (c *cli) appsOperator(o *opts) (*maclient.Client, error) {
	tok, err := c.operatorToken(o)
	if err != nil {
		return nil, err
	}
	return maclient.New(c.serverURL(o, nil), tok, nil), nil
}

func printApps(c *cli, apps []miniapps.App, admin bool) error {
	if len(apps) == 0 {
		fmt.Fprintln(c.stdout, "no apps")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if admin {
		fmt.Fprintln(tw, "APP\tSTATUS\tAPPROVED\tLATEST\tORGANISATION\tSCOPES")
	} else {
		fmt.Fprintln(tw, "APP\tNAME\tORGANISATION\tSCOPES")
	}
	for _, a := range apps {
		org := a.OrgID
		if a.OrgName != "" {
			org = fmt.Sprintf("%s (%s)", a.OrgName, a.OrgID)
		}
		if admin {
			scopes := strings.Join(a.Manifest.Scopes, " ")
			if a.Pending != nil {
				scopes += " → " + strings.Join(a.Pending.Scopes, " ") + " (waiting)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", a.ID, a.Status, a.ApprovedVersion, a.LatestVersion, org, scopes)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, oneLine(a.Manifest.Name), org, strings.Join(a.Manifest.Scopes, " "))
		}
	}
	return tw.Flush()
}

func orgAppRegister(ctx context.Context, c *cli, o *opts, path string) error {
	raw, err := readInput(c, path, miniapps.MaxManifest)
	if err != nil {
		return err
	}
	var m miniapps.Manifest
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if m.Version == 0 {
		m.Version = 1
	}
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	org, err := api.DirectoryOrg(ctx, m.OrgID)
	if err != nil {
		return err
	}
	var memPEM string
	for _, mem := range org.Members {
		for _, d := range mem.Devices {
			if d.DeviceID == st.Data.DeviceID {
				memPEM = d.MembershipCertificate
			}
		}
	}
	if memPEM == "" {
		return fmt.Errorf("this device has no membership certificate of %s: only its members sign its manifests", m.OrgID)
	}
	memDER, err := pemBlock([]byte(memPEM), "CERTIFICATE")
	if err != nil {
		return err
	}
	orgDER, err := pemBlock([]byte(org.Certificate), "CERTIFICATE")
	if err != nil {
		return err
	}
	devDER, err := pemBlock(st.Data.DeviceCertPEM, "CERTIFICATE")
	if err != nil {
		return err
	}
	_, roots, err := caRoots(st)
	if err != nil {
		return err
	}
	m.IssuedAt = c.now().UTC().Truncate(time.Second)
	jws, err := miniapps.SignManifest(m, orgsig.Member{Key: st.Data.DeviceKey, DeviceCert: devDER, Membership: memDER, OrgCert: orgDER}, roots)
	if err != nil {
		return err
	}
	reg, err := maclient.New(c.serverURL(o, st), st.Data.SessionToken, nil).Register(ctx, jws)
	if err != nil {
		return err
	}
	if reg.NeedsApproval {
		fmt.Fprintf(c.stderr, "Registered %s version %d; the operator must approve it before citizens see it.\n", m.AppID, m.AppVer)
	} else {
		fmt.Fprintf(c.stderr, "Registered %s version %d; citizens see it now.\n", m.AppID, m.AppVer)
	}
	if reg.ClientSecret != "" {
		fmt.Fprintf(c.stderr, "The app's client secret follows, shown this once: keep it in the app's backend.\n")
		fmt.Fprintf(c.stdout, "client_id=%s\nclient_secret=%s\n", m.AppID, reg.ClientSecret)
	}
	return nil
}

func appConsent(ctx context.Context, c *cli, o *opts, ao *appOpts, id string) error {
	_, api, err := c.appsSession(ctx, o)
	if err != nil {
		return err
	}
	a, err := api.App(ctx, id)
	if err != nil {
		return err
	}
	org := a.OrgID
	if a.OrgName != "" {
		org = a.OrgName + " (verified organisation " + a.OrgID + ")"
	}
	fmt.Fprintf(c.stderr, "%s — by %s, version %d\n", oneLine(a.Manifest.Name), org, a.ApprovedVersion)
	for _, s := range a.Manifest.Scopes {
		fmt.Fprintf(c.stderr, "  %-17s %s\n", s, miniapps.ScopeText[s])
	}
	var grant []string
	switch {
	case ao.all:
		grant = a.Manifest.Scopes
	case ao.grant != "":
		for _, s := range strings.Split(ao.grant, ",") {
			if s = strings.TrimSpace(s); s != "" {
				grant = append(grant, s)
			}
		}
	default:
		return &usageError{cmd: "app consent", msg: "give --grant SCOPE,… or --all"}
	}
	st, err := api.Consent(ctx, id, grant)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Granted: %s\nRefused: %s\n", dash(strings.Join(st.Granted, " ")), dash(strings.Join(st.Refused, " ")))
	return nil
}
