package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// Revoked is one entry of a revocation list.
type Revoked struct {
	Serial *big.Int
	At     time.Time
}

// RevocationList signs a DER CRL of certificates the CA issued. number must
// increase with every list the CA publishes; clients use the list until
// next. Device certificates are short-lived, so the list only needs the
// revoked certificates that have not yet expired.
func (c *CA) RevocationList(entries []Revoked, number *big.Int, now, next time.Time) ([]byte, error) {
	return revocationList(c.cert, c.key, entries, number, now, next)
}

func revocationList(issuer *x509.Certificate, key crypto.Signer, entries []Revoked, number *big.Int, now, next time.Time) ([]byte, error) {
	if number == nil || number.Sign() < 0 {
		return nil, fmt.Errorf("%w: CRL number must be non-negative", ErrBadCRL)
	}
	if now.IsZero() || !next.After(now) {
		return nil, fmt.Errorf("%w: next update must follow this update", ErrInvalidTime)
	}
	tmpl := &x509.RevocationList{
		Number:     number,
		ThisUpdate: now,
		NextUpdate: next,
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if e.Serial == nil || e.Serial.Sign() <= 0 || e.At.IsZero() {
			return nil, fmt.Errorf("%w: bad entry", ErrBadCRL)
		}
		if seen[e.Serial.String()] {
			return nil, fmt.Errorf("%w: serial %s listed twice", ErrBadCRL, e.Serial)
		}
		seen[e.Serial.String()] = true
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   e.Serial,
			RevocationTime: e.At,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCRL, err)
	}
	return der, nil
}

// CheckRevoked reports whether serial is on the CRL, after verifying that
// issuer signed the CRL. It does not check the CRL's freshness; clients that
// know the time should use CheckRevokedAt, so that a replayed old list
// cannot hide a recent revocation.
func CheckRevoked(crlDER []byte, issuer *x509.Certificate, serial *big.Int) (revokedAt time.Time, revoked bool, err error) {
	return checkRevoked(crlDER, issuer, serial, time.Time{})
}

// CheckRevokedAt is CheckRevoked that also refuses a CRL that is not yet or
// no longer current at at (ErrStaleCRL).
func CheckRevokedAt(crlDER []byte, issuer *x509.Certificate, serial *big.Int, at time.Time) (revokedAt time.Time, revoked bool, err error) {
	if at.IsZero() {
		return time.Time{}, false, fmt.Errorf("%w: zero time", ErrInvalidTime)
	}
	return checkRevoked(crlDER, issuer, serial, at)
}

func checkRevoked(crlDER []byte, issuer *x509.Certificate, serial *big.Int, at time.Time) (time.Time, bool, error) {
	if issuer == nil || serial == nil {
		return time.Time{}, false, fmt.Errorf("%w: nil issuer or serial", ErrBadCRL)
	}
	if len(crlDER) == 0 || len(crlDER) > MaxCRLSize {
		return time.Time{}, false, fmt.Errorf("%w: size %d", ErrBadCRL, len(crlDER))
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%w: %v", ErrBadCRL, err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return time.Time{}, false, fmt.Errorf("%w: signature: %v", ErrBadCRL, err)
	}
	if !at.IsZero() && (at.Before(crl.ThisUpdate) || crl.NextUpdate.IsZero() || !at.Before(crl.NextUpdate)) {
		return time.Time{}, false, fmt.Errorf("%w: valid %v to %v", ErrStaleCRL, crl.ThisUpdate, crl.NextUpdate)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(serial) == 0 {
			return e.RevocationTime, true, nil
		}
	}
	return time.Time{}, false, nil
}
