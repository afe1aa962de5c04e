package messaging

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/keys/transparency"
)

// logIdentity appends an identity-key entry for the device's key idBin
// under its certificate certDER, inside tx, unless the newest such entry
// already names this key.
func (s *Service) logIdentity(ctx context.Context, tx *sql.Tx, accountID, deviceID string, certDER, idBin []byte) error {
	if s.tlog == nil {
		return nil
	}
	fp := transparency.CertFingerprint(certDER)
	_, data, err := s.tlog.FindTx(ctx, tx, transparency.KindIdentityKey, deviceID, fp, "")
	switch {
	case errors.Is(err, translog.ErrNotFound):
	case err != nil:
		return err
	default:
		// The entry was found by this device and certificate, which names
		// the account: only the key is left to compare.
		if e, perr := transparency.ParseEntry(data); perr == nil && bytes.Equal(e.Key, idBin) {
			return nil
		}
	}
	_, err = s.tlog.Append(ctx, tx, transparency.Entry{Kind: transparency.KindIdentityKey, Account: accountID, Device: deviceID,
		Cert: fp, Key: idBin, Time: s.now().Unix()})
	return err
}

// LogRenewal has the shape of identity's RenewalHook: registered there, it
// logs the device's published identity key again under the device's new
// certificate, in the renewing transaction, so that its bundle keeps an
// entry that matches what a client checks.
func (s *Service) LogRenewal(ctx context.Context, tx *sql.Tx, accountID, deviceID string, certDER []byte) error {
	var idBin []byte
	err := tx.QueryRowContext(ctx, `SELECT identity_key FROM messaging_identities WHERE device_id = $1`, deviceID).Scan(&idBin)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return err
	}
	return s.logIdentity(ctx, tx, accountID, deviceID, certDER, idBin)
}

// attachProofs gives each claimed bundle the proof of its identity-key
// entry and, for an organisation's agent, of its membership entry. A
// bundle whose binding has no matching entry goes out without one, and
// the client refuses it.
func (s *Service) attachProofs(ctx context.Context, orgID string, bundles []ClaimedBundle) error {
	if s.tlog == nil {
		return nil
	}
	for i := range bundles {
		b := &bundles[i]
		certDER, err := pemDER(b.Certificate)
		if err != nil {
			return err
		}
		idx, data, err := s.tlog.Find(ctx, transparency.KindIdentityKey, b.Bundle.DeviceID, transparency.CertFingerprint(certDER), "")
		if errors.Is(err, translog.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if e, perr := transparency.ParseEntry(data); perr != nil || !bytes.Equal(e.Key, bin(b.Bundle.Identity)) {
			continue
		}
		if b.Log, err = s.tlog.Prove(ctx, idx, data); err != nil {
			return err
		}
		if orgID == "" || b.MembershipCertificate == "" {
			continue
		}
		memDER, err := pemDER(b.MembershipCertificate)
		if err != nil {
			return err
		}
		b.MembershipLog, err = s.tlog.Attach(ctx, transparency.KindMembership, b.Bundle.DeviceID, transparency.CertFingerprint(memDER), orgID)
		if errors.Is(err, translog.ErrNotFound) {
			b.MembershipLog = nil
		} else if err != nil {
			return err
		}
	}
	return nil
}

func pemDER(s string) ([]byte, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, fmt.Errorf("messaging: stored certificate is not PEM")
	}
	return b.Bytes, nil
}
