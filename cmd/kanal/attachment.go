package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kanal-server/kanal/messaging/kind"
)

// Attachments: 'kanal send --file' uploads a file encrypted with a key of
// its own and sends the key end to end; 'kanal get' saves one that
// arrived. The name a file arrives with is the sender's word: it is shown
// without control characters and saved only as a plain file name in the
// current directory (safeFileName), never where the name points.

func attachmentCommands() []*command {
	var out string
	return []*command{
		{
			name: "get", args: "[-o FILE] <attachment-id>", nargs: 1,
			summary: "save a file that was sent to you (fetches the inbox first)",
			help: `Downloads the attachment, checks that it is the file the sender's message
names (its SHA-256), decrypts it and saves it in the current directory under
the name it was sent with, made safe: no directories, no leading dots, no
control characters. An existing file is never overwritten; choose another
name with -o, or -o - for standard output. The attachment id is the one
'kanal inbox' and 'kanal chat' show next to the file.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&out, "o", "", "save to this `file` instead (- for standard output)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return getAttachment(ctx, c, o, out, args[0])
			},
		},
	}
}

// localFile is a file about to be sent.
type localFile struct {
	data       []byte
	name, mime string
}

func readLocalFile(path, name string) (*localFile, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a file", path)
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("%s is empty: there is nothing to send", path)
	}
	// The encrypted blob adds a nonce and a tag to the file.
	if limit := int64(kind.MaxAttachment - kind.BlobOverhead); fi.Size() > limit {
		return nil, fmt.Errorf("%s is %s; kanal sends files of at most %s", path, size(fi.Size()), size(limit))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	if name == "" {
		name = filepath.Base(path)
	}
	return &localFile{data: data, name: name, mime: mimeOf(path, data)}, nil
}

// mimeOf is the file's type by its extension, else by its first bytes,
// without parameters.
func mimeOf(path string, data []byte) string {
	t := mime.TypeByExtension(strings.ToLower(filepath.Ext(path)))
	if t == "" {
		t = http.DetectContentType(data)
	}
	t, _, _ = strings.Cut(t, ";")
	t = strings.ToLower(strings.TrimSpace(t))
	if t == "" || !strings.Contains(t, "/") {
		return "application/octet-stream"
	}
	return t
}

// size is a byte count for people: "512 bytes", "12.3 kB", "4.0 MB".
func size(n int64) string {
	switch {
	case n < 1000:
		return plural(int(n), "byte")
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	default:
		return fmt.Sprintf("%.1f MB", float64(n)/1000/1000)
	}
}

// displayName is a sender's file name fit for a terminal: quoted, every
// control or formatting character (newlines, escapes, bidirectional
// overrides) shown as "?".
func displayName(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, name))
}

// safeFileName turns the name a sender chose into a plain file name for
// the current directory: the last path element only (either slash), no
// control or formatting characters, no leading dots or spaces, at most
// 100 bytes; a name with nothing left becomes "attachment-<id>".
func safeFileName(name, id string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			return -1
		case strings.ContainsRune(`:*?"<>|`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(name, ". ")
	name = strings.TrimRight(name, ". ")
	for len(name) > 100 {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	if name == "" {
		return "attachment-" + safeID(id)
	}
	return name
}

// safeID keeps the letters, digits, '-' and '_' of an id.
func safeID(id string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_') {
			return r
		}
		return -1
	}, id)
}

func getAttachment(ctx context.Context, c *cli, o *opts, out, id string) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	if err := s.fetch(ctx, c, 0, func(entry) {}); err != nil {
		return err
	}
	var att *kind.AttachmentBody
	for _, e := range s.hist.entries {
		if e.ID == id && e.Att != nil {
			att = e.Att
		}
	}
	if att == nil {
		return fmt.Errorf("no file %s has reached this device: 'kanal inbox' lists what arrived", id)
	}
	data, err := s.mc.DownloadAttachment(ctx, att)
	if err != nil {
		return err
	}
	if out == "-" {
		_, err := c.stdout.Write(data)
		return err
	}
	path := out
	if path == "" {
		path = safeFileName(att.Name, id)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists here; choose another name with -o", path)
	} else if err != nil {
		return fmt.Errorf("cannot save the file: %w", errors.Unwrap(err))
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Saved %s (%s, %s).\n", path, size(int64(len(data))), att.MIME)
	return nil
}
