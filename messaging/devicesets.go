package messaging

import (
	"context"
	"sync"
	"time"
)

// deviceSets keeps, per account, the devices a send must address — the
// active devices that have published their keys — in this node's memory,
// so a send does not ask the directory and the identities table each
// time (two queries of the four a direct send made).
//
// A cached set is dropped when it may have changed:
//   - a device of the account publishes its keys on this node (Publish);
//   - a device is revoked, on any node: kanald passes the revocation's
//     session end, which reaches every node over the bus, to ForgetDevice;
//   - after ttl, whatever happened: a device that published on another
//     node is addressed by this node's senders at most ttl later.
//
// And a send whose envelopes do not match the cached set is checked
// again against the database before it is refused as stale (sendFresh),
// so a client that already knows of a new device is never refused for
// this node's memory.
type deviceSets struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	// gen counts invalidations: a set read from the database while one
	// happened is not kept, since it may predate the change.
	gen      uint64
	accounts map[string]cachedSet
	owner    map[string]string // device → account, for the cached sets
}

type cachedSet struct {
	devices []activeDevice
	until   time.Time
}

// activeDevice is an active device of an account, and whether it has
// published its keys: a device that has not cannot read end-to-end
// messages yet, and is not addressed until it has.
type activeDevice struct {
	Device
	published bool
}

func newDeviceSets(ttl time.Duration, now func() time.Time) *deviceSets {
	return &deviceSets{ttl: ttl, now: now, accounts: map[string]cachedSet{}, owner: map[string]string{}}
}

// get returns the cached sets of the accounts that have one, the accounts
// that do not, and the generation to pass to put with their sets.
func (c *deviceSets) get(accounts []string) (hit []activeDevice, miss []string, gen uint64) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range accounts {
		e, ok := c.accounts[a]
		if !ok || now.After(e.until) {
			miss = append(miss, a)
			continue
		}
		hit = append(hit, e.devices...)
	}
	return hit, miss, c.gen
}

// put keeps the sets of accounts read from the database at generation
// gen, unless an invalidation came since. devices holds every device of
// the accounts, possibly of other accounts too.
func (c *deviceSets) put(gen uint64, accounts []string, devices []activeDevice) {
	until := c.now().Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	sets := make(map[string][]activeDevice, len(accounts))
	for _, a := range accounts {
		sets[a] = nil
	}
	for _, d := range devices {
		if _, ok := sets[d.AccountID]; ok {
			sets[d.AccountID] = append(sets[d.AccountID], d)
		}
	}
	for a, ds := range sets {
		c.dropLocked(a)
		c.accounts[a] = cachedSet{devices: ds, until: until}
		for _, d := range ds {
			if d.published {
				c.owner[d.DeviceID] = a
			}
		}
	}
}

// account returns the account of a device in a cached set: an active
// device with published keys, as of at most ttl ago.
func (c *deviceSets) account(device string) (string, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.owner[device]
	if !ok {
		return "", false
	}
	if e, ok := c.accounts[a]; !ok || now.After(e.until) {
		return "", false
	}
	return a, true
}

// forgetAccount drops the account's set.
func (c *deviceSets) forgetAccount(account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.dropLocked(account)
}

// forgetDevice drops the set holding the device.
func (c *deviceSets) forgetDevice(device string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if a, ok := c.owner[device]; ok {
		c.dropLocked(a)
	}
}

func (c *deviceSets) dropLocked(account string) {
	for _, d := range c.accounts[account].devices {
		delete(c.owner, d.DeviceID)
	}
	delete(c.accounts, account)
}

// ForgetDevice tells the send path that the device was revoked, so that
// no send addresses it any more, nor is taken from it on a stream,
// without asking the database again. cmd/kanald calls it for every
// revocation's session end, on every node.
func (s *Service) ForgetDevice(device string) {
	if s.sets != nil {
		s.sets.forgetDevice(device)
	}
}

// ForgetAccount drops what the send path keeps of the account's devices
// (all of them revoked at once, for example).
func (s *Service) ForgetAccount(account string) {
	if s.sets != nil {
		s.sets.forgetAccount(account)
	}
}

// activeDevices returns the active devices of the accounts, and whether
// each has published its keys: from this node's memory where it has them
// (cached says whether it had any), unless fresh, and else from the
// database, keeping what it read.
func (s *Service) activeDevices(ctx context.Context, accounts []string, fresh bool) (out []activeDevice, cached bool, err error) {
	if s.sets == nil {
		out, err = s.activeDevicesOf(ctx, accounts)
		return out, false, err
	}
	hit, miss, gen := s.sets.get(accounts)
	if fresh {
		hit, miss = nil, accounts
	}
	if len(miss) == 0 {
		return hit, true, nil
	}
	read, err := s.activeDevicesOf(ctx, miss)
	if err != nil {
		return nil, false, err
	}
	s.sets.put(gen, miss, read)
	return append(hit, read...), len(hit) > 0, nil
}

// activeDevicesOf asks the directory and the identities table.
func (s *Service) activeDevicesOf(ctx context.Context, accounts []string) ([]activeDevice, error) {
	all, err := s.dir.DevicesOf(ctx, accounts)
	if err != nil {
		return nil, err
	}
	set := make(map[string]Device, len(all))
	for _, d := range all {
		set[d.DeviceID] = d
	}
	published, err := s.published(ctx, set)
	if err != nil {
		return nil, err
	}
	out := make([]activeDevice, len(all))
	for i, d := range all {
		out[i] = activeDevice{Device: Device{DeviceID: d.DeviceID, AccountID: d.AccountID}, published: published[d.DeviceID]}
	}
	return out, nil
}
