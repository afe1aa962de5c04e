package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/keystore"
	vclient "github.com/kanal-server/kanal/vault/client"
)

// The account's own data: 'kanal account export' (GDPR Art. 15) and
// 'kanal account delete' (Art. 17). docs/privacy.md says what the server
// holds, for how long, and what an erasure keeps.

// readmeName is the archive's first file, which says what the others hold.
const readmeName = "README.txt"

func accountExport(ctx context.Context, c *cli, o *opts, args []string) error {
	path := args[0]
	if !strings.HasSuffix(strings.ToLower(path), ".zip") {
		return &usageError{cmd: "account export", msg: fmt.Sprintf("%q: the archive's name must end in .zip", path)}
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists; name a new file", path)
	}
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	if st.Data.DeviceID == "" || st.Data.DeviceKey == nil {
		return errors.New("this key store has no enrolled device: run 'kanal device enroll'")
	}
	x, err := api.ExportAccount(ctx, st.Data.DeviceID, st.Data.DeviceKey)
	if err != nil {
		return err
	}
	if x.AccountID != st.Data.AccountID {
		return fmt.Errorf("the server sent the data of account %s, not of this account %s", x.AccountID, st.Data.AccountID)
	}
	docs, err := c.vaultDocuments(ctx, o, st, api.BaseURL())
	if err != nil {
		return fmt.Errorf("vault documents: %w", err)
	}
	archive, err := exportArchive(x, api.BaseURL(), docs)
	if err != nil {
		return err
	}
	if err := writeNew(path, archive); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Wrote %s: %d files about account %s and %d vault documents, decrypted (see %s inside).\nThe archive is not encrypted: keep it safe.\n",
		path, len(x.Files)+1, x.AccountID, len(docs), readmeName)
	return nil
}

