package client

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/keys"
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

func (c *Client) claim(ctx context.Context, req messaging.ClaimRequest) (*Claim, error) {
	var resp messaging.ClaimResponse
	if err := c.do(ctx, http.MethodPost, "/v1/prekeys/claim", &req, &resp); err != nil {
		return nil, fmt.Errorf("messaging/client: claim: %w", err)
	}
	crl, err := c.revocationList(ctx)
	if err != nil {
		return nil, err
	}
	out := &Claim{Unpublished: resp.Unpublished}
	for i := range resp.Bundles {
		b, err := c.verify(&resp.Bundles[i], req, resp.OrgCertificate, crl)
		if err != nil {
			out.Refused = append(out.Refused, Refusal{DeviceID: resp.Bundles[i].Bundle.DeviceID, Err: err})
			continue
		}
		out.Bundles = append(out.Bundles, b)
	}
	return out, nil
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
func (c *Client) verify(cb *messaging.ClaimedBundle, req messaging.ClaimRequest, orgPEM string, crl []byte) (*Bundle, error) {
	dev := cb.Bundle.DeviceID
	now := c.now()
	di, err := c.checkDevice(derOf(cb.Certificate), dev, crl)
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
		b.Membership = &m
	}
	return b, nil
}

// checkDevice verifies a device certificate: chain to the CA, validity now,
// the expected device, and absence from the revocation list.
func (c *Client) checkDevice(der []byte, deviceID string, crl []byte) (ca.DeviceIdentity, error) {
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
	_, revoked, err := ca.CheckRevokedAt(crl, c.caCert, di.Serial, now)
	if err != nil {
		return di, untrusted(deviceID, "revocation list: %v", err)
	}
	if revoked {
		return di, untrusted(deviceID, "%v", ca.ErrRevoked)
	}
	return di, nil
}

// revocationList returns the CA's current CRL (DER), fetched from the
// directory at most every CRLMaxAge. Its signature and freshness are
// checked against the configured CA where it is used, so a server cannot
// forge or replay one.
func (c *Client) revocationList(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	if c.crl != nil && c.now().Sub(c.crlAt) < CRLMaxAge {
		defer c.mu.Unlock()
		return c.crl, nil
	}
	c.mu.Unlock()
	d, err := c.id.DirectoryCA(ctx)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: revocation list: %w", err)
	}
	blk, _ := pem.Decode([]byte(d.CRL))
	if blk == nil || blk.Type != "X509 CRL" {
		return nil, errors.New("messaging/client: revocation list: not a PEM X509 CRL")
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: revocation list: %w", err)
	}
	if err := crl.CheckSignatureFrom(c.caCert); err != nil {
		return nil, fmt.Errorf("messaging/client: revocation list: %w", err)
	}
	c.mu.Lock()
	c.crl, c.crlAt = blk.Bytes, c.now()
	c.mu.Unlock()
	return blk.Bytes, nil
}
