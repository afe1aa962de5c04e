package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/identity/orgsig"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	vclient "github.com/kanal-server/kanal/vault/client"
	"github.com/kanal-server/kanal/vault/issued"
)

// vaultOpts are the flags of the vault commands.
type vaultOpts struct {
	title, folder, out, to, org, kind, media, name string
	tags                                           stringList
	version                                        int
	valid, timeout                                 time.Duration
}

// stringList collects a repeated flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func vaultCommands() []*command {
	var vo vaultOpts
	return []*command{
		{
			name: "vault put", args: "<file> [--title T] [--tag X]… [--folder F] [--to-version DOC]", nargs: 1,
			summary: "encrypt a file on this device and keep it in the vault",
			help: `Encrypts the file with a fresh key, encrypts its title, tags, folder and
file name with that key too, wraps the key to every device of this account
whose identity key verifies (HPKE), and stores the ciphertext. The server
sees only the size, the time and the quota class. With --to-version DOC the
file becomes a new version of DOC. Prints the document id.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&vo.title, "title", "", "the document's `title` (default: the file name)")
				fs.Var(&vo.tags, "tag", "a `tag` (repeat)")
				fs.StringVar(&vo.folder, "folder", "", "the `folder` it is filed in")
				fs.StringVar(&vo.name, "to-version", "", "store as a new version of this `document`")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return vaultPut(ctx, c, o, &vo, args[0])
			},
		},
		{
			name: "vault get", args: "<document> [--version N] [--out FILE]", nargs: 1,
			summary: "download and decrypt a vault document",
			help: `Downloads the newest version (or --version N), checks it against its
recorded hash and decrypts it on this device. Writes it to --out, or to
its file name in the current directory.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.IntVar(&vo.version, "version", 0, "the `version` (default: the newest)")
				fs.StringVar(&vo.out, "out", "", "write to this `file` (- for standard output)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return vaultGet(ctx, c, o, &vo, args[0])
			},
		},
		{
			name: "vault ls", args: "", nargs: 0,
			summary: "list the vault's documents (titles decrypted on this device)",
			help: `Lists the account's documents with their newest version, size, title,
folder and tags, and the usage against the quota. First re-wraps the keys
of documents another device of this account cannot read yet (a device
enrolled later), when this device can.`,
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return vaultList(ctx, c, o) },
		},
		{
			name: "vault versions", args: "<document>", nargs: 1,
			summary: "list a document's versions",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return vaultVersions(ctx, c, o, args[0])
			},
		},
		{
			name: "vault rm", args: "<document>", nargs: 1,
			summary: "delete a document, all its versions and its shares",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				_, vc, _, err := c.vault(ctx, o)
				if err != nil {
					return err
				}
				if err := vc.Delete(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "Deleted %s; its shares are withdrawn.\n", args[0])
				return nil
			},
		},
		{
			name: "vault rewrap", args: "", nargs: 0,
			summary: "give this account's other devices the keys they lack",
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error {
				st, vc, mc, err := c.vault(ctx, o)
				if err != nil {
					return err
				}
				n, err := c.rewrap(ctx, st, vc, mc)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "Re-wrapped %d keys.\n", n)
				return nil
			},
		},
		{
			name: "vault share", args: "<document> (--to ACCOUNT | --org ORG) [--version N]", nargs: 1,
			summary: "share a document with an account or an organisation in your chat with them",
			help: `Records the share with kanald and sends the document's key in a
document.share message in this account's conversation with ACCOUNT or
ORG, end to end encrypted to their devices. The recipient fetches the
ciphertext until the share is withdrawn ('kanal vault unshare'). Prints
the share id.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&vo.to, "to", "", "the `account` to share with")
				fs.StringVar(&vo.org, "org", "", "the `organisation` to share with")
				fs.IntVar(&vo.version, "version", 0, "the `version` (default: the newest)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return vaultShare(ctx, c, o, &vo, args[0])
			},
		},
		{
			name: "vault unshare", args: "<share>", nargs: 1,
			summary: "withdraw a share; the recipients are told",
			help: `The recipient can no longer fetch the document, and its devices get a
notice. What it fetched and decrypted before stays with it: a withdrawal
cannot reach into another's device.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				_, vc, _, err := c.vault(ctx, o)
				if err != nil {
					return err
				}
				sh, err := vc.Unshare(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "Withdrew share %s of %s version %d.\n", sh.ID, sh.DocumentID, sh.Version)
				return nil
			},
		},
		{
			name: "vault shares", args: "[--org ORG]", nargs: 0,
			summary: "list the shares made and received",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&vo.org, "org", "", "the shares this `organisation` received")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error {
				_, vc, _, err := c.vault(ctx, o)
				if err != nil {
					return err
				}
				l, err := vc.Shares(ctx, vo.org)
				if err != nil {
					return err
				}
				for _, s := range l.Made {
					fmt.Fprintf(c.stdout, "made     %s %s v%d to %s%s%s\n", s.ID, s.DocumentID, s.Version, s.Account, s.Org, withdrawn(s.WithdrawnAt))
				}
				for _, s := range l.Received {
					fmt.Fprintf(c.stdout, "received %s %s v%d from %s%s\n", s.ID, s.DocumentID, s.Version, s.Owner, withdrawn(s.WithdrawnAt))
				}
				return nil
			},
		},
		{
			name: "vault issue", args: "<file> --org ORG --to ACCOUNT --kind KIND --title T [--valid 8760h]", nargs: 1,
			summary: "as an office's agent, sign a document and issue it into a citizen's vault",
			help: `Signs the file (JSON or PDF) as an issued document of ORG with this
device's key and its membership certificate (a kanal-document+jws, see
docs/vault.md), encrypts it to the citizen's devices, stores it in the
citizen's vault and tells them in the organisation's chat with them
(document.share). Anyone can check it offline with 'kanal verify'.
Prints the vault document id.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&vo.org, "org", "", "the issuing `organisation`")
				fs.StringVar(&vo.to, "to", "", "the citizen's `account`")
				fs.StringVar(&vo.kind, "kind", "", "what it is, e.g. `parking-permit`")
				fs.StringVar(&vo.title, "title", "", "its `title`")
				fs.DurationVar(&vo.valid, "valid", 0, "how long it is valid (default: no end)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return vaultIssue(ctx, c, o, &vo, args[0])
			},
		},
		{
			name: "vault receive", args: "[--out FILE] [--timeout 30s]", nargs: 0,
			summary: "wait in the chat for a shared document, fetch and decrypt it",
			help: `Waits for a document.share message, fetches the document it names,
checks its hash and decrypts it with the key the message carried. Writes
it to --out (default: its name). An issued document is verified offline
against the deployment CA kept at enrolment, and said so.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&vo.out, "out", "", "write to this `file`")
				fs.DurationVar(&vo.timeout, "timeout", 30*time.Second, "how long to wait")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return vaultReceive(ctx, c, o, &vo) },
		},
	}
}

