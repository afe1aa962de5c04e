package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kanal-server/kanal/messaging/kind"
)

// Profiles. An account's display name and avatar travel as a message of
// kind profile, end to end like any other, so the server never sees them
// in clear. SetProfile keeps a new version in the Store; from then on the
// first message this device sends into a conversation is preceded by the
// profile, once per version and conversation — and since every send is
// encrypted to the account's own other devices too, they learn it the
// same way (the server has no conversation of an account with itself).
// ShareProfile sends it into a conversation at once.
//
// A received profile is accepted only from a device of the account it
// describes, as that device's certificate (checked against the CA) names
// it; of two copies the newer by kind.NewerProfile wins, and an older or
// repeated copy changes nothing. A profile is the account's claim about
// itself: kanal checks its form, not that the name is true
// (docs/profiles.md).

// Names in the Store.
const nameOwnProfile = "profile/own"

func nameProfile(account string) string  { return "profile/of/" + account }
func nameProfileSent(conv string) string { return "profile/sent/" + conv }

// ErrProfile is returned for a profile this device will not set.
var ErrProfile = errors.New("messaging/client: profile refused")

// SetProfile makes displayName (normalised by kind.NormalizeDisplayName)
// and avatar (nil for none) this account's profile, one version newer
// than the newest this device knows of it. It does not send anything:
// the profile goes with the next message into each conversation, or with
// ShareProfile.
func (c *Client) SetProfile(displayName string, avatar *kind.ProfileAvatar) (*kind.ProfileBody, error) {
	name, err := kind.NormalizeDisplayName(displayName)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProfile, err)
	}
	c.profMu.Lock()
	defer c.profMu.Unlock()
	own, err := c.loadProfile(nameOwnProfile)
	if err != nil {
		return nil, err
	}
	p := &kind.ProfileBody{AccountID: c.account, Version: 1, UpdatedAt: c.now().UTC().Truncate(time.Millisecond), DisplayName: name, Avatar: avatar}
	if own != nil {
		p.Version = own.Version + 1
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProfile, err)
	}
	if err := c.putJSON(nameOwnProfile, p); err != nil {
		return nil, err
	}
	return p, c.putJSON(nameProfile(c.account), p)
}

// OwnProfile returns this account's newest profile known here, nil if it
// has none.
func (c *Client) OwnProfile() (*kind.ProfileBody, error) {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	return c.loadProfile(nameOwnProfile)
}

// Profile returns the newest profile this device has received of
// account (or set, for its own account), nil if none.
func (c *Client) Profile(account string) (*kind.ProfileBody, error) {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	return c.loadProfile(nameProfile(account))
}

func (c *Client) loadProfile(name string) (*kind.ProfileBody, error) {
	return loadProfile(c.store, name)
}

func loadProfile(s Store, name string) (*kind.ProfileBody, error) {
	b, err := s.Get(name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var p kind.ProfileBody
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// ShareProfile sends this account's profile into the conversation with
// to now, unless this device has already sent that version there. It
// does nothing while the account has no profile.
func (c *Client) ShareProfile(ctx context.Context, to Peer) error {
	return c.shareProfile(ctx, to, c.postSend, true)
}

// ShareProfile is Client.ShareProfile over the stream.
func (s *Stream) ShareProfile(ctx context.Context, to Peer) error {
	return s.c.shareProfile(ctx, to, s.post, true)
}

func (c *Client) shareProfile(ctx context.Context, to Peer, post sendFunc, report bool) error {
	own, err := c.OwnProfile()
	if err != nil || own == nil {
		return err
	}
	conv, err := c.ConversationID(to)
	if err != nil {
		return err
	}
	c.profMu.Lock()
	var sent int64
	if b, err := c.store.Get(nameProfileSent(conv)); err == nil {
		sent, _ = strconv.ParseInt(string(b), 10, 64)
	}
	c.profMu.Unlock()
	if sent >= own.Version {
		return nil
	}
	// One id per version and conversation: a retried share is stored once.
	h := sha256.Sum256([]byte(conv))
	id := "profile." + strconv.FormatInt(own.Version, 10) + "." + hex.EncodeToString(h[:12])
	m, err := kind.New(id, c.now(), own)
	if err != nil {
		return err
	}
	raw, err := m.Marshal()
	if err != nil {
		return err
	}
	if _, err := c.sendRaw(ctx, to, m.ID, m.Class(), raw, false, post); err != nil {
		if report {
			return err
		}
		return nil
	}
	c.profMu.Lock()
	defer c.profMu.Unlock()
	return c.store.Put(nameProfileSent(conv), []byte(strconv.FormatInt(own.Version, 10)))
}

// acceptProfile keeps p, received from a device of account acct, if it is
// newer than what this device knows. A profile of another account is
// refused: a device speaks only for its own account.
func (c *Client) acceptProfile(acct string, p *kind.ProfileBody) error {
	if p.AccountID != acct {
		return fmt.Errorf("%w: a profile of %s sent by a device of %s", ErrUntrusted, p.AccountID, acct)
	}
	c.profMu.Lock()
	defer c.profMu.Unlock()
	cur, err := c.loadProfile(nameProfile(acct))
	if err != nil {
		return err
	}
	if !kind.NewerProfile(p, cur) {
		return nil // an older or repeated copy
	}
	if err := c.putJSON(nameProfile(acct), p); err != nil {
		return err
	}
	if acct == c.account {
		// Set on another device of this account: this device shares it
		// from now on, and a later SetProfile here counts on from it.
		return c.putJSON(nameOwnProfile, p)
	}
	return nil
}

// StoredProfile returns the newest profile of account kept in s by a
// Client, nil if none: for a program that shows names without opening a
// Client.
func StoredProfile(s Store, account string) (*kind.ProfileBody, error) {
	return loadProfile(s, nameProfile(account))
}
