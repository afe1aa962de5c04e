package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Verified names. An eID login at level high gives the device a verified
// name: the deployment notary's statement that this account's holder is
// called so (identity.VerifiedNameAttestation, docs/levels.md). It stays
// in the Store until the citizen consents to show it to an organisation
// (ConsentVerifiedName); only then does the device send it, end to end as
// a message of kind identity.verified-name, into the conversation with
// that organisation — at once with ShareVerifiedName, and again with the
// first message there after a new eID login. WithdrawVerifiedName ends
// the consent and tells the organisation's agents' devices to forget the
// name.
//
// An agent's device accepts a verified name only from the citizen's own
// device writing to the organisation (not from an agent, not in a direct
// or group conversation), for the organisation of that conversation, with
// the notary's signature checking out against the CA it holds, about the
// account of the device that sent it, and not expired. It keeps it per
// organisation and account; VerifiedName shows it only until it expires.

// Names in the Store.
const (
	nameOwnVerifiedName = "verified-name/own"
	nameConsents        = "verified-name/consents"
)

func nameVerifiedNameSent(conv string) string { return "verified-name/sent/" + conv }
func nameVerifiedName(org, account string) string {
	return "verified-name/of/" + org + "/" + account
}

// Errors of verified names.
var (
	// ErrNoVerifiedName: this device has no verified name (no eID login at
	// level high, or it was unlinked).
	ErrNoVerifiedName = errors.New("messaging/client: no eID-verified name on this device")
	// ErrNoConsent: the citizen has not consented to show the verified
	// name to this organisation.
	ErrNoConsent = errors.New("messaging/client: no consent to show the verified name to this organisation")
)

// KeepVerifiedName stores a the verified name this device's eID login
// brought, in place of any earlier one. It checks the form only: a
// receiver checks the signature.
func KeepVerifiedName(s Store, a *identity.VerifiedNameAttestation) error {
	if _, err := identity.ParseVerifiedName(a.Statement); err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.Put(nameOwnVerifiedName, b)
}

// ForgetVerifiedName drops this device's verified name (after an eID
// unlink). Consents stay recorded but have nothing to send.
func ForgetVerifiedName(s Store) error {
	if err := s.Delete(nameOwnVerifiedName); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// OwnVerifiedName returns this device's verified name, nil if none.
func OwnVerifiedName(s Store) (*identity.VerifiedNameAttestation, *identity.VerifiedName, error) {
	b, err := s.Get(nameOwnVerifiedName)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	var a identity.VerifiedNameAttestation
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, nil, err
	}
	v, err := identity.ParseVerifiedName(a.Statement)
	if err != nil {
		return nil, nil, err
	}
	return &a, v, nil
}

// VerifiedNameConsents lists the organisations the citizen consented to
// show the verified name to, on this device.
func VerifiedNameConsents(s Store) ([]string, error) {
	b, err := s.Get(nameConsents)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var orgs []string
	return orgs, json.Unmarshal(b, &orgs)
}

func (c *Client) setConsent(org string, on bool) error {
	orgs, err := VerifiedNameConsents(c.store)
	if err != nil {
		return err
	}
	i := slices.Index(orgs, org)
	switch {
	case on && i < 0:
		orgs = append(orgs, org)
	case !on && i >= 0:
		orgs = slices.Delete(orgs, i, i+1)
	default:
		return nil
	}
	return c.putJSON(nameConsents, orgs)
}

// ConsentVerifiedName records on this device that the citizen consents
// to show the verified name to org's agents.
func (c *Client) ConsentVerifiedName(org string) error {
	if !strings.HasPrefix(org, "org_") {
		return fmt.Errorf("messaging/client: %q is not an organisation", org)
	}
	c.profMu.Lock()
	defer c.profMu.Unlock()
	return c.setConsent(org, true)
}

// ShareVerifiedName sends the verified name into the conversation with
// org now. It is refused with ErrNoConsent unless the citizen consented
// for org (ConsentVerifiedName), and with ErrNoVerifiedName when the
// device has none; it sends nothing when this attestation went there
// before.
func (c *Client) ShareVerifiedName(ctx context.Context, org string) error {
	return c.shareVerifiedName(ctx, org, c.postSend, true)
}

