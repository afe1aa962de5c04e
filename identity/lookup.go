package identity

import (
	"context"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/kanal-server/kanal/internal/db"
)

// Lookups for other domains: the active devices behind an account or an
// organisation, with the certificates a client verifies. Domains reach them
// through an interface of their own, wired in cmd/kanald, so that no one
// but identity reads identity's tables.

// Errors the lookups return.
var (
	ErrUnknownDevice = errors.New("identity: unknown or revoked device")
	ErrUnknownOrg    = errors.New("identity: unknown or unverified organisation")
)

// ActiveDevice is a device that is not revoked, with DER certificates.
type ActiveDevice struct {
	DeviceID    string
	AccountID   string
	Certificate []byte // device certificate, issued by the deployment CA
	Membership  []byte // membership certificate, for an organisation's agents
}

// Device returns one active device, or an error wrapping ErrUnknownDevice.
func (s *Service) Device(ctx context.Context, id string) (ActiveDevice, error) {
	ds, err := s.activeDevices(ctx, `SELECT id, account_id, cert_pem, '' FROM identity_devices WHERE id = $1 AND revoked_at IS NULL`, id)
	if err == nil && len(ds) == 0 {
		err = fmt.Errorf("device %s: %w", id, ErrUnknownDevice)
	}
	if err != nil {
		return ActiveDevice{}, err
	}
	return ds[0], nil
}

// AccountDevices returns the active devices of an account (none for an
// unknown account).
func (s *Service) AccountDevices(ctx context.Context, account string) ([]ActiveDevice, error) {
	return s.activeDevices(ctx, `SELECT id, account_id, cert_pem, '' FROM identity_devices WHERE account_id = $1 AND revoked_at IS NULL ORDER BY id`, account)
}

// MaxDevicesOfAccounts bounds the accounts of one DevicesOf call: a
// broadcast asks for its followers' devices in parts of this many.
const MaxDevicesOfAccounts = 100_000

// devicesOfChunk is how many accounts one SQLite statement of DevicesOf
// names (each a parameter); PostgreSQL takes them all as one array.
const devicesOfChunk = 1000

// DevicesOf returns the active devices of the accounts — ids and accounts
// only, without certificates, in no particular order. On PostgreSQL it is
// one query, the accounts as one array parameter: a broadcast's 50,000
// followers in one round trip (0.2–0.4 s) rather than one per part. On
// SQLite, in process, it reads in parts of devicesOfChunk accounts.
func (s *Service) DevicesOf(ctx context.Context, accounts []string) ([]ActiveDevice, error) {
	if len(accounts) == 0 {
		return nil, nil
	}
	if len(accounts) > MaxDevicesOfAccounts {
		return nil, fmt.Errorf("identity.devices: %d accounts, at most %d", len(accounts), MaxDevicesOfAccounts)
	}
	if s.db.Dialect() == db.Postgres {
		return s.devicesOf(ctx, `SELECT id, account_id FROM identity_devices
			WHERE account_id = ANY($1) AND revoked_at IS NULL`, accounts)
	}
	var out []ActiveDevice
	for len(accounts) > 0 {
		part := accounts[:min(len(accounts), devicesOfChunk)]
		accounts = accounts[len(part):]
		in, args := db.In(part)
		ds, err := s.devicesOf(ctx, `SELECT id, account_id FROM identity_devices
			WHERE account_id IN (`+in+`) AND revoked_at IS NULL`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

func (s *Service) devicesOf(ctx context.Context, q string, args ...any) ([]ActiveDevice, error) {
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("identity.devices: %w", err)
	}
	defer rows.Close()
	var out []ActiveDevice
	for rows.Next() {
		var d ActiveDevice
		if err := rows.Scan(&d.DeviceID, &d.AccountID); err != nil {
			return nil, fmt.Errorf("identity.devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("identity.devices: %w", err)
	}
	return out, nil
}

// OrgAgents returns a verified organisation's certificate and every
// member's active device with its newest live membership certificate; every
// role speaks for the organisation.
func (s *Service) OrgAgents(ctx context.Context, org string) ([]byte, []ActiveDevice, error) {
	var certPEM string
	err := s.db.QueryRow(ctx, `SELECT cert_pem FROM identity_orgs WHERE id = $1 AND verified_at IS NOT NULL`, org).Scan(&certPEM)
	if errors.Is(err, sql.ErrNoRows) || err == nil && certPEM == "" {
		return nil, nil, fmt.Errorf("organisation %s: %w", org, ErrUnknownOrg)
	} else if err != nil {
		return nil, nil, err
	}
	ds, err := s.activeDevices(ctx, `SELECT d.id, d.account_id, d.cert_pem, ms.cert_pem FROM identity_members m
		JOIN identity_memberships ms ON ms.org_id = m.org_id AND ms.account_id = m.account_id AND ms.revoked_at IS NULL
		JOIN identity_devices d ON d.id = ms.device_id AND d.revoked_at IS NULL
		WHERE m.org_id = $1 ORDER BY d.id, ms.not_after DESC`, org)
	if err != nil {
		return nil, nil, err
	}
	out := ds[:0]
	for _, d := range ds {
		if len(out) == 0 || out[len(out)-1].DeviceID != d.DeviceID {
			out = append(out, d)
		}
	}
	return derOf(certPEM), out, nil
}

func (s *Service) activeDevices(ctx context.Context, q string, arg string) ([]ActiveDevice, error) {
	rows, err := s.db.Query(ctx, q, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ActiveDevice
	for rows.Next() {
		var d ActiveDevice
		var cert, membership string
		if err := rows.Scan(&d.DeviceID, &d.AccountID, &cert, &membership); err != nil {
			return nil, err
		}
		d.Certificate, d.Membership = derOf(cert), derOf(membership)
		out = append(out, d)
	}
	return out, rows.Err()
}

// derOf returns the DER bytes of a PEM certificate, nil for none.
func derOf(s string) []byte {
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return b.Bytes
	}
	return nil
}

// OrgName returns a verified organisation's name, as its certificate
// states it; an error if the organisation is unknown or unverified.
func (s *Service) OrgName(ctx context.Context, orgID string) (string, error) {
	o, err := s.loadOrgRead(ctx, orgID)
	if err != nil {
		return "", err
	}
	if !o.verified.Valid {
		return "", fmt.Errorf("identity: organisation %s is not verified", orgID)
	}
	return o.name, nil
}
