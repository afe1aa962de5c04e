package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// ErrNotRecipient is wrapped by a *RecipientError.
var ErrNotRecipient = errors.New("messaging/client: device does not belong in this conversation")

// RecipientError is a device the server named as a recipient of a send
// that this client will not encrypt to. Nothing of the send was
// encrypted to any device, and nothing was stored.
type RecipientError struct {
	Peer      Peer   // the conversation's other side
	DeviceID  string // the device the server named
	AccountID string // its account as its verified certificate names it; "" if unknown
	Reason    string
	Err       error // what the check found, when it was a refused certificate or bundle
}

func (e *RecipientError) Error() string {
	who := "device " + e.DeviceID
	if e.AccountID != "" {
		who += " of account " + e.AccountID
	}
	return fmt.Sprintf("recipient refused: the server named %s as a recipient of the conversation with %s: %s", who, e.Peer, e.Reason)
}

func (e *RecipientError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNotRecipient, e.Err}
	}
	return []error{ErrNotRecipient}
}

// NewDevice is a device of a contact (or of this account) that this
// client meets after it had pinned the account's devices.
type NewDevice struct {
	AccountID string
	DeviceID  string
}

// Recipients. The server says which devices a send must reach (the 409
// stale-devices answer names them, with their accounts); the client never
// takes its word for who belongs in the conversation. Every device named
// must show, from what the client verified itself:
//
//   - direct: a device certificate, chained to the deployment CA, that
//     names this account or the other one;
//   - organisation: this account (the citizen's own devices, or the agent's
//     own), the citizen the agent answers, or a membership certificate of
//     that organisation, chained through its certificate to the CA, for
//     the same device and key, with an agent role (identity.IsAgentRole);
//   - group: this account, or a member this device was told of by a
//     group.change notice it accepted (created, added, role, member; a
//     removed or left member is dropped).
//
// The account of a device is the one its certificate named when the
// client claimed its bundle or received its first message, kept with the
// session; the server's "accounts" map only says whose bundle to claim.
// One device that fails stops the whole send before anything is
// encrypted, with a *RecipientError.

// identity of a device named for a send, from what the client verified.
type recipient struct {
	device     string
	account    string         // from the device certificate
	membership *ca.Membership // from a bundle claimed for an organisation
}

// admit decides whether r may read the conversation with to.
func (c *Client) admit(ctx context.Context, to Peer, r recipient) error {
	refuse := func(format string, args ...any) error {
		return &RecipientError{Peer: to, DeviceID: r.device, AccountID: r.account, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case r.account == "":
		return refuse("its account is unknown")
	case r.account == c.account:
		return nil // this account's own devices read every conversation
	case to.GroupID != "":
		members, err := c.groupMembers(to.GroupID)
		if err != nil {
			return err
		}
		if _, ok := members[r.account]; !ok {
			return refuse("this device has not been told that account %s is a member of the group", r.account)
		}
		return nil
	case to.OrgID != "":
		if to.AccountID != "" && r.account == to.AccountID {
			return nil
		}
		m := r.membership
		if m == nil || m.OrgID != to.OrgID {
			var err error
			if m, err = c.agentMembership(ctx, to.OrgID, r.device); err != nil {
				return err
			}
		}
		switch {
		case m == nil:
			return refuse("it has no valid membership of organisation %s", to.OrgID)
		case m.AccountID != r.account || m.DeviceID != r.device:
			return refuse("its membership names %s/%s", m.AccountID, m.DeviceID)
		case !identity.IsAgentRole(m.Role):
			return refuse("its role %q in organisation %s does not read the organisation's conversations", m.Role, to.OrgID)
		}
		return nil
	default:
		if r.account == to.AccountID {
			return nil
		}
		return refuse("it belongs to neither account of the conversation")
	}
}

// agentSet is an organisation's agent devices as the directory listed
// them, each membership verified.
type agentSet struct {
	at      time.Time
	members map[string]*ca.Membership // by device
	serials map[string]*big.Int       // device certificate serials, by device
}

// agentMembership returns the verified membership of device in org, from
// the directory (GET /v1/directory/orgs/{id}), or nil if it shows none
// that verifies. A listing is reused for StatusMaxAge unless it lacks the
// device.
func (c *Client) agentMembership(ctx context.Context, org, device string) (*ca.Membership, error) {
	c.convs.mu.Lock()
	set := c.convs.agents[org]
	c.convs.mu.Unlock()
	if set != nil && c.now().Sub(set.at) < StatusMaxAge {
		if m := set.members[device]; m != nil {
			return c.unrevoked(ctx, set, device)
		}
	}
	var d identity.DirectoryOrg
	if err := c.do(ctx, http.MethodGet, "/v1/directory/orgs/"+url.PathEscape(org), nil, &d); err != nil {
		return nil, fmt.Errorf("messaging/client: organisation %s: %w", org, err)
	}
	orgDER := derOf(d.Certificate)
	set = &agentSet{at: c.now(), members: map[string]*ca.Membership{}, serials: map[string]*big.Int{}}
	chainOnly := func(*big.Int) error { return nil } // the status of the one device asked about is checked below
	for _, mem := range d.Members {
		for _, dev := range mem.Devices {
			m, err := ca.VerifyMembership(derOf(dev.MembershipCertificate), orgDER, c.roots, c.now())
			if err != nil || m.OrgID != org || m.DeviceID != dev.DeviceID {
				continue
			}
			di, err := c.checkDevice(derOf(dev.Certificate), dev.DeviceID, chainOnly)
			if err != nil || ca.CheckSameDevice(di, m) != nil {
				continue
			}
			// The membership must be in the log, like a claimed one.
			if err := c.logged(ctx, dev.Log, membershipEntry(m), derOf(dev.MembershipCertificate)); err != nil {
				continue
			}
			set.members[dev.DeviceID] = &m
			set.serials[dev.DeviceID] = di.Serial
		}
	}
	c.convs.mu.Lock()
	if c.convs.agents == nil {
		c.convs.agents = map[string]*agentSet{}
	}
	c.convs.agents[org] = set
	c.convs.mu.Unlock()
	return c.unrevoked(ctx, set, device)
}

// unrevoked returns device's membership from set if the CA's signed status
// says its device certificate is not revoked (one status per device asked
// about, not per agent listed).
func (c *Client) unrevoked(ctx context.Context, set *agentSet, device string) (*ca.Membership, error) {
	m := set.members[device]
	if m == nil {
		return nil, nil
	}
	if err := c.deviceStatus(ctx, set.serials[device]); errors.Is(err, ca.ErrRevoked) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return m, nil
}

// Group members, as this device was told by group.change notices, kept
// in the Store by group. A device that saw itself added (or create the
// group) has followed every change since: the roster notices (op member)
// a server sends to a newcomer or a new device are taken only until then.
// So a row written into the server's member table reaches only a device
// that learns the group from a roster, never one that followed the changes.
func nameGroup(id string) string { return "groups/" + id }

type groupState struct {
	Members map[string]string `json:"members"` // account → role
	Joined  bool              `json:"joined"`  // saw its own created or added
}

func (c *Client) groupState(id string) (*groupState, error) {
	g := &groupState{Members: map[string]string{}}
	b, err := c.store.Get(nameGroup(id))
	if errors.Is(err, ErrNotFound) {
		return g, nil
	} else if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, g); err != nil {
		return nil, fmt.Errorf("messaging/client: stored members of %s: %w", id, err)
	}
	if g.Members == nil {
		g.Members = map[string]string{}
	}
	return g, nil
}

