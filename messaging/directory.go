package messaging

import (
	"context"
	"errors"
	"net/http"
)

// Directory is what the prekey directory needs from identity: which devices
// are active, and their certificates. cmd/kanald wires an adapter over the
// identity service. A revoked device is never returned, which is what keeps
// its bundle from being served even before its prekeys are deleted.
type Directory interface {
	// Device returns an active device with its certificate, or an error
	// wrapping ErrUnknownDevice when the device does not exist or is
	// revoked.
	Device(ctx context.Context, deviceID string) (Device, error)

	// AccountDevices returns the active devices of an account, none for an
	// unknown account.
	AccountDevices(ctx context.Context, accountID string) ([]Device, error)

	// DevicesOf returns the active devices of the accounts, without
	// certificates: what a send needs to check its recipient device set.
	DevicesOf(ctx context.Context, accountIDs []string) ([]Device, error)

	// OrgAgents returns the DER certificate of a verified organisation and
	// the active devices of its members with a role of agent or above,
	// each with its membership certificate. An unknown or unverified
	// organisation is an error wrapping ErrUnknownOrg.
	OrgAgents(ctx context.Context, orgID string) (orgCert []byte, agents []Device, err error)
}

// Device is an active device as the directory knows it.
type Device struct {
	DeviceID  string
	AccountID string
	// Certificate is the DER device certificate issued by the deployment
	// CA; its public key verifies the identity binding.
	Certificate []byte
	// Membership is the DER membership certificate, for an organisation's
	// agents only.
	Membership []byte
}

// Caller is the authenticated device behind a request.
type Caller struct {
	AccountID string
	DeviceID  string
}

// Auth is what the prekey routes need from identity's middleware: a wrapper
// that lets only requests with a live session of an active device through,
// and a way to read that device from the request context. cmd/kanald wires
// identity.Service.RequireSession and identity.FromContext.
type Auth struct {
	Require func(h http.Handler) http.Handler
	Caller  func(ctx context.Context) (Caller, bool)
}

// Errors that Directory implementations wrap.
var (
	ErrUnknownDevice = errors.New("messaging: unknown or revoked device")
	ErrUnknownOrg    = errors.New("messaging: unknown or unverified organisation")
)
