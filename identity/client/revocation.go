package client

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/apiclient"
)

// StatusSkew is how far a status response's thisUpdate may be ahead of
// the client's clock.
const StatusSkew = 2 * time.Minute

// CertificateStatus asks the deployment's responder (POST /v1/ocsp) about
// cert, issued by issuer, and returns the answer checked with
// ca.CheckStatus at now — signed by issuer, about cert's serial, current —
// together with its DER bytes, which can be stapled into a signed
// document. Its size does not depend on how many certificates were
// revoked. A responder that does not know the certificate is an error.
func (c *Client) CertificateStatus(ctx context.Context, cert, issuer *x509.Certificate, now time.Time) (ca.Status, []byte, error) {
	reqDER, err := ca.StatusRequest(cert, issuer)
	if err != nil {
		return ca.Status{}, nil, err
	}
	der, err := c.raw(ctx, http.MethodPost, "/v1/ocsp", "application/ocsp-request", reqDER, "application/ocsp-response", ca.MaxStatusSize)
	if err != nil {
		return ca.Status{}, nil, fmt.Errorf("certificate status: %w", err)
	}
	st, err := ca.CheckStatus(der, issuer, cert.SerialNumber, now, StatusSkew)
	if err != nil {
		return ca.Status{}, nil, fmt.Errorf("certificate status: %w", err)
	}
	return st, der, nil
}

// MembershipStatus asks the organisation's responder (POST
// /v1/directory/orgs/{id}/ocsp) about a membership certificate it issued,
// and returns the answer checked against orgCert, the organisation
// certificate that issued it (and signs the answer), at now.
func (c *Client) MembershipStatus(ctx context.Context, orgID string, membership, orgCert *x509.Certificate, now time.Time) (ca.Status, []byte, error) {
	seg, err := segment(orgID)
	if err != nil {
		return ca.Status{}, nil, err
	}
	reqDER, err := ca.StatusRequest(membership, orgCert)
	if err != nil {
		return ca.Status{}, nil, err
	}
	der, err := c.raw(ctx, http.MethodPost, "/v1/directory/orgs/"+seg+"/ocsp", "application/ocsp-request", reqDER, "application/ocsp-response", ca.MaxStatusSize)
	if err != nil {
		return ca.Status{}, nil, fmt.Errorf("membership status: %w", err)
	}
	st, err := ca.CheckStatus(der, orgCert, membership.SerialNumber, now, StatusSkew)
	if err != nil {
		return ca.Status{}, nil, fmt.Errorf("membership status: %w", err)
	}
	return st, der, nil
}

// CRL returns the deployment CA's current revocation list of device
// certificates (DER), after checking that issuer signed it. It can be
// large; clients that check one peer use CertificateStatus.
func (c *Client) CRL(ctx context.Context, issuer *x509.Certificate) ([]byte, error) {
	return c.crl(ctx, "/v1/directory/crl", issuer)
}

// OrgCRL returns the revocation list of an organisation's membership
// certificates (DER), after checking that orgCert — the organisation
// certificate, which issues them — signed it. With a nil orgCert the list
// is only parsed, and the caller must check its signature.
func (c *Client) OrgCRL(ctx context.Context, orgID string, orgCert *x509.Certificate) ([]byte, error) {
	seg, err := segment(orgID)
	if err != nil {
		return nil, err
	}
	return c.crl(ctx, "/v1/directory/orgs/"+seg+"/crl", orgCert)
}

func (c *Client) crl(ctx context.Context, path string, issuer *x509.Certificate) ([]byte, error) {
	der, err := c.raw(ctx, http.MethodGet, path, "", nil, "application/pkix-crl", ca.MaxCRLSize)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w: %v", ErrBadResponse, err)
	}
	if issuer == nil {
		return der, nil
	}
	if err := list.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("revocation list: %w: not signed by %s: %v", ErrBadResponse, issuer.Subject, err)
	}
	return der, nil
}

// raw sends body (if any) of type ct and reads a binary answer of type
// accept, at most max bytes.
func (c *Client) raw(ctx context.Context, method, path, ct string, body []byte, accept string, max int) ([]byte, error) {
	if err := apiclient.CheckBase(c.base); err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", accept+", application/problem+json")
	resp, err := apiclient.Do(c.hc, req, c.base)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readProblem(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != accept {
		return nil, fmt.Errorf("%w: content type %q, want %s", ErrBadResponse, resp.Header.Get("Content-Type"), accept)
	}
	b, err := apiclient.ReadCapped(resp.Body, max)
	if errors.Is(err, apiclient.ErrTooLarge) {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrBadResponse, max)
	}
	return b, err
}
