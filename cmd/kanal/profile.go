package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// maxShare bounds the conversations 'kanal profile set' shares a new
// profile into at once; the others get it with the next message.
const maxShare = 50

func profileCommands() []*command {
	var avatar string
	return []*command{
		{
			name: "profile set", args: "[--avatar FILE] <display name>", nargs: 1,
			summary: "set the name (and picture) the people you write to see",
			help: `Sets this account's display name, shown instead of your account id to
the people you write to, and to your other devices. It travels end to end
with your messages; the server never sees it. An office's agents are shown
as "name · office". A name is 1 to 64 characters; invisible and
text-direction characters and "·" are refused.

The new profile is sent at once into the conversations this device
knows, and into any other with your next message there. --avatar adds a
PNG, JPEG or WebP picture of at most 1 MiB.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&avatar, "avatar", "", "a PNG, JPEG or WebP `file` of at most 1 MiB as your picture")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return profileSet(ctx, c, o, args[0], avatar)
			},
		},
		{
			name: "profile show", args: "[account]", nargs: -1,
			summary: "show your profile, or the name an account gave itself",
			help: `Shows this account's profile, or the newest profile this device has
received from the account given. A display name is what the account says
it is called, not something kanal has checked.`,
			run: profileShow,
		},
	}
}

func profileSet(ctx context.Context, c *cli, o *opts, name, avatarFile string) error {
	if _, err := kind.NormalizeDisplayName(name); err != nil {
		return &usageError{cmd: "profile set", msg: strings.TrimPrefix(err.Error(), "display name: ") + " — choose another display name"}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	var avatar *kind.ProfileAvatar
	if avatarFile != "" {
		if avatar, err = loadAvatar(ctx, s.mc, avatarFile); err != nil {
			return err
		}
	}
	p, err := s.mc.SetProfile(name, avatar)
	if err != nil {
		return err
	}
	// Into the conversations this device knows, newest first.
	seen := map[string]bool{}
	shared := 0
	for i := len(s.hist.entries) - 1; i >= 0 && len(seen) < maxShare; i-- {
		e := s.hist.entries[i]
		if e.Reply == "" || seen[e.Conversation] {
			continue
		}
		seen[e.Conversation] = true
		to, err := parsePeer(e.Reply, e.ReplyOrg)
		if err != nil {
			continue
		}
		if err := s.mc.ShareProfile(ctx, to); err != nil {
			fmt.Fprintf(c.stderr, "not yet shared with %s (it goes with your next message there): %v\n", s.names.peer(e.Reply, e.ReplyOrg), err)
			continue
		}
		shared++
	}
	fmt.Fprintf(c.stdout, "You are now %q (profile version %d), shared in %s; the people you write to next get it with your message.\n",
		p.DisplayName, p.Version, plural(shared, "conversation"))
	return nil
}

// loadAvatar reads a picture: inline if small, else an encrypted attachment.
func loadAvatar(ctx context.Context, mc *mclient.Client, file string) (*kind.ProfileAvatar, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	mt := http.DetectContentType(data)
	switch {
	case mt != "image/png" && mt != "image/jpeg" && mt != "image/webp":
		return nil, fmt.Errorf("%s is %s: an avatar is a PNG, JPEG or WebP picture", file, mt)
	case len(data) > kind.MaxAvatarBlob-1024:
		return nil, fmt.Errorf("%s is %d bytes: an avatar is at most 1 MiB", file, len(data))
	case len(data) <= kind.MaxAvatarInline:
		return &kind.ProfileAvatar{MIME: mt, Data: base64.StdEncoding.EncodeToString(data)}, nil
	}
	att, err := mc.UploadAttachment(ctx, data, mt, filepath.Base(file))
	if err != nil {
		return nil, err
	}
	return &kind.ProfileAvatar{MIME: mt, Attachment: att}, nil
}

func profileShow(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) > 1 {
		return &usageError{cmd: "profile show", msg: "usage: kanal profile show [account]"}
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	account := st.Data.AccountID
	if len(args) == 1 {
		if err := checkAccountID("profile show", args[0]); err != nil {
			return err
		}
		account = args[0]
	}
	p, err := mclient.StoredProfile(mclient.NewKeystoreStore(st), account)
	if err != nil {
		return err
	}
	switch {
	case p == nil && account == st.Data.AccountID:
		fmt.Fprintln(c.stdout, "You have no display name yet: people see your account id. Set one with 'kanal profile set \"Your Name\"'.")
		return nil
	case p == nil:
		return errors.New("no profile received from " + account + " yet: they are shown by their account id")
	}
	fmt.Fprintf(c.stdout, "name     %s\naccount  %s\nversion  %d, set %s\n", p.DisplayName, p.AccountID, p.Version, p.UpdatedAt.Local().Format("2006-01-02 15:04"))
	switch {
	case p.Avatar == nil:
		fmt.Fprintln(c.stdout, "picture  none")
	case p.Avatar.Attachment != nil:
		fmt.Fprintf(c.stdout, "picture  %s, %d bytes (attachment)\n", p.Avatar.MIME, p.Avatar.Attachment.Size)
	default:
		fmt.Fprintf(c.stdout, "picture  %s, %d bytes\n", p.Avatar.MIME, base64.StdEncoding.DecodedLen(len(p.Avatar.Data)))
	}
	if account != st.Data.AccountID {
		fmt.Fprintln(c.stdout, "The name is what this account calls itself; kanal has not checked it.")
	}
	return nil
}