func (c *Client) shareVerifiedName(ctx context.Context, org string, post sendFunc, report bool) error {
	c.profMu.Lock()
	orgs, err := VerifiedNameConsents(c.store)
	var att *identity.VerifiedNameAttestation
	var v *identity.VerifiedName
	if err == nil {
		att, v, err = OwnVerifiedName(c.store)
	}
	c.profMu.Unlock()
	switch {
	case err != nil:
		return err
	case !slices.Contains(orgs, org):
		if report {
			return fmt.Errorf("%w %s", ErrNoConsent, org)
		}
		return nil
	case att == nil || !c.now().Before(v.ExpiresAt):
		if report {
			return ErrNoVerifiedName
		}
		return nil
	}
	to := Peer{OrgID: org}
	conv, err := c.ConversationID(to)
	if err != nil {
		return err
	}
	h := sha256.Sum256(att.Statement)
	sum := hex.EncodeToString(h[:])
	if b, err := c.store.Get(nameVerifiedNameSent(conv)); err == nil && string(b) == sum {
		return nil
	}
	// A fresh id: the same attestation goes again after a withdrawal and
	// a new consent, and the server keeps ids for idempotency.
	id := NewMessageID()
	body := &kind.VerifiedNameBody{OrgID: org, Attestation: &kind.VerifiedNameAttestation{Statement: att.Statement, Signature: att.Signature, Notary: att.Notary}}
	if err := c.sendVerifiedName(ctx, to, id, body, post); err != nil {
		if report {
			return err
		}
		return nil
	}
	return c.store.Put(nameVerifiedNameSent(conv), []byte(sum))
}

func (c *Client) sendVerifiedName(ctx context.Context, to Peer, id string, body *kind.VerifiedNameBody, post sendFunc) error {
	m, err := kind.New(id, c.now(), body)
	if err != nil {
		return err
	}
	raw, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = c.sendRaw(ctx, to, m.ID, m.Class(), raw, false, post)
	return err
}

// WithdrawVerifiedName ends the consent for org on this device and tells
// org's agents' devices to forget the name. What an agent has already
// read cannot be taken back; their devices stop showing it.
func (c *Client) WithdrawVerifiedName(ctx context.Context, org string) error {
	if !strings.HasPrefix(org, "org_") {
		return fmt.Errorf("messaging/client: %q is not an organisation", org)
	}
	c.profMu.Lock()
	err := c.setConsent(org, false)
	c.profMu.Unlock()
	if err != nil {
		return err
	}
	to := Peer{OrgID: org}
	conv, err := c.ConversationID(to)
	if err != nil {
		return err
	}
	if err := c.sendVerifiedName(ctx, to, NewMessageID(), &kind.VerifiedNameBody{OrgID: org, Withdrawn: true}, c.postSend); err != nil {
		return err
	}
	if err := c.store.Delete(nameVerifiedNameSent(conv)); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// acceptVerifiedName checks a verified name (or its withdrawal) that a
// device of account acct sent to org, in a message addressed to the
// organisation (fromCitizen: not as an agent, not in a direct or group
// conversation), and keeps it.
func (c *Client) acceptVerifiedName(acct, org string, fromCitizen bool, b *kind.VerifiedNameBody) error {
	if !fromCitizen || org == "" {
		return fmt.Errorf("%w: a verified name goes from a citizen to an organisation, nowhere else", ErrUntrusted)
	}
	if b.OrgID != org {
		return fmt.Errorf("%w: a verified name shared with %s arrived in the conversation with %s", ErrUntrusted, b.OrgID, org)
	}
	if acct == c.account {
		return nil // this citizen's own other device: nothing to keep
	}
	if b.Withdrawn {
		c.profMu.Lock()
		defer c.profMu.Unlock()
		if err := c.store.Delete(nameVerifiedName(org, acct)); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	}
	a := &identity.VerifiedNameAttestation{Statement: b.Attestation.Statement, Signature: b.Attestation.Signature, Notary: b.Attestation.Notary}
	v, err := a.Verify(c.roots, acct, c.now())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	c.profMu.Lock()
	defer c.profMu.Unlock()
	if cur, err := storedVerifiedName(c.store, org, acct); err != nil {
		return err
	} else if cur != nil && cur.IssuedAt.After(v.IssuedAt) {
		return nil // an older one, replayed
	}
	return c.putJSON(nameVerifiedName(org, acct), a)
}

func storedVerifiedName(s Store, org, account string) (*identity.VerifiedName, error) {
	b, err := s.Get(nameVerifiedName(org, account))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var a identity.VerifiedNameAttestation
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	return identity.ParseVerifiedName(a.Statement)
}

// StoredVerifiedName returns the verified name account shared with org
// that this device accepted, nil if none or if it has expired at now: for
// a program that shows names without opening a Client.
func StoredVerifiedName(s Store, org, account string, now time.Time) (*identity.VerifiedName, error) {
	v, err := storedVerifiedName(s, org, account)
	if err != nil || v == nil || !now.Before(v.ExpiresAt) {
		return nil, err
	}
	return v, nil
}

// VerifiedName is StoredVerifiedName in this Client's Store, at its clock.
func (c *Client) VerifiedName(org, account string) (*identity.VerifiedName, error) {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	return StoredVerifiedName(c.store, org, account, c.now())
}
