package identity

import (
	"context"
	"database/sql"
	"errors"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/keys/transparency"
)

// appendLog appends entries to the transparency log inside tx, the
// transaction that writes the bindings they record.
func (s *Service) appendLog(ctx context.Context, tx *sql.Tx, es ...transparency.Entry) error {
	if s.tlog == nil || len(es) == 0 {
		return nil
	}
	_, err := s.tlog.Append(ctx, tx, es...)
	return err
}

// deviceEntry records a device and its certificate (kind device or
// device-revoked).
func deviceEntry(kind transparency.Kind, account, device string, certDER []byte, now int64) transparency.Entry {
	return transparency.Entry{Kind: kind, Account: account, Device: device, Cert: transparency.CertFingerprint(certDER), Time: now}
}

// endedMemberships returns a membership-revoked entry for each active
// membership certificate that query (selecting org_id, account_id,
// device_id, cert_pem of identity_memberships) finds, before the caller
// revokes them in tx.
func endedMemberships(ctx context.Context, tx *sql.Tx, now int64, query string, args ...any) ([]transparency.Entry, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []transparency.Entry
	for rows.Next() {
		var org, account, device, pemText string
		if err := rows.Scan(&org, &account, &device, &pemText); err != nil {
			return nil, err
		}
		cert, err := parsePEMCert(pemText)
		if err != nil {
			return nil, err
		}
		out = append(out, transparency.Entry{Kind: transparency.KindMembershipRevoked, Org: org, Account: account, Device: device,
			Cert: transparency.CertFingerprint(cert.Raw), Time: now})
	}
	return out, rows.Err()
}

// attach finds the entry of kind about device with the certificate in
// pemText (org for a membership) and proves it against the newest
// checkpoint. Without a log, or without an entry, it returns nil: the
// client then refuses the binding.
func (s *Service) attach(ctx context.Context, kind transparency.Kind, device, pemText, org string) (*transparency.Attachment, error) {
	if s.tlog == nil {
		return nil, nil
	}
	cert, err := parsePEMCert(pemText)
	if err != nil {
		return nil, err
	}
	a, err := s.tlog.Attach(ctx, kind, device, transparency.CertFingerprint(cert.Raw), org)
	if errors.Is(err, translog.ErrNotFound) {
		return nil, nil
	}
	return a, err
}