func (c *Client) groupMembers(id string) (map[string]string, error) {
	g, err := c.groupState(id)
	if err != nil {
		return nil, err
	}
	return g.Members, nil
}

// applyGroupChange records an accepted group.change notice of group
// conversation conv.
func (c *Client) applyGroupChange(conv string, b *kind.GroupChangeBody) error {
	if b.GroupID != conv || !messaging.ValidGroupID(conv) {
		return fmt.Errorf("%w: group change for %s in conversation %s", ErrBadMessage, b.GroupID, conv)
	}
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	g, err := c.groupState(conv)
	if err != nil {
		return err
	}
	switch b.Op {
	case "invited", "declined", "uninvited":
		// An invitation changes no member: the invitee is encrypted to
		// once an added (after accepting) says so.
		return nil
	case "member":
		if g.Joined {
			return nil // this device follows the changes; a roster adds nothing
		}
		g.Members[b.AccountID] = b.Role
	case "created", "added", "role":
		// A device follows the changes from its own join on — if it knew
		// who was there before: it created the group, or the roster that
		// precedes a newcomer's "added" told it. A device whose state is
		// new (it lost it and published a new key) may meet an old
		// "added" for itself before the roster the server sends it then;
		// it still takes that roster.
		knew := len(g.Members) > 0
		g.Members[b.AccountID] = b.Role
		if b.AccountID == c.account && (b.Op == "created" || b.Op == "added" && knew) {
			g.Joined = true
		}
	case "removed", "left":
		if b.AccountID == c.account {
			// Out of the group: a later invitation starts afresh.
			return c.store.Delete(nameGroup(conv))
		}
		delete(g.Members, b.AccountID)
	default:
		return fmt.Errorf("%w: group change %q", ErrBadMessage, b.Op)
	}
	return c.putJSON(nameGroup(conv), g)
}

// GroupMembers returns the members of a group as this device was told by
// the group.change notices it received: account id → role.
func (c *Client) GroupMembers(id string) (map[string]string, error) {
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	return c.groupMembers(id)
}

// Pinned devices: the devices of each account this client has met, kept
// in the Store. The first devices of an account are pinned silently;
// any device met later is reported through Options.OnNewDevice.
func namePinned(account string) string { return "pinned/" + account }

// pin records the devices of accounts (device → account) and reports
// those that are new on an account that already had pinned devices.
func (c *Client) pin(devices map[string]string) error {
	byAccount := map[string][]string{}
	for d, a := range devices {
		if d != c.device {
			byAccount[a] = append(byAccount[a], d)
		}
	}
	var news []NewDevice
	c.groupMu.Lock()
	for a, ds := range byAccount {
		var known []string
		b, err := c.store.Get(namePinned(a))
		first := errors.Is(err, ErrNotFound)
		if err != nil && !first {
			c.groupMu.Unlock()
			return err
		}
		if !first {
			if err := json.Unmarshal(b, &known); err != nil {
				c.groupMu.Unlock()
				return fmt.Errorf("messaging/client: pinned devices of %s: %w", a, err)
			}
		}
		changed := false
		sort.Strings(ds)
		for _, d := range ds {
			if slices.Contains(known, d) {
				continue
			}
			known, changed = append(known, d), true
			if !first {
				news = append(news, NewDevice{AccountID: a, DeviceID: d})
			}
		}
		if changed {
			if err := c.putJSON(namePinned(a), known); err != nil {
				c.groupMu.Unlock()
				return err
			}
		}
	}
	c.groupMu.Unlock()
	if c.onNewDevice != nil {
		for _, n := range news {
			c.onNewDevice(n)
		}
	}
	return nil
}

// PinnedDevices returns the devices of account this client has met.
func (c *Client) PinnedDevices(account string) ([]string, error) {
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	b, err := c.store.Get(namePinned(account))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var known []string
	return known, json.Unmarshal(b, &known)
}