func withdrawn(at int64) string {
	if at == 0 {
		return ""
	}
	return " (withdrawn " + time.Unix(at, 0).UTC().Format(time.DateTime) + ")"
}

// vault opens the session, the end-to-end client (its identity key
// unwraps vault keys) and the vault client of this device.
func (c *cli) vault(ctx context.Context, o *opts) (*keystore.Store, *vclient.Client, *mclient.Client, error) {
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return nil, nil, nil, err
	}
	vc, mc, err := c.vaultClients(ctx, o, st)
	return st, vc, mc, err
}

// vaultClients are vault's clients of an open session.
func (c *cli) vaultClients(ctx context.Context, o *opts, st *keystore.Store) (*vclient.Client, *mclient.Client, error) {
	mc, err := c.messenger(ctx, o, st)
	if err != nil {
		return nil, nil, err
	}
	vc, err := vclient.New(vclient.Options{BaseURL: c.serverURL(o, st), Token: st.Data.SessionToken, DeviceID: st.Data.DeviceID, Device: mc})
	if err != nil {
		return nil, nil, err
	}
	return vc, mc, nil
}

// recipients are the devices of account whose keys verify (certificate
// chain, binding, transparency log), as the chat claims them; with self,
// this device too.
func recipients(ctx context.Context, mc *mclient.Client, account, selfDevice string) ([]vclient.Recipient, error) {
	var out []vclient.Recipient
	if selfDevice != "" {
		id, err := mc.Identity()
		if err != nil {
			return nil, err
		}
		out = append(out, vclient.Recipient{Device: selfDevice, Key: id})
	}
	claim, err := mc.ClaimAccount(ctx, account)
	if err != nil {
		return nil, err
	}
	for _, b := range claim.Bundles {
		out = append(out, vclient.Recipient{Device: b.Device.DeviceID, Key: b.Prekeys.Identity})
	}
	return out, nil
}

