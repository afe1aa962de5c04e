package client

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging"
)

// Bundle is a claimed prekey bundle that passed every check: its device
// certificate chains to the CA and is not revoked, the device key bound the
// identity key, and the identity key signed the prekeys.
type Bundle struct {
	Device     ca.DeviceIdentity // from the verified device certificate
	Membership *ca.Membership    // for an organisation's agents
	Prekeys    keys.PrekeyBundle
}

// Refusal is a bundle the server sent that the client will not use.
type Refusal struct {
	DeviceID string
	Err      error // wraps ErrUntrusted
}

// Claim is the outcome of claiming an account's or organisation's bundles.
type Claim struct {
	Bundles     []*Bundle
	Refused     []Refusal
	Unpublished []string // active devices without published keys
}

// ClaimAccount claims a bundle for every other active device of an account
// and verifies each. Refused bundles are reported, never returned.
func (c *Client) ClaimAccount(ctx context.Context, accountID string) (*Claim, error) {
	return c.claim(ctx, messaging.ClaimRequest{AccountID: accountID})
}

// ClaimOrg claims a bundle for every agent device of an organisation and
// verifies each, membership included.
func (c *Client) ClaimOrg(ctx context.Context, orgID string) (*Claim, error) {
	return c.claim(ctx, messaging.ClaimRequest{OrgID: orgID})
}

// claim claims every page of req's devices (messaging.MaxClaimDevices
// a page) and verifies each bundle.
func (c *Client) claim(ctx context.Context, req messaging.ClaimRequest) (*Claim, error) {
	status := func(serial *big.Int) error { return c.deviceStatus(ctx, serial) }
	out := &Claim{}
	for {
		var resp messaging.ClaimResponse
		if err := c.do(ctx, http.MethodPost, "/v1/prekeys/claim", &req, &resp); err != nil {
			return nil, fmt.Errorf("messaging/client: claim: %w", err)
		}
		out.Unpublished = append(out.Unpublished, resp.Unpublished...)
		for i := range resp.Bundles {
			b, err := c.verify(ctx, &resp.Bundles[i], req, resp.OrgCertificate, status)
			if err != nil {
				out.Refused = append(out.Refused, Refusal{DeviceID: resp.Bundles[i].Bundle.DeviceID, Err: err})
				continue
			}
			out.Bundles = append(out.Bundles, b)
		}
		if resp.Next == "" {
			return out, nil
		}
		// Pages go forward in device id order; a server that answers a
		// page with the same or an earlier cursor would loop forever.
		if resp.Next <= req.After || len(resp.Bundles)+len(resp.Unpublished) == 0 {
			return nil, fmt.Errorf("messaging/client: claim: the server's next page %q does not follow %q", resp.Next, req.After)
		}
		req.After = resp.Next
	}
}

func untrusted(device, format string, args ...any) error {
	return fmt.Errorf("%w: device %q: %s", ErrUntrusted, device, fmt.Sprintf(format, args...))
}

func derOf(s string) []byte {
	if b, _ := pem.Decode([]byte(s)); b != nil && b.Type == "CERTIFICATE" {
		return b.Bytes
	}
	return nil
}

// verify checks one claimed bundle, without trusting the server for
// anything: see the package documentation for the rules.
func (c *Client) verify(ctx context.Context, cb *messaging.ClaimedBundle, req messaging.ClaimRequest, orgPEM string, status statusFunc) (*Bundle, error) {
	dev := cb.Bundle.DeviceID
	now := c.now()
	di, err := c.checkDevice(derOf(cb.Certificate), dev, status)
	if err != nil {
		return nil, err
	}
	if req.AccountID != "" && di.AccountID != req.AccountID {
		return nil, untrusted(dev, "certificate is for account %q, not %q", di.AccountID, req.AccountID)
	}
	binding, err := base64.RawURLEncoding.DecodeString(cb.IdentityBinding)
	if err != nil {
		return nil, untrusted(dev, "identity binding is not base64url")
	}
	if err := keys.VerifyIdentity(di.PublicKey, cb.Bundle.Identity, dev, binding); err != nil {
		return nil, untrusted(dev, "identity key not bound to the device key: %v", err)
	}
	if err := cb.Bundle.Verify(); err != nil {
		return nil, untrusted(dev, "bundle signatures: %v", err)
	}
	idBin, err := cb.Bundle.Identity.MarshalBinary()
	if err != nil {
		return nil, untrusted(dev, "identity key: %v", err)
	}
	if err := c.logged(ctx, cb.Log, transparency.Entry{Kind: transparency.KindIdentityKey, Account: di.AccountID, Device: dev, Key: idBin}, derOf(cb.Certificate)); err != nil {
		return nil, notLogged(dev, "identity key", err)
	}
	b := &Bundle{Device: di, Prekeys: cb.Bundle}
	if req.OrgID != "" {
		m, err := ca.VerifyMembership(derOf(cb.MembershipCertificate), derOf(orgPEM), c.roots, now)
		if err != nil {
			return nil, untrusted(dev, "membership: %v", err)
		}
		if err := ca.CheckSameDevice(di, m); err != nil {
			return nil, untrusted(dev, "membership: %v", err)
		}
		if m.OrgID != req.OrgID {
			return nil, untrusted(dev, "membership of organisation %q, not %q", m.OrgID, req.OrgID)
		}
		if err := c.logged(ctx, cb.MembershipLog, membershipEntry(m), derOf(cb.MembershipCertificate)); err != nil {
			return nil, notLogged(dev, "membership", err)
		}
		b.Membership = &m
	}
	return b, nil
}