// exportArchive builds the zip: README.txt, then each file as indented
// JSON, in the server's order.
func exportArchive(x *identity.AccountExport, server string, docs []vaultFile) ([]byte, error) {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	add := func(name string, data []byte) error {
		w, err := z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: x.GeneratedAt})
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	seen := map[string]bool{readmeName: true}
	for _, f := range x.Files {
		if !validExportName(f.Name) || seen[f.Name] {
			return nil, fmt.Errorf("the server named an export file %q, which is not a plain new .json name", f.Name)
		}
		seen[f.Name] = true
	}
	if err := add(readmeName, []byte(exportReadme(x, server, docs))); err != nil {
		return nil, err
	}
	for _, f := range x.Files {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, f.Data, "", "  "); err != nil {
			return nil, fmt.Errorf("export file %s is not JSON: %w", f.Name, err)
		}
		pretty.WriteByte('\n')
		if err := add(f.Name, pretty.Bytes()); err != nil {
			return nil, err
		}
	}
	for _, d := range docs {
		if err := add(d.name, d.data); err != nil {
			return nil, err
		}
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// validExportName accepts a plain file name ending in .json: no
// directory, nothing a zip reader could take for a path elsewhere.
func validExportName(n string) bool {
	if !strings.HasSuffix(n, ".json") || len(n) > 64 {
		return false
	}
	for _, r := range strings.TrimSuffix(n, ".json") {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// exportReadme says what the archive is and what each file holds.
func exportReadme(x *identity.AccountExport, server string, docs []vaultFile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kanal: everything the server holds about account %s\n\n", x.AccountID)
	fmt.Fprintf(&b, "Server:    %s\nGenerated: %s\n\n", server, x.GeneratedAt.UTC().Format(time.RFC3339))
	for _, l := range wrapWords("This archive is the copy of your personal data that Art. 15 GDPR (DSGVO) gives you a right to: every record the kanal server holds about your account, as JSON. Times are in UTC (RFC 3339) unless a file says otherwise. Message contents, attachments and documents are end-to-end encrypted: the server never had them in readable form, so they are not here; your devices hold them.", 76) {
		b.WriteString(l + "\n")
	}
	b.WriteString("\nFiles:\n")
	for _, f := range x.Files {
		fmt.Fprintf(&b, "\n%s\n", f.Name)
		for _, l := range wrapWords(f.About, 74) {
			b.WriteString("  " + l + "\n")
		}
	}
	if len(docs) > 0 {
		b.WriteString("\nvault/\n")
		for _, l := range wrapWords("The vault's documents, decrypted on this device: vault/<document id>/v<version>-<file name or title>. Their metadata is in vault.json.", 74) {
			b.WriteString("  " + l + "\n")
		}
		for _, d := range docs {
			fmt.Fprintf(&b, "  %s  %q\n", d.name, d.title)
		}
	}
	return b.String()
}

// vaultFile is one decrypted vault document version in the archive.
type vaultFile struct {
	name, title string
	data        []byte
}

// vaultDocuments fetches and decrypts every version of every vault
// document of the account, on this device.
func (c *cli) vaultDocuments(ctx context.Context, o *opts, st *keystore.Store, server string) ([]vaultFile, error) {
	mc, err := c.messengerNoPoll(ctx, o, st)
	if err != nil {
		return nil, err
	}
	vc, err := vclient.New(vclient.Options{BaseURL: server, Token: st.Data.SessionToken, DeviceID: st.Data.DeviceID, Device: mc})
	if err != nil {
		return nil, err
	}
	return fetchVaultDocuments(ctx, vc)
}

// fetchVaultDocuments downloads and decrypts every version of every
// document vc's device can open.
func fetchVaultDocuments(ctx context.Context, vc *vclient.Client) ([]vaultFile, error) {
	entries, _, err := vc.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []vaultFile
	for _, e := range entries {
		if !validPathPart(e.Document.ID) {
			return nil, fmt.Errorf("the server named a document %q", e.Document.ID)
		}
		d, _, err := vc.Document(ctx, e.Document.ID)
		if err != nil {
			return nil, err
		}
		for _, v := range d.Versions {
			data, m, err := vc.Get(ctx, d.ID, v.Version)
			if err != nil {
				return nil, fmt.Errorf("document %s version %d: %w", d.ID, v.Version, err)
			}
			name := m.FileName
			if name == "" {
				name = m.Title
			}
			out = append(out, vaultFile{name: fmt.Sprintf("vault/%s/v%d-%s", d.ID, v.Version, safeName(name)), title: m.Title, data: data})
		}
	}
	return out, nil
}

// validPathPart accepts an id that is safe as one path element.
func validPathPart(s string) bool {
	return s != "" && len(s) <= 128 && safeName(s) == s
}

// safeName makes a file name safe inside the archive: letters, digits,
// dot, dash and underscore stay, anything else becomes "_", a leading dot
// too, and it is at most 80 bytes.
func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if strings.HasPrefix(out, ".") {
		out = "_" + out[1:]
	}
	if len(out) > 80 {
		out = out[:80]
	}
	if out == "" {
		out = "document"
	}
	return out
}

// writeNew writes data to a new file at path, never over an existing one,
// through a temporary file so that no half archive is left behind.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kanal-export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// A hard link fails if path exists, unlike a rename.
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	return nil
}

func accountDelete(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	if st.Data.DeviceID == "" || st.Data.DeviceKey == nil {
		return errors.New("this key store has no enrolled device: run 'kanal device enroll'")
	}
	account := st.Data.AccountID
	confirm := o.confirmID
	if confirm == "" {
		if confirm, err = c.askAccountID(account); err != nil {
			return err
		}
	}
	if confirm != account {
		return fmt.Errorf("not confirmed: %q is not this account's id (%s); nothing was erased", confirm, account)
	}
	res, err := api.EraseAccount(ctx, st.Data.DeviceID, st.Data.DeviceKey, confirm)
	if err != nil {
		return err
	}
	clearSession(st)
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Account %s is erased. Its devices are revoked; this one cannot log in again.\n", res.AccountID)
	fmt.Fprintf(c.stdout, "Kept, naming the pseudonym %s instead of the account:\n", res.Pseudonym)
	for _, k := range res.Kept {
		lines := wrapWords(k, 74)
		for i, l := range lines {
			if i == 0 {
				fmt.Fprintf(c.stdout, "  - %s\n", l)
			} else {
				fmt.Fprintf(c.stdout, "    %s\n", l)
			}
		}
	}
	return nil
}

// askAccountID asks on the terminal for the account id, the confirmation
// of an erasure. Without a terminal it fails rather than assume consent.
func (c *cli) askAccountID(account string) (string, error) {
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("not confirmed: run on a terminal, or give --confirm <account-id>; nothing was erased")
	}
	fmt.Fprintf(c.stderr, "This erases account %s on the server, for good: every device is revoked,\n", account)
	fmt.Fprintln(c.stderr, "every session ends, and the data is deleted or pseudonymised. Export it first if")
	fmt.Fprintln(c.stderr, "you want a copy: kanal account export <file.zip>")
	fmt.Fprint(c.stderr, "Type the account id to erase it: ")
	line, err := readLine(f)
	if err != nil {
		return "", fmt.Errorf("not confirmed: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// readLine reads one line byte by byte, so nothing after it is consumed.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	one := make([]byte, 1)
	for b.Len() < 256 {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return b.String(), nil
			}
			b.WriteByte(one[0])
		}
		if err == io.EOF {
			return b.String(), nil
		} else if err != nil {
			return "", err
		}
	}
	return b.String(), nil
}