func (c *cli) ownRecipients(ctx context.Context, st *keystore.Store, mc *mclient.Client) ([]vclient.Recipient, error) {
	return recipients(ctx, mc, st.Data.AccountID, st.Data.DeviceID)
}

func (c *cli) rewrap(ctx context.Context, st *keystore.Store, vc *vclient.Client, mc *mclient.Client) (int, error) {
	to, err := c.ownRecipients(ctx, st, mc)
	if err != nil {
		return 0, err
	}
	return vc.Rewrap(ctx, to)
}

func vaultPut(ctx context.Context, c *cli, o *opts, vo *vaultOpts, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	st, vc, mc, err := c.vault(ctx, o)
	if err != nil {
		return err
	}
	to, err := c.ownRecipients(ctx, st, mc)
	if err != nil {
		return err
	}
	m := vclient.Meta{Title: vo.title, Tags: vo.tags, Folder: vo.folder, FileName: filepath.Base(path), MediaType: mimeOf(path, data)}
	if m.Title == "" {
		m.Title = filepath.Base(path)
	}
	put := func() (string, int, int64, error) {
		if vo.name != "" {
			d, err := vc.AddVersion(ctx, vo.name, data, m, to)
			if err != nil {
				return "", 0, 0, err
			}
			v := d.Versions[len(d.Versions)-1]
			return d.ID, v.Version, v.Size, nil
		}
		d, err := vc.Put(ctx, data, m, to)
		if err != nil {
			return "", 0, 0, err
		}
		return d.ID, 1, d.Versions[0].Size, nil
	}
	id, v, size, err := put()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Stored %q as %s version %d (%d bytes encrypted, readable by %d devices).\n", m.Title, id, v, size, len(to))
	fmt.Fprintln(c.stdout, id)
	return nil
}

func vaultGet(ctx context.Context, c *cli, o *opts, vo *vaultOpts, id string) error {
	_, vc, _, err := c.vault(ctx, o)
	if err != nil {
		return err
	}
	data, m, err := vc.Get(ctx, id, vo.version)
	if err != nil {
		return err
	}
	return c.writeDocument(data, m, vo.out, id)
}

