package ca

import "errors"

// Sentinel errors that callers branch on. Errors returned by this package wrap
// one of these with %w and add detail.
var (
	ErrBadCSR          = errors.New("ca: bad CSR")
	ErrUnsupportedKey  = errors.New("ca: unsupported key type")
	ErrInvalidID       = errors.New("ca: invalid id")
	ErrInvalidName     = errors.New("ca: invalid name")
	ErrInvalidLevel    = errors.New("ca: invalid level of assurance")
	ErrInvalidOrgKind  = errors.New("ca: invalid organisation kind")
	ErrInvalidRole     = errors.New("ca: invalid role")
	ErrInvalidLifetime = errors.New("ca: invalid lifetime")
	ErrInvalidTime     = errors.New("ca: invalid time")
	ErrMalformed       = errors.New("ca: malformed certificate")
	ErrUntrusted       = errors.New("ca: certificate not trusted")
	ErrExpired         = errors.New("ca: certificate expired or not yet valid")
	ErrWrongIssuer     = errors.New("ca: certificate not issued by this organisation")
	ErrMismatch        = errors.New("ca: device and membership certificates name different devices")
	ErrBadCRL          = errors.New("ca: bad revocation list")
	ErrStaleCRL        = errors.New("ca: revocation list expired or not yet valid")
	ErrKeyPermissions  = errors.New("ca: key file is accessible by group or others")
	ErrBadCAKey        = errors.New("ca: bad CA certificate or key")

	// ErrRevoked is not returned by CheckRevoked, which reports revocation as
	// a result; it is the error callers wrap when they refuse a revoked
	// certificate, so that all layers branch on one value.
	ErrRevoked = errors.New("ca: certificate revoked")
)
