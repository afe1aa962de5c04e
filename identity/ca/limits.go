package ca

import "time"

// Limits of the deployment PKI, in one place.
const (
	// RootLifetime is how long a root created by Create is valid.
	RootLifetime = 10 * 365 * 24 * time.Hour

	// DefaultDeviceLifetime is the device certificate lifetime used when a
	// DeviceRequest leaves NotAfter zero; MaxDeviceLifetime is the most a
	// caller may ask for. Short lives keep revocation lists small and make a
	// lost device fall out of the system on its own.
	DefaultDeviceLifetime = 30 * 24 * time.Hour
	MaxDeviceLifetime     = 90 * 24 * time.Hour

	// Membership certificates are as short-lived as device certificates:
	// a member who leaves must stop speaking for the organisation soon even
	// if a revocation list is missed.
	DefaultMembershipLifetime = 30 * 24 * time.Hour
	MaxMembershipLifetime     = 90 * 24 * time.Hour

	// Organisation certificates live longer: they are re-issued when an
	// operator re-verifies the organisation.
	DefaultOrgLifetime = 365 * 24 * time.Hour
	MaxOrgLifetime     = 2 * 365 * 24 * time.Hour

	// MaxIDLength bounds account, device, organisation ids and roles.
	MaxIDLength = 128
	// MaxNameLength bounds the CA name and organisation display names, in bytes.
	MaxNameLength = 200

	// MaxCertificateSize and MaxCSRSize bound DER input before parsing.
	MaxCertificateSize = 16 << 10
	MaxCSRSize         = 16 << 10
	// MaxCRLSize bounds a revocation list before parsing.
	MaxCRLSize = 16 << 20
	// MaxStatusSize bounds a certificate status (OCSP) response, and
	// MaxStatusRequestSize a request, before parsing. A response is a few
	// hundred bytes whatever the number of revocations.
	MaxStatusSize        = 4 << 10
	MaxStatusRequestSize = 1 << 10
)