func (c *cli) writeDocument(data []byte, m vclient.Meta, out, id string) error {
	if out == "-" {
		_, err := c.stdout.Write(data)
		return err
	}
	if out == "" {
		out = safeFileName(m.FileName, id)
	}
	if err := os.WriteFile(out, data, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Wrote %q (%d bytes) to %s.\n", m.Title, len(data), out)
	return nil
}

func vaultList(ctx context.Context, c *cli, o *opts) error {
	st, vc, mc, err := c.vault(ctx, o)
	if err != nil {
		return err
	}
	if n, err := c.rewrap(ctx, st, vc, mc); err != nil {
		fmt.Fprintf(c.stderr, "WARNING: keys for this account's other devices were not re-wrapped: %v\n", err)
	} else if n > 0 {
		fmt.Fprintf(c.stderr, "Re-wrapped %d keys for this account's other devices.\n", n)
	}
	entries, usage, err := vc.List(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		title := e.Meta.Title
		if e.Err != nil {
			title = "(not readable on this device yet: run 'kanal vault ls' on another device of the account)"
		}
		extra := ""
		if e.Document.IssuerOrg != "" {
			extra = " issued by " + e.Document.IssuerOrg
		}
		if e.Meta.Folder != "" {
			extra += " folder " + e.Meta.Folder
		}
		if len(e.Meta.Tags) > 0 {
			extra += " tags " + strings.Join(e.Meta.Tags, ",")
		}
		fmt.Fprintf(c.stdout, "%s v%d %8s  %s%s\n", e.Document.ID, e.Version.Version, size(e.Version.Size), title, extra)
	}
	fmt.Fprintf(c.stdout, "%d documents; %s of %s used (own), %s (issued)\n", len(entries), size(usage.PersonalBytes), size(usage.QuotaBytes), size(usage.IssuedBytes))
	return nil
}

func vaultVersions(ctx context.Context, c *cli, o *opts, id string) error {
	_, vc, _, err := c.vault(ctx, o)
	if err != nil {
		return err
	}
	d, metas, err := vc.Document(ctx, id)
	if err != nil {
		return err
	}
	for i, v := range d.Versions {
		fmt.Fprintf(c.stdout, "v%d %s %8s  %s (by device %s)\n", v.Version, time.Unix(v.CreatedAt, 0).UTC().Format(time.DateTime), size(v.Size), metas[i].Title, v.CreatedBy)
	}
	return nil
}

func vaultShare(ctx context.Context, c *cli, o *opts, vo *vaultOpts, id string) error {
	if (vo.to == "") == (vo.org == "") {
		return &usageError{cmd: "vault share", msg: "give either --to ACCOUNT or --org ORG"}
	}
	st, vc, mc, err := c.vault(ctx, o)
	if err != nil {
		return err
	}
	peer := mclient.Peer{AccountID: vo.to, OrgID: vo.org}
	conv, err := mc.ConversationID(peer)
	if err != nil {
		return err
	}
	sh, err := vc.Share(ctx, id, vo.version, conv, vo.to, vo.org)
	if err != nil {
		return err
	}
	if err := c.send(ctx, o, st, peer, &kind.DocumentShareBody{DocumentID: sh.Share.DocumentID, Version: sh.Share.Version,
		Name: shareName(sh.Meta), Key: base64.StdEncoding.EncodeToString(sh.Key), SHA256: sh.Share.SHA256}); err != nil {
		return fmt.Errorf("the share %s is recorded but the message was not sent (withdraw it with 'kanal vault unshare %s'): %w", sh.Share.ID, sh.Share.ID, err)
	}
	fmt.Fprintf(c.stderr, "Shared %q (%s version %d) with %s%s in your chat.\n", sh.Meta.Title, sh.Share.DocumentID, sh.Share.Version, vo.to, vo.org)
	fmt.Fprintln(c.stdout, sh.Share.ID)
	return nil
}

// shareName is the name a document.share message carries: the file name,
// else the title.
func shareName(m vclient.Meta) string {
	if m.FileName != "" {
		return m.FileName
	}
	if m.Title != "" {
		return m.Title
	}
	return "document"
}

func vaultIssue(ctx context.Context, c *cli, o *opts, vo *vaultOpts, path string) error {
	if vo.org == "" || vo.to == "" || vo.kind == "" || vo.title == "" {
		return &usageError{cmd: "vault issue", msg: "give --org, --to, --kind and --title"}
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	vc, mc, err := c.vaultClients(ctx, o, st)
	if err != nil {
		return err
	}
	org, err := api.DirectoryOrg(ctx, vo.org)
	if err != nil {
		return err
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
		return fmt.Errorf("this device has no membership certificate of %s: only its agents issue its documents", vo.org)
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
	media := issued.MediaJSON
	if strings.HasPrefix(string(content), "%PDF-") {
		media = issued.MediaPDF
	}
	now := c.now().UTC().Truncate(time.Second)
	doc := issued.Document{Version: 1, DocumentID: "id_" + newKey()[:20], OrgID: org.OrgID, OrgName: org.Name, Subject: vo.to,
		Kind: vo.kind, Title: vo.title, MediaType: media, Content: content, IssuedAt: now}
	if vo.valid > 0 {
		doc.ValidUntil = now.Add(vo.valid)
	}
	signed, err := issued.Sign(doc, orgsig.Member{Key: st.Data.DeviceKey, DeviceCert: devDER, Membership: memDER, OrgCert: orgDER}, roots)
	if err != nil {
		return err
	}
	to, err := recipients(ctx, mc, vo.to, "")
	if err != nil {
		return err
	}
	if len(to) == 0 {
		return fmt.Errorf("%s has no device whose keys verify: nothing to encrypt to", vo.to)
	}
	peer := mclient.Peer{OrgID: org.OrgID, AccountID: vo.to}
	conv, err := mc.ConversationID(peer)
	if err != nil {
		return err
	}
	name := safeFileName(vo.kind+".jws", doc.DocumentID)
	is, err := vc.Issue(ctx, org.OrgID, vo.to, conv, []byte(signed+"\n"), vclient.Meta{Title: vo.title, Tags: []string{vo.kind},
		Folder: org.Name, FileName: name, MediaType: "application/" + issued.Type}, to)
	if err != nil {
		return err
	}
	if err := c.send(ctx, o, st, peer, &kind.DocumentShareBody{DocumentID: is.Document.ID, Version: 1, Name: name,
		Key: base64.StdEncoding.EncodeToString(is.Key), SHA256: is.SHA256}); err != nil {
		return fmt.Errorf("issued into the vault as %s, but the message was not sent: %w", is.Document.ID, err)
	}
	fmt.Fprintf(c.stderr, "Issued %q (%s) into the vault of %s as %s, signed for %s.\n", vo.title, vo.kind, vo.to, is.Document.ID, org.Name)
	fmt.Fprintln(c.stdout, is.Document.ID)
	return nil
}

func vaultReceive(ctx context.Context, c *cli, o *opts, vo *vaultOpts) error {
	st, vc, _, err := c.vault(ctx, o)
	if err != nil {
		return err
	}
	in, err := c.receive(ctx, o, st, vo.timeout, func(in *mclient.Incoming) bool {
		_, ok := in.Message.Body.(*kind.DocumentShareBody)
		return ok
	})
	if err != nil {
		return err
	}
	b := in.Message.Body.(*kind.DocumentShareBody)
	key, err := base64.StdEncoding.DecodeString(b.Key)
	if err != nil {
		return err
	}
	data, err := vc.Fetch(ctx, b.DocumentID, b.Version, key, b.SHA256)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Received %q (%s version %d) from %s.\n", b.Name, b.DocumentID, b.Version, in.SenderAccount)
	if err := c.writeDocument(data, vclient.Meta{Title: b.Name, FileName: b.Name}, vo.out, b.DocumentID); err != nil {
		return err
	}
	if issued.IsIssued(data) {
		_, roots, err := caRoots(st)
		if err != nil {
			return err
		}
		v, err := issued.Verify(string(data), roots)
		if err != nil {
			return fmt.Errorf("the document claims to be issued by an office but does not verify: %w", err)
		}
		fmt.Fprintf(c.stdout, "Issued document %q (%s) of %s for %s verifies: signed by device %s, role %s.\n",
			v.Document.Title, v.Document.Kind, v.Document.OrgName, v.Document.Subject, v.Signed.Device.DeviceID, v.Signed.Membership.Role)
	}
	return nil
}
