package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/kanal-server/kanal/keys"
)

// Pinning. The first identity key this client meets for a contact's
// device — in a bundle it verified, or in an initial message that started
// a session — is pinned, kept in the Store under "trust/<account>". A
// later, different key for the same device is a key change: it is
// reported through Options.OnKeyChange, and the pinned key becomes the
// new one (the user was told).
//
// VerifyContact records that the user compared the safety numbers of the
// contact's pinned keys (SafetyNumbers) out of band: it marks the contact
// verified and keeps the keys verified. From then on a send that would
// encrypt to a device of the contact whose pinned key is not the verified
// one — a changed key, or a device that was not there when the contact was
// verified — stops with a *KeyChangedError before anything is encrypted,
// until the user verifies again (or UnverifyContact).

// ErrKeyChanged is wrapped by a *KeyChangedError.
var ErrKeyChanged = errors.New("messaging/client: a verified contact's key changed")

// KeyChangedError stops a send to a verified contact one of whose devices
// shows a key the user did not verify.
type KeyChangedError struct {
	AccountID string
	DeviceID  string
	NewDevice bool // the device was not among the verified ones
}

func (e *KeyChangedError) Error() string {
	if e.NewDevice {
		return fmt.Sprintf("%s has a new device (%s) since you verified them: compare the safety number again before sending", e.AccountID, e.DeviceID)
	}
	return fmt.Sprintf("%s's key changed (device %s) since you verified them: compare the safety number again before sending", e.AccountID, e.DeviceID)
}

func (e *KeyChangedError) Unwrap() error { return ErrKeyChanged }

// KeyChange is what Options.OnKeyChange is told: a contact's device shows
// an identity key other than the pinned one, or a verified contact shows a
// device it did not have when it was verified (NewDevice; Old is zero).
type KeyChange struct {
	AccountID string
	DeviceID  string
	Old, New  keys.IdentityPublic
	NewDevice bool
	// Verified says the contact was verified: sending to it is blocked
	// until it is verified again.
	Verified bool
}

// ContactTrust is what this client holds about a contact's keys.
type ContactTrust struct {
	AccountID string
	Verified  bool
	Devices   []PinnedKey // sorted by device
}

// PinnedKey is one device's pinned identity key.
type PinnedKey struct {
	DeviceID string
	Key      keys.IdentityPublic
	// Unverified is set, on a verified contact, for a key the user did not
	// verify (changed, or a device added since): sends are blocked.
	Unverified bool
}

// contactTrust is the stored form, by account.
type contactTrust struct {
	Keys         map[string][]byte `json:"keys"`                    // device → identity key (keys.IdentityPublic binary)
	Verified     bool              `json:"verified,omitempty"`      // VerifyContact was called
	VerifiedKeys map[string][]byte `json:"verified_keys,omitempty"` // the keys the user verified
}

func nameTrust(account string) string { return "trust/" + account }

// unverified reports whether device's pinned key is not one the user
// verified, on a verified contact.
func (t *contactTrust) unverified(device string) bool {
	if !t.Verified {
		return false
	}
	v, ok := t.VerifiedKeys[device]
	return !ok || !bytes.Equal(v, t.Keys[device])
}

// loadTrust reads the trust record of account; under trustMu.
func (c *Client) loadTrust(account string) (*contactTrust, error) {
	t := &contactTrust{Keys: map[string][]byte{}}
	b, err := c.store.Get(nameTrust(account))
	if errors.Is(err, ErrNotFound) {
		return t, nil
	} else if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("messaging/client: pinned keys of %s: %w", account, err)
	}
	if t.Keys == nil {
		t.Keys = map[string][]byte{}
	}
	return t, nil
}

// observeKey pins key for device of account, or reports that it differs
// from the pinned one. This account's own devices are the monitor's
// business (Monitor), not pinned here.
func (c *Client) observeKey(account, device string, key keys.IdentityPublic) error {
	if account == "" || account == c.account || key.IsZero() {
		return nil
	}
	bin, err := key.MarshalBinary()
	if err != nil {
		return err
	}
	c.trustMu.Lock()
	t, err := c.loadTrust(account)
	if err != nil {
		c.trustMu.Unlock()
		return err
	}
	old, known := t.Keys[device]
	if known && bytes.Equal(old, bin) {
		c.trustMu.Unlock()
		return nil
	}
	t.Keys[device] = bin
	if err := c.putJSON(nameTrust(account), t); err != nil {
		c.trustMu.Unlock()
		return err
	}
	c.trustMu.Unlock()
	// A device met for the first time is news only on a verified contact
	// (OnNewDevice tells of new devices anyway).
	if known || t.Verified {
		ch := KeyChange{AccountID: account, DeviceID: device, New: key, NewDevice: !known, Verified: t.Verified}
		if known {
			if err := ch.Old.UnmarshalBinary(old); err != nil {
				return fmt.Errorf("messaging/client: pinned key of %s: %w", device, err)
			}
		}
		if c.onKeyChange != nil {
			c.onKeyChange(ch)
		}
	}
	return nil
}

