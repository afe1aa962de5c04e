package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/miniapps/forms"
	fclient "github.com/kanal-server/kanal/miniapps/forms/client"
)

// templateOpts are the flags of the form template commands.
type templateOpts struct {
	org, out, dir, ca, parent, id string
	answers, key                  string
	attach                        attachList
	withdrawn                     bool
}

// attachList collects repeated --attach NAME=FILE[:MEDIA/TYPE] flags.
type attachList []string

func (l *attachList) String() string     { return strings.Join(*l, ",") }
func (l *attachList) Set(s string) error { *l = append(*l, s); return nil }

// adoption is the file 'kanal form import' writes for each template it
// verified: the signed template and the CA certificate it chains to, what
// 'kanal form publish --parent' needs to name and carry it.
type adoption struct {
	Signed        forms.Signed `json:"signed"`
	CA            []byte       `json:"ca"`                      // DER, the exporting deployment's root
	Intermediates [][]byte     `json:"intermediates,omitempty"` // DER, its issuing intermediates under an offline root
}

func templateCommands() []*command {
	var to templateOpts
	return []*command{
		{
			name: "form publish", args: "<template.json | builtin:NAME> --org ORG [--parent FILE | --parent ID@VERSION] [--out signed.json]", nargs: 1,
			summary: "sign a form template as a member of the organisation and publish it in the catalogue",
			help: `Reads a template (docs/forms.md; builtin:hundeanmeldung, builtin:bewohnerparkausweis
and builtin:sperrmuell are the municipal templates kanal ships), makes it
the organisation's (org id and name from its certificate), signs it with
this device's key, device and membership certificates (a JWS with x5c),
and publishes it. --parent names what it derives from: a file written by
'kanal form import' (a template adopted from another deployment) or a
version in this catalogue (a new version of an earlier one); the parent's
id, version, hash and CA go into the template and its signed lineage is
carried along.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&to.org, "org", "", "the publishing organisation's `id`")
				fs.StringVar(&to.parent, "parent", "", "the parent: an adoption `file` from 'kanal form import' or ID@VERSION")
				fs.StringVar(&to.out, "out", "", "also write the signed template to this `file`")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return formPublish(ctx, c, o, &to, args[0])
			},
		},
		{
			name: "form list", args: "[--org ORG] [--id ID [--withdrawn]]", nargs: 0,
			summary: "list the catalogue of form templates",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&to.org, "org", "", "only this organisation's templates")
				fs.StringVar(&to.id, "id", "", "every version of this template")
				fs.BoolVar(&to.withdrawn, "withdrawn", false, "with --id, withdrawn versions too")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return formList(ctx, c, o, &to) },
		},
		{
			name: "form show", args: "<ID[@VERSION]> [--out signed.json] [--withdrawn]", nargs: 1,
			summary: "fetch a template, verify it and its provenance, and show its pages and fields",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&to.out, "out", "", "write the signed template (for 'kanal verify') to this `file`")
				fs.BoolVar(&to.withdrawn, "withdrawn", false, "show a withdrawn version too")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return formShow(ctx, c, o, &to, args[0])
			},
		},
		{
			name: "form withdraw", args: "<ID@VERSION>", nargs: 1,
			summary: "withdraw a template version: no new submission can use it",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return formWithdraw(ctx, c, o, args[0])
			},
		},
		{
			name: "form export", args: "<ID@VERSION>… --org ORG --out bundle.jws", nargs: -1,
			summary: "export templates as a bundle signed for the organisation",
			help: `Fetches and verifies each template, and signs them together as a bundle
(a JWS of media type kanal-form-bundle+jws) with this device as a member of
the organisation. Another deployment imports it with 'kanal form import',
given this deployment's CA certificate ('kanal directory ca').`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&to.org, "org", "", "the exporting organisation's `id`")
				fs.StringVar(&to.out, "out", "bundle.jws", "write the bundle to this `file`")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return formExport(ctx, c, o, &to, args)
			},
		},
		{
			name: "form import", args: "<bundle.jws> --ca exporter-ca.pem [--dir DIR]", nargs: 1,
			summary: "verify a bundle from another deployment offline and write its templates for adoption",
			help: `Verifies the bundle and every template in it, with their lineage, against
the exporting deployment's CA certificate (obtained from its operator), asking
no server. For each template it writes ID-VERSION.json (the template, to
adapt) and ID-VERSION.adopt.json (the signed template and the exporter's CA,
for 'kanal form publish --parent'). Exit status 0 means everything verifies.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&to.ca, "ca", "", "the exporting deployment's CA certificate `file` (PEM)")
				fs.StringVar(&to.dir, "dir", ".", "write the templates into this `directory`")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error { return formImport(c, &to, args[0]) },
		},
		{
			name: "form handoff", args: "<template> --answers answers.json [--attach NAME=FILE[:TYPE]]… --key system.jwk --ca system-ca.pem [--dir DIR]", nargs: 1,
			summary: "encrypt a submission for the office's specialist system in FIT-Connect's format",
			help: `Checks the decrypted answers and attachments of a submission against the
template (a file, or ID@VERSION from the catalogue, verified), then
encrypts the data, each attachment and the FIT-Connect metadata record
(metadata schema 1.2.0, with the SHA-512 of the data and of every
attachment) as compact JWE (RSA-OAEP-256, A256GCM) to the specialist
system's key. The key is a JWK with an x5c certificate chain, accepted
only if the chain verifies against the CA certificate the operator
configured for specialist systems (--ca). Writes handoff.json (all parts)
and one .jwe file per part into --dir. Nothing leaves this device.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&to.answers, "answers", "", "the submission's answers, a JSON `file`")
				fs.Var(&to.attach, "attach", "an attachment NAME=FILE[:media/type] (repeat)")
				fs.StringVar(&to.key, "key", "", "the specialist system's public key, a JWK `file` with x5c")
				fs.StringVar(&to.ca, "ca", "", "the CA certificate `file` (PEM) the operator configured for specialist systems")
				fs.StringVar(&to.dir, "dir", "handoff", "write the encrypted parts into this `directory`")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return formHandoff(ctx, c, o, &to, args[0])
			},
		},
		{
			name: "form diff", args: "<A> [<B>]", nargs: -1,
			summary: "show what changed between two templates, or between a fork and its parent",
			help: `A and B are template files (plain, signed, or adoption files) or ID@VERSION
in the catalogue. With one argument, a signed template with a parent, the
parent from its lineage is compared with it.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error { return formDiff(ctx, c, o, args) },
		},
	}
}

// splitRef splits "id@version"; the version defaults to "latest".
func splitRef(ref string) (string, string) {
	id, v, ok := strings.Cut(ref, "@")
	if !ok {
		v = "latest"
	}
	return id, v
}

// formMember is this device as a member of org, ready to sign.
func formMember(ctx context.Context, c *cli, o *opts, orgID string) (*keystore.Store, orgsig.Member, *x509.Certificate, error) {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return nil, orgsig.Member{}, nil, err
	}
	org, err := api.DirectoryOrg(ctx, orgID)
	if err != nil {
		return nil, orgsig.Member{}, nil, err
	}
	var memPEM string
	for _, m := range org.Members {
		for _, d := range m.Devices {
			if d.DeviceID == st.Data.DeviceID {
				memPEM = d.MembershipCertificate
			}
		}
	}
	if memPEM == "" {
		return nil, orgsig.Member{}, nil, fmt.Errorf("this device has no membership certificate of %s: only its members sign for it", orgID)
	}
	memDER, err := pemBlock([]byte(memPEM), "CERTIFICATE")
	if err != nil {
		return nil, orgsig.Member{}, nil, err
	}
	orgDER, err := pemBlock([]byte(org.Certificate), "CERTIFICATE")
	if err != nil {
		return nil, orgsig.Member{}, nil, err
	}
	devDER, err := pemBlock(st.Data.DeviceCertPEM, "CERTIFICATE")
	if err != nil {
		return nil, orgsig.Member{}, nil, err
	}
	caC, err := caCert(st)
	if err != nil {
		return nil, orgsig.Member{}, nil, err
	}
	return st, orgsig.Member{Key: st.Data.DeviceKey, DeviceCert: devDER, Membership: memDER, OrgCert: orgDER}, caC, nil
}

func (c *cli) forms(o *opts, st *keystore.Store) *fclient.Client {
	return fclient.New(c.serverURL(o, st), st.Data.SessionToken, nil)
}

// readTemplate reads a template file or a shipped one ("builtin:NAME").
func readTemplate(c *cli, path string) (*forms.Template, error) {
	if name, ok := strings.CutPrefix(path, "builtin:"); ok {
		t, _, err := forms.Builtin(name)
		if err != nil {
			return nil, fmt.Errorf("%w (kanal ships %s)", err, strings.Join(forms.BuiltinNames(), ", "))
		}
		return t, nil
	}
	b, err := readInput(c, path, forms.MaxTemplate)
	if err != nil {
		return nil, err
	}
	return forms.Decode(b)
}

func formPublish(ctx context.Context, c *cli, o *opts, to *templateOpts, path string) error {
	if to.org == "" {
		return &usageError{cmd: "form publish", msg: "give --org, the publishing organisation"}
	}
	t, err := readTemplate(c, path)
	if err != nil {
		return err
	}
	st, m, caC, err := formMember(ctx, c, o, to.org)
	if err != nil {
		return err
	}
	roots, err := ca.TrustPool(caC, storedIntermediates(st))
	if err != nil {
		return err
	}
	mem, err := ca.VerifyMembership(m.Membership, m.OrgCert, roots, c.now())
	if err != nil {
		return fmt.Errorf("this device's membership of %s: %w", to.org, err)
	}
	t.Org = forms.OrgRef{ID: mem.OrgID, Name: mem.OrgName}
	var lineage []forms.Ancestor
	if to.parent != "" {
		ps, pv, caDER, err := formParent(ctx, c, o, st, caC, to.parent)
		if err != nil {
			return err
		}
		t.Parent, lineage = forms.Descend(ps, pv, caDER)
	}
	if t, err = t.Recheck(); err != nil {
		return err
	}
	signed, v, err := forms.Sign(t, lineage, m, caC, c.now(), storedIntermediates(st)...)
	if err != nil {
		return err
	}
	if to.out != "" {
		if err := writeJSONFile(to.out, signed); err != nil {
			return err
		}
	}
	e, err := c.forms(o, st).Publish(ctx, signed)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	fmt.Fprintf(c.stdout, "Published %s %s of %s (%s), %s\n", e.ID, e.Version, e.OrgName, e.OrgID, e.Hash)
	printProvenance(c.stdout, v)
	return nil
}

// formParent reads the parent a template derives from: an adoption file
// (verified against the CA it carries, which the importer checked), or a
// version of this catalogue (verified against this deployment's CA).
func formParent(ctx context.Context, c *cli, o *opts, st *keystore.Store, caC *x509.Certificate, ref string) (forms.Signed, *forms.Verified, []byte, error) {
	if _, err := os.Stat(ref); err == nil {
		b, err := readInput(c, ref, forms.MaxBundle)
		if err != nil {
			return forms.Signed{}, nil, nil, err
		}
		var a adoption
		if err := json.Unmarshal(b, &a); err != nil || a.Signed.JWS == "" {
			return forms.Signed{}, nil, nil, fmt.Errorf("%s is not an adoption file from 'kanal form import'", ref)
		}
		pca, err := x509.ParseCertificate(a.CA)
		if err != nil {
			return forms.Signed{}, nil, nil, fmt.Errorf("%s: CA certificate: %w", ref, err)
		}
		var inters []*x509.Certificate
		for _, der := range a.Intermediates {
			ic, err := x509.ParseCertificate(der)
			if err != nil {
				return forms.Signed{}, nil, nil, fmt.Errorf("%s: intermediate certificate: %w", ref, err)
			}
			inters = append(inters, ic)
		}
		v, err := forms.Verify(a.Signed, pca, inters...)
		if err != nil {
			return forms.Signed{}, nil, nil, err
		}
		return a.Signed, v, a.CA, nil
	}
	id, version := splitRef(ref)
	e, err := c.forms(o, st).Get(ctx, id, version, true)
	if err != nil {
		return forms.Signed{}, nil, nil, fmt.Errorf("parent %s: %w", ref, err)
	}
	v, err := forms.Verify(e.Signed, caC, storedIntermediates(st)...)
	if err != nil {
		return forms.Signed{}, nil, nil, err
	}
	return e.Signed, v, caC.Raw, nil
}

func rawCerts(certs []*x509.Certificate) [][]byte {
	var out [][]byte
	for _, c := range certs {
		out = append(out, c.Raw)
	}
	return out
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func formList(ctx context.Context, c *cli, o *opts, to *templateOpts) error {
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	list, err := c.forms(o, st).List(ctx, forms.ListOptions{ID: to.id, OrgID: to.org, Withdrawn: to.withdrawn, Limit: forms.MaxListLimit})
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "No templates.")
	}
	for _, s := range list {
		state := ""
		if s.WithdrawnAt != nil {
			state = "  withdrawn " + s.WithdrawnAt.Format(time.DateOnly)
		}
		fmt.Fprintf(c.stdout, "%-28s %-8s %-28s %s%s\n", s.ID, s.Version, s.OrgName, s.Title.DE, state)
	}
	return nil
}

func formShow(ctx context.Context, c *cli, o *opts, to *templateOpts, ref string) error {
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	caC, err := caCert(st)
	if err != nil {
		return err
	}
	id, version := splitRef(ref)
	e, err := c.forms(o, st).Get(ctx, id, version, to.withdrawn)
	if err != nil {
		return err
	}
	// The server's word is not taken: the template is verified here.
	v, err := forms.Verify(e.Signed, caC, storedIntermediates(st)...)
	if err != nil {
		return err
	}
	if v.Template.Hash() != e.Hash {
		return fmt.Errorf("the server lists hash %s, the template has %s", e.Hash, v.Template.Hash())
	}
	if to.out != "" {
		if err := writeJSONFile(to.out, e.Signed); err != nil {
			return err
		}
	}
	printTemplate(c.stdout, v.Template)
	if e.WithdrawnAt != nil {
		fmt.Fprintf(c.stdout, "WITHDRAWN at %s\n", e.WithdrawnAt.Format(time.RFC3339))
	}
	printProvenance(c.stdout, v)
	return nil
}

func printTemplate(w io.Writer, t *forms.Template) {
	fmt.Fprintf(w, "%s %s — %s / %s\n", t.ID, t.Version, t.Title.DE, t.Title.EN)
	fmt.Fprintf(w, "  hash %s\n", t.Hash())
	fmt.Fprintf(w, "  processing time %d days", t.ProcessingDays)
	if t.Fee != nil {
		fmt.Fprintf(w, ", fee %s (%s)", euro(t.Fee.AmountCents), t.Fee.Purpose)
	}
	if t.Level != "" {
		fmt.Fprintf(w, ", level %s", t.Level)
	}
	fmt.Fprintln(w)
	var sts []string
	for _, s := range t.Statuses {
		sts = append(sts, s.ID)
	}
	fmt.Fprintf(w, "  statuses: %s\n", strings.Join(sts, " → "))
	for i, p := range t.Layout.Pages {
		fmt.Fprintf(w, "  page %d: %s\n", i+1, p.Title.DE)
		for _, f := range p.Fields {
			mark := ""
			if t.Required(f.Name, nil) {
				mark = " *"
			}
			if f.ShowIf != nil {
				mark += fmt.Sprintf(" (if %s = %s)", f.ShowIf.Field, f.ShowIf.Equals)
			}
			if t.IsAttachment(f.Name) {
				mark += " [attachment]"
			}
			fmt.Fprintf(w, "    %-24s %s%s\n", f.Name, f.Label.DE, mark)
		}
	}
}

// printProvenance names every organisation in a template's lineage, the
// newest first, with the CA its signature chains to.
func printProvenance(w io.Writer, v *forms.Verified) {
	fmt.Fprintln(w, "Provenance:")
	for i, p := range v.Provenance() {
		fmt.Fprintf(w, "  %d. %s %s by %s (%s), device %s of account %s, role %s, signed %s, CA sha256:%s\n", i+1,
			p.Template.ID, p.Template.Version, p.Membership.OrgName, p.Membership.OrgID, p.Signer.DeviceID, p.Signer.AccountID,
			p.Membership.Role, p.SignedAt.Format(time.RFC3339), p.CA[:16])
	}
}

func formWithdraw(ctx context.Context, c *cli, o *opts, ref string) error {
	id, version, ok := strings.Cut(ref, "@")
	if !ok {
		return &usageError{cmd: "form withdraw", msg: "name the version: ID@VERSION"}
	}
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	s, err := c.forms(o, st).Withdraw(ctx, id, version)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Withdrew %s %s at %s\n", s.ID, s.Version, s.WithdrawnAt.Format(time.RFC3339))
	return nil
}

func formExport(ctx context.Context, c *cli, o *opts, to *templateOpts, refs []string) error {
	if to.org == "" || len(refs) == 0 {
		return &usageError{cmd: "form export", msg: "give --org and at least one ID@VERSION"}
	}
	st, m, caC, err := formMember(ctx, c, o, to.org)
	if err != nil {
		return err
	}
	var list []forms.Signed
	for _, ref := range refs {
		id, version := splitRef(ref)
		e, err := c.forms(o, st).Get(ctx, id, version, false)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		list = append(list, e.Signed)
	}
	b, err := forms.ExportBundle(list, m, caC, c.now(), storedIntermediates(st)...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to.out, []byte(b+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Exported %d templates to %s\n", len(list), to.out)
	return nil
}

func formImport(c *cli, to *templateOpts, path string) error {
	if to.ca == "" {
		return &usageError{cmd: "form import", msg: "--ca is required: the exporting deployment's CA certificate, from its operator"}
	}
	trust, err := readTrust(to.ca)
	if err != nil {
		return err
	}
	b, err := readInput(c, path, forms.MaxBundle)
	if err != nil {
		return err
	}
	imp, signer, err := forms.ImportBundle(b, trust.root, trust.inters...)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Bundle signed by %s (%s), device %s, CA sha256:%s\n", signer.Membership.OrgName, signer.Membership.OrgID,
		signer.Device.DeviceID, forms.CAFingerprint(trust.root.Raw)[:16])
	for _, in := range imp {
		t := in.Verified.Template
		base := filepath.Join(to.dir, t.ID+"-"+t.Version)
		plain := *t
		plain.Parent = nil
		if err := writeJSONFile(base+".json", &plain); err != nil {
			return err
		}
		if err := writeJSONFile(base+".adopt.json", adoption{Signed: in.Signed, CA: trust.root.Raw, Intermediates: rawCerts(trust.inters)}); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Verified %s %s (%s): wrote %s.json and %s.adopt.json\n", t.ID, t.Version, t.Hash(), base, base)
		printProvenance(c.stdout, in.Verified)
	}
	return nil
}

// loadForDiff reads a template to compare: a file (plain, signed or
// adoption) or ID@VERSION from the catalogue. It returns the template and,
// when known, its verified form.
func loadForDiff(ctx context.Context, c *cli, o *opts, ref string) (*forms.Template, *forms.Verified, error) {
	if _, err := os.Stat(ref); err == nil {
		b, err := readInput(c, ref, forms.MaxBundle)
		if err != nil {
			return nil, nil, err
		}
		var probe struct {
			JWS    string          `json:"jws"`
			Signed json.RawMessage `json:"signed"`
		}
		_ = json.Unmarshal(b, &probe)
		switch {
		case probe.Signed != nil:
			var a adoption
			if err := json.Unmarshal(b, &a); err != nil {
				return nil, nil, err
			}
			pca, err := x509.ParseCertificate(a.CA)
			if err != nil {
				return nil, nil, err
			}
			v, err := forms.Verify(a.Signed, pca)
			if err != nil {
				return nil, nil, err
			}
			return v.Template, v, nil
		case probe.JWS != "":
			var s forms.Signed
			if err := json.Unmarshal(b, &s); err != nil {
				return nil, nil, err
			}
			st, err := c.openStore(false)
			if err != nil {
				return nil, nil, err
			}
			caC, err := caCert(st)
			if err != nil {
				return nil, nil, err
			}
			v, err := forms.Verify(s, caC, storedIntermediates(st)...)
			if err != nil {
				return nil, nil, err
			}
			return v.Template, v, nil
		}
		t, err := forms.Decode(b)
		return t, nil, err
	}
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	caC, err := caCert(st)
	if err != nil {
		return nil, nil, err
	}
	id, version := splitRef(ref)
	e, err := c.forms(o, st).Get(ctx, id, version, true)
	if err != nil {
		return nil, nil, err
	}
	v, err := forms.Verify(e.Signed, caC, storedIntermediates(st)...)
	if err != nil {
		return nil, nil, err
	}
	return v.Template, v, nil
}

func formDiff(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return &usageError{cmd: "form diff", msg: "give one signed template with a parent, or two templates"}
	}
	b, bv, err := loadForDiff(ctx, c, o, args[len(args)-1])
	if err != nil {
		return err
	}
	var a *forms.Template
	if len(args) == 2 {
		if a, _, err = loadForDiff(ctx, c, o, args[0]); err != nil {
			return err
		}
	} else {
		if bv == nil || len(bv.Ancestors) == 0 {
			return errors.New("no parent to compare with: give a signed template that names one, or two templates")
		}
		a = bv.Ancestors[0].Template
	}
	fmt.Fprintf(c.stdout, "--- %s %s (%s)\n+++ %s %s (%s)\n", a.ID, a.Version, a.Org.Name, b.ID, b.Version, b.Org.Name)
	changes := forms.Diff(a, b)
	for _, ch := range changes {
		fmt.Fprintln(c.stdout, ch)
	}
	if len(changes) == 0 {
		fmt.Fprintln(c.stdout, "No changes.")
	}
	return nil
}

func formHandoff(ctx context.Context, c *cli, o *opts, to *templateOpts, ref string) error {
	if to.answers == "" || to.key == "" || to.ca == "" {
		return &usageError{cmd: "form handoff", msg: "give --answers, --key and --ca"}
	}
	t, _, err := loadForDiff(ctx, c, o, ref)
	if err != nil {
		return err
	}
	trust, err := readTrust(to.ca)
	if err != nil {
		return err
	}
	roots := trust.pool
	jwk, err := readInput(c, to.key, 64<<10)
	if err != nil {
		return err
	}
	key, err := forms.ParseHandoffKey(jwk, roots, c.now())
	if err != nil {
		return err
	}
	answers, err := readInput(c, to.answers, forms.MaxAnswers)
	if err != nil {
		return err
	}
	var files []forms.HandoffFile
	for _, a := range to.attach {
		name, rest, ok := strings.Cut(a, "=")
		if !ok {
			return &usageError{cmd: "form handoff", msg: "--attach is NAME=FILE[:media/type]"}
		}
		path, mt, _ := strings.Cut(rest, ":")
		if mt == "" {
			mt = mime.TypeByExtension(strings.ToLower(filepath.Ext(path)))
			mt, _, _ = strings.Cut(mt, ";")
		}
		content, err := readInput(c, path, forms.MaxAttachmentBytes)
		if err != nil {
			return err
		}
		files = append(files, forms.HandoffFile{Name: name, Filename: filepath.Base(path), MediaType: mt, Content: content})
	}
	h, err := t.Handoff(key, answers, files, nil)
	if err != nil {
		var ae *forms.AnswerErrors
		if errors.As(err, &ae) {
			for _, fe := range ae.Fields {
				fmt.Fprintf(c.stderr, "  %s: %s / %s\n", fe.Field, fe.DE, fe.EN)
			}
		}
		return err
	}
	if err := os.MkdirAll(to.dir, 0o700); err != nil {
		return err
	}
	if err := writeJSONFile(filepath.Join(to.dir, "handoff.json"), h); err != nil {
		return err
	}
	parts := map[string]string{"metadata.jwe": h.Metadata, "data.jwe": h.Data}
	for _, a := range h.Attachments {
		parts[a.AttachmentID+".jwe"] = a.JWE
	}
	for name, jwe := range parts {
		if err := os.WriteFile(filepath.Join(to.dir, name), []byte(jwe), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stdout, "Encrypted %s %s for key %s (%s): data, metadata and %d attachments in %s (FIT-Connect metadata schema 1.2.0)\n",
		t.ID, t.Version, key.KID, key.Cert.Subject.CommonName, len(h.Attachments), to.dir)
	return nil
}