// statusFunc reports a device certificate's revocation: nil when the
// CA's signed status says it is not revoked.
type statusFunc func(serial *big.Int) error

// checkDevice verifies a device certificate: chain to the CA, validity now,
// the expected device, and its signed status (not revoked).
func (c *Client) checkDevice(der []byte, deviceID string, status statusFunc) (ca.DeviceIdentity, error) {
	if der == nil {
		return ca.DeviceIdentity{}, untrusted(deviceID, "no device certificate")
	}
	now := c.now()
	di, err := ca.VerifyDevice(der, c.roots, now)
	if err != nil {
		return di, untrusted(deviceID, "device certificate: %v", err)
	}
	if di.DeviceID != deviceID {
		return di, untrusted(deviceID, "certificate is for device %q", di.DeviceID)
	}
	if err := status(di.Serial); err != nil {
		return di, untrusted(deviceID, "%v", err)
	}
	return di, nil
}

// statusOf returns the revocation state of the certificate in der, for
// a check made later without network access (under c.mu). A certificate
// that does not parse gets a nil answer: checkDevice refuses it anyway.
func (c *Client) statusOf(ctx context.Context, der []byte) statusFunc {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return func(*big.Int) error { return nil }
	}
	st := c.deviceStatus(ctx, cert.SerialNumber)
	return func(serial *big.Int) error {
		if serial.Cmp(cert.SerialNumber) != 0 {
			return errors.New("certificate status fetched for another certificate")
		}
		return st
	}
}

// deviceStatus asks the CA's responder whether the device certificate
// with serial is revoked, reusing a verified answer for up to
// StatusMaxAge (never past its next update). The answer is one signed
// response per certificate, whatever the number of revocations, and is
// checked against the configured CA: the server cannot forge one, and can
// replay an old one only until its next update.
func (c *Client) deviceStatus(ctx context.Context, serial *big.Int) error {
	key := serial.String()
	now := c.now()
	c.statusMu.Lock()
	e, ok := c.statuses[key]
	c.statusMu.Unlock()
	if !ok || !now.Before(e.until) {
		st, _, err := c.id.CertificateStatus(ctx, &x509.Certificate{SerialNumber: serial}, c.caCert, now)
		if err != nil {
			return fmt.Errorf("messaging/client: %w", err)
		}
		e = statusEntry{revoked: st.Revoked, until: now.Add(StatusMaxAge)}
		if st.NextUpdate.Before(e.until) {
			e.until = st.NextUpdate
		}
		c.statusMu.Lock()
		if c.statuses == nil || len(c.statuses) >= maxCachedStatuses {
			c.statuses = map[string]statusEntry{}
		}
		c.statuses[key] = e
		c.statusMu.Unlock()
	}
	if e.revoked {
		return ca.ErrRevoked
	}
	return nil
}

type statusEntry struct {
	revoked bool
	until   time.Time
}

// membershipEntry is the log entry a membership certificate must have.
func membershipEntry(m ca.Membership) transparency.Entry {
	return transparency.Entry{Kind: transparency.KindMembership, Org: m.OrgID, Account: m.AccountID, Device: m.DeviceID, Role: m.Role}
}