// checkVerified returns a *KeyChangedError for the first device of set,
// of a verified contact, whose pinned key the user did not verify.
func (c *Client) checkVerified(set *deviceSet) error {
	c.trustMu.Lock()
	defer c.trustMu.Unlock()
	cache := map[string]*contactTrust{}
	for _, dev := range sortedDevices(set) {
		acct, err := c.sessionAccount(dev)
		if err != nil {
			return err
		}
		if acct == "" || acct == c.account {
			continue
		}
		t := cache[acct]
		if t == nil {
			if t, err = c.loadTrust(acct); err != nil {
				return err
			}
			cache[acct] = t
		}
		if t.unverified(dev) {
			_, known := t.VerifiedKeys[dev]
			return &KeyChangedError{AccountID: acct, DeviceID: dev, NewDevice: !known}
		}
	}
	return nil
}

// Contact returns what this client holds about account's keys.
func (c *Client) Contact(account string) (*ContactTrust, error) {
	c.trustMu.Lock()
	defer c.trustMu.Unlock()
	t, err := c.loadTrust(account)
	if err != nil {
		return nil, err
	}
	out := &ContactTrust{AccountID: account, Verified: t.Verified}
	for _, dev := range slices.Sorted(maps.Keys(t.Keys)) {
		var k keys.IdentityPublic
		if err := k.UnmarshalBinary(t.Keys[dev]); err != nil {
			return nil, fmt.Errorf("messaging/client: pinned key of %s: %w", dev, err)
		}
		out.Devices = append(out.Devices, PinnedKey{DeviceID: dev, Key: k, Unverified: t.unverified(dev)})
	}
	return out, nil
}

// FetchContactKeys pins the identity keys of every device of account that
// has no session yet: it claims their bundles, verifies them as a send
// would, pins their keys and starts the sessions the next send uses. A
// bundle that does not verify is refused and reported in the result.
func (c *Client) FetchContactKeys(ctx context.Context, account string) (*Claim, error) {
	if account == c.account {
		return nil, errors.New("messaging/client: this account's own keys are not a contact's")
	}
	claim, err := c.ClaimAccount(ctx, account)
	if err != nil {
		return nil, err
	}
	devices := map[string]string{}
	for _, b := range claim.Bundles {
		if err := c.observeKey(b.Device.AccountID, b.Device.DeviceID, b.Prekeys.Identity); err != nil {
			return nil, err
		}
		devices[b.Device.DeviceID] = b.Device.AccountID
		has, err := c.HasSession(b.Device.DeviceID)
		if err != nil {
			return nil, err
		}
		if !has {
			if err := c.StartSession(b); err != nil {
				return nil, err
			}
		}
	}
	return claim, c.pin(devices)
}

// DeviceSafetyNumber is the safety number between this device's identity
// key and one device of a contact.
type DeviceSafetyNumber struct {
	DeviceID string
	Number   keys.SafetyNumber
}

// SafetyNumbers returns, for each pinned device of account, the safety
// number of this device's identity key and that device's (keys.
// NewSafetyNumber with the two account ids): the contact's device shows
// the same number for this device. Compare them out of band, then call
// VerifyContact. Keys are pinned first if none are (FetchContactKeys).
func (c *Client) SafetyNumbers(ctx context.Context, account string) ([]DeviceSafetyNumber, error) {
	ct, err := c.Contact(account)
	if err != nil {
		return nil, err
	}
	if len(ct.Devices) == 0 {
		if _, err := c.FetchContactKeys(ctx, account); err != nil {
			return nil, err
		}
		if ct, err = c.Contact(account); err != nil {
			return nil, err
		}
		if len(ct.Devices) == 0 {
			return nil, fmt.Errorf("messaging/client: %s has no device with published keys", account)
		}
	}
	own, err := c.IdentityPublic()
	if err != nil {
		return nil, err
	}
	var out []DeviceSafetyNumber
	for _, d := range ct.Devices {
		n, err := keys.NewSafetyNumber(c.account, own, account, d.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, DeviceSafetyNumber{DeviceID: d.DeviceID, Number: n})
	}
	return out, nil
}

// IdentityPublic returns this device's identity public key, creating the
// identity if it has none yet.
func (c *Client) IdentityPublic() (keys.IdentityPublic, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.loadIdentity(); err != nil {
		return keys.IdentityPublic{}, err
	}
	return c.idKey.Public(), nil
}

// VerifyContact marks account verified with the keys now pinned for its
// devices: the user compared their safety numbers. It fails when no key
// is pinned.
func (c *Client) VerifyContact(account string) error {
	c.trustMu.Lock()
	defer c.trustMu.Unlock()
	t, err := c.loadTrust(account)
	if err != nil {
		return err
	}
	if len(t.Keys) == 0 {
		return fmt.Errorf("messaging/client: no keys of %s are pinned to verify", account)
	}
	t.Verified, t.VerifiedKeys = true, maps.Clone(t.Keys)
	return c.putJSON(nameTrust(account), t)
}

// UnverifyContact marks account not verified: key changes are reported
// again but no longer block sending.
func (c *Client) UnverifyContact(account string) error {
	c.trustMu.Lock()
	defer c.trustMu.Unlock()
	t, err := c.loadTrust(account)
	if err != nil {
		return err
	}
	t.Verified, t.VerifiedKeys = false, nil
	return c.putJSON(nameTrust(account), t)
}

// UnwrapKey opens a key another device wrapped to this device's identity
// key with keys.WrapKey (a vault document's key), under info.
func (c *Client) UnwrapKey(info, wrapped []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.loadIdentity(); err != nil {
		return nil, err
	}
	return c.idKey.UnwrapKey(info, wrapped)
}
