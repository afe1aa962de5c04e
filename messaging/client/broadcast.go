package client

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"

	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	mailbox "github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// Follow makes this account a follower of org's broadcast: announcements
// the organisation posts from now on reach every device of the account.
func (c *Client) Follow(ctx context.Context, org string) (*messaging.Following, error) {
	var f messaging.Following
	return &f, c.doAny(ctx, http.MethodPut, "/v1/broadcasts/"+url.PathEscape(org)+"/follower", nil, &f, http.StatusOK)
}

// Unfollow ends this account's following of org.
func (c *Client) Unfollow(ctx context.Context, org string) error {
	return c.doAny(ctx, http.MethodDelete, "/v1/broadcasts/"+url.PathEscape(org)+"/follower", nil, nil, http.StatusNoContent)
}

// Following lists the organisations this account follows.
func (c *Client) Following(ctx context.Context) (*messaging.FollowingList, error) {
	var l messaging.FollowingList
	return &l, c.doAny(ctx, http.MethodGet, "/v1/broadcasts", nil, &l, http.StatusOK)
}

// Announce signs text as this device, an agent of org (its membership
// certificate from the directory, checked against the CA and the
// transparency log), and posts it to org's followers. id is the
// announcement's id: posting the same id again is answered with the
// first post.
func (c *Client) Announce(ctx context.Context, org, id, text string) (*messaging.PostResponse, error) {
	p, err := c.ownOrgProof(ctx, org)
	if err != nil {
		return nil, err
	}
	m := orgsig.Member{Key: c.deviceKey, DeviceCert: c.certDER, Membership: p.Membership, OrgCert: p.Certificate}
	jws, err := messaging.SignAnnouncement(m, c.roots, messaging.Announcement{Version: 1, Org: org, ID: id, SentAt: c.now(), Text: text})
	if err != nil {
		return nil, err
	}
	return c.PostAnnouncement(ctx, org, jws)
}

// PostAnnouncement posts an announcement already signed
// (messaging.SignAnnouncement).
func (c *Client) PostAnnouncement(ctx context.Context, org, jws string) (*messaging.PostResponse, error) {
	var r messaging.PostResponse
	return &r, c.doAny(ctx, http.MethodPost, "/v1/broadcasts/"+url.PathEscape(org)+"/posts",
		messaging.PostRequest{Announcement: jws}, &r, http.StatusCreated, http.StatusOK)
}

// readAnnouncement checks a broadcast envelope: its ciphertext is an
// announcement that verifies against the CA this client trusts, sent in
// the organisation's broadcast conversation by the device that signed it.
func (c *Client) readAnnouncement(env *mailbox.Envelope, in *Incoming) (*Incoming, error) {
	v, err := messaging.VerifyAnnouncement(string(env.Ciphertext), c.roots)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	if env.Conversation != messaging.BroadcastConversation(v.Org) {
		return nil, fmt.Errorf("%w: an announcement of %s in conversation %s", ErrUntrusted, v.Org, env.Conversation)
	}
	if env.Sender != v.Signer.DeviceID {
		return nil, fmt.Errorf("%w: an announcement signed by %s delivered as from %s", ErrUntrusted, v.Signer.DeviceID, env.Sender)
	}
	m, err := kind.New(v.ID, v.SentAt, &kind.TextBody{Text: v.Text})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	mem := v.Membership
	in.Announcement, in.Org, in.SenderAccount = true, &mem, v.Signer.AccountID
	in.Message, in.Raw = m, raw
	in.Reply = Peer{OrgID: v.Org}
	return in, nil
}

// doAny is do for a route that answers success with one of statuses, and
// possibly no body (out nil).
func (c *Client) doAny(ctx context.Context, method, path string, in, out any, statuses ...int) error {
	if err := apiclient.CheckBase(c.base); err != nil {
		return fmt.Errorf("messaging/client: %w", err)
	}
	req, err := apiclient.NewRequest(ctx, method, c.base+path, in, *c.token.Load())
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, MaxResponseBytes)
	if err != nil {
		return fmt.Errorf("messaging/client: %s %s: %w", method, path, err)
	}
	if !slices.Contains(statuses, resp.StatusCode) {
		return problemOf(resp, b)
	}
	if out == nil {
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return fmt.Errorf("messaging/client: %s %s: content type %q", method, path, resp.Header.Get("Content-Type"))
	}
	return decodeStrict(b, out)
}
