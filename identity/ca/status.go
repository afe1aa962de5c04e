package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"
)

// A certificate status is an OCSP response (RFC 6960) signed directly by
// the issuing CA key, about one serial. It is the per-certificate
// alternative to the revocation list: its size does not grow with the
// number of revocations, so a client can check a peer even when the CRL
// has become large. openssl checks it with
//
//	openssl ocsp -issuer ca.pem -cert device.pem -url https://kanal.example/v1/ocsp -CAfile ca.pem
//
// See docs/revocation.md.

// ErrBadStatus is wrapped by every error of CheckStatus and ParseStatusRequest.
var ErrBadStatus = errors.New("ca: bad certificate status")

// Status is what a verified status response says about one serial.
type Status struct {
	Serial     *big.Int
	Revoked    bool
	RevokedAt  time.Time // set when Revoked
	ThisUpdate time.Time
	NextUpdate time.Time
}

// SignStatus signs the status of serial, a certificate the CA issued:
// good unless revokedAt is set, valid from now until next.
func (c *CA) SignStatus(serial *big.Int, revokedAt *time.Time, now, next time.Time) ([]byte, error) {
	return signStatus(c.cert, c.key, serial, revokedAt, now, next)
}

// SignStatus signs the status of serial, a membership certificate the
// organisation issued, as (*CA).SignStatus does for device certificates.
func (o *OrgAuthority) SignStatus(serial *big.Int, revokedAt *time.Time, now, next time.Time) ([]byte, error) {
	return signStatus(o.cert, o.key, serial, revokedAt, now, next)
}

func signStatus(issuer *x509.Certificate, key crypto.Signer, serial *big.Int, revokedAt *time.Time, now, next time.Time) ([]byte, error) {
	if serial == nil || serial.Sign() <= 0 {
		return nil, fmt.Errorf("%w: serial", ErrBadStatus)
	}
	if now.IsZero() || !next.After(now) {
		return nil, fmt.Errorf("%w: next update must follow this update", ErrInvalidTime)
	}
	tmpl := ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: serial,
		ThisUpdate:   now.UTC().Truncate(time.Second),
		NextUpdate:   next.UTC().Truncate(time.Second),
	}
	if revokedAt != nil {
		tmpl.Status = ocsp.Revoked
		tmpl.RevokedAt = revokedAt.UTC().Truncate(time.Second)
		tmpl.RevocationReason = ocsp.Unspecified
	}
	// The issuer is its own responder: no delegated responder
	// certificate, so a verifier needs nothing but the CA certificate.
	der, err := ocsp.CreateResponse(issuer, issuer, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadStatus, err)
	}
	return der, nil
}

// StatusRequest returns the DER OCSP request for cert, issued by issuer
// (SHA-1 issuer hashes, as RFC 5019 clients and openssl send).
func StatusRequest(cert, issuer *x509.Certificate) ([]byte, error) {
	der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, fmt.Errorf("%w: request: %v", ErrBadStatus, err)
	}
	return der, nil
}

// ParseStatusRequest reads an OCSP request for one certificate of issuer
// and returns the serial it asks about. A request for another issuer's
// certificate is refused (ErrWrongIssuer).
func ParseStatusRequest(der []byte, issuer *x509.Certificate) (*big.Int, error) {
	if len(der) == 0 || len(der) > MaxStatusRequestSize {
		return nil, fmt.Errorf("%w: request size %d", ErrBadStatus, len(der))
	}
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: request: %v", ErrBadStatus, err)
	}
	if req.SerialNumber == nil || req.SerialNumber.Sign() <= 0 {
		return nil, fmt.Errorf("%w: request serial", ErrBadStatus)
	}
	// What the request must carry for this issuer, under the hash it chose.
	want, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: req.SerialNumber}, issuer,
		&ocsp.RequestOptions{Hash: req.HashAlgorithm})
	if err != nil {
		return nil, fmt.Errorf("%w: request hash: %v", ErrBadStatus, err)
	}
	w, err := ocsp.ParseRequest(want)
	if err != nil {
		return nil, fmt.Errorf("%w: request: %v", ErrBadStatus, err)
	}
	if !bytes.Equal(w.IssuerKeyHash, req.IssuerKeyHash) || !bytes.Equal(w.IssuerNameHash, req.IssuerNameHash) {
		return nil, fmt.Errorf("%w: request is for another issuer", ErrWrongIssuer)
	}
	return req.SerialNumber, nil
}

// CheckStatus verifies a status response offline: signed by issuer's key,
// about serial, and current at at (ThisUpdate no more than skew after at,
// at before NextUpdate). A response the responder could not give (an
// unsigned OCSP error such as "unauthorized", or status unknown) is an
// error, never "not revoked".
func CheckStatus(respDER []byte, issuer *x509.Certificate, serial *big.Int, at time.Time, skew time.Duration) (Status, error) {
	if issuer == nil || serial == nil || at.IsZero() {
		return Status{}, fmt.Errorf("%w: nil issuer, serial or time", ErrBadStatus)
	}
	if len(respDER) == 0 || len(respDER) > MaxStatusSize {
		return Status{}, fmt.Errorf("%w: size %d", ErrBadStatus, len(respDER))
	}
	r, err := ocsp.ParseResponse(respDER, issuer)
	if err != nil {
		return Status{}, fmt.Errorf("%w: %v", ErrBadStatus, err)
	}
	// ParseResponse verifies with the embedded responder certificate when
	// there is one, and only checks that the issuer signed that
	// certificate; kanal's responder is the issuer itself.
	if r.Certificate != nil {
		return Status{}, fmt.Errorf("%w: delegated responder certificates are not accepted", ErrBadStatus)
	}
	if r.SerialNumber == nil || r.SerialNumber.Cmp(serial) != 0 {
		return Status{}, fmt.Errorf("%w: response is about serial %v", ErrBadStatus, r.SerialNumber)
	}
	if r.NextUpdate.IsZero() || at.Add(skew).Before(r.ThisUpdate) || !at.Before(r.NextUpdate) {
		return Status{}, fmt.Errorf("%w: valid %s to %s, not at %s", ErrStaleCRL,
			r.ThisUpdate.Format(time.RFC3339), r.NextUpdate.Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	s := Status{Serial: r.SerialNumber, ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
	switch r.Status {
	case ocsp.Good:
	case ocsp.Revoked:
		s.Revoked, s.RevokedAt = true, r.RevokedAt
	default:
		return Status{}, fmt.Errorf("%w: status unknown", ErrBadStatus)
	}
	return s, nil
}

// UnauthorizedStatus is the unsigned OCSP answer for a serial the
// responder does not know. It costs no signature, so asking about made-up
// serials cannot make the server sign.
func UnauthorizedStatus() []byte { return bytes.Clone(ocsp.UnauthorizedErrorResponse) }
