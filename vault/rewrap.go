package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// versionKey names one version of one document.
type versionKey struct {
	doc     string
	version int
}

// PendingRewraps lists the versions of the actor's documents whose key
// an active device of the account lacks and the calling device holds: a
// device enrolled after they were stored. The calling device unwraps each
// and wraps it again to the new device (AddKeys); the server never sees
// the key.
func (s *Service) PendingRewraps(ctx context.Context, a Actor) (*RewrapList, error) {
	active, err := s.dir.AccountDevices(ctx, a.AccountID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT k.document_id, k.version, k.device_id, k.wrapped
		FROM vault_keys k JOIN vault_versions v ON v.document_id = k.document_id AND v.version = k.version
		WHERE v.account_id = $1 ORDER BY k.document_id, k.version`, a.AccountID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	has := map[versionKey]map[string]bool{}
	mine := map[versionKey][]byte{}
	var order []versionKey
	for rows.Next() {
		var k versionKey
		var dev string
		var wrapped []byte
		if err := rows.Scan(&k.doc, &k.version, &dev, &wrapped); err != nil {
			return nil, err
		}
		if has[k] == nil {
			has[k] = map[string]bool{}
			order = append(order, k)
		}
		has[k][dev] = true
		if dev == a.DeviceID {
			mine[k] = wrapped
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := &RewrapList{Pending: []Rewrap{}}
	for _, k := range order {
		key, ok := mine[k]
		if !ok {
			continue
		}
		for _, dev := range active {
			if !has[k][dev] && len(out.Pending) < MaxList {
				out.Pending = append(out.Pending, Rewrap{DocumentID: k.doc, Version: k.version, Device: dev, Key: key})
			}
		}
	}
	return out, nil
}

// AddKeys stores keys wrapped again to devices of the actor's account.
// Each must name a version of one of the account's documents and an
// active device of the account; a device that already has the key keeps
// the one it has. All or nothing.
func (s *Service) AddKeys(ctx context.Context, a Actor, in AddKeysRequest) (*AddKeysResponse, error) {
	if len(in.Keys) == 0 || len(in.Keys) > MaxList {
		return nil, invalid("keys must hold 1 to %d keys", MaxList)
	}
	ks := make([]WrappedKey, len(in.Keys))
	for i, k := range in.Keys {
		if len(k.Wrapped) == 0 || len(k.Wrapped) > MaxWrapped {
			return nil, invalid("the key for %s must be 1 to %d bytes", k.Device, MaxWrapped)
		}
		ks[i] = WrappedKey{Device: k.Device, Wrapped: k.Wrapped}
	}
	if err := s.checkDevices(ctx, a.AccountID, ks); err != nil {
		return nil, err
	}
	now := s.now().Unix()
	out := &AddKeysResponse{}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		out.Added = 0
		for _, k := range in.Keys {
			var owner string
			err := tx.QueryRowContext(ctx, `SELECT account_id FROM vault_versions WHERE document_id = $1 AND version = $2`, k.DocumentID, k.Version).Scan(&owner)
			if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != a.AccountID) {
				return fmt.Errorf("%w: document %s version %d", ErrNotFound, k.DocumentID, k.Version)
			} else if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO vault_keys (document_id, version, device_id, wrapped, wrapped_by, created_at)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, k.DocumentID, k.Version, k.Device, k.Wrapped, a.DeviceID, now)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			out.Added += int(n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteDeviceKeys crypto-shreds the keys wrapped to a device: kanald runs
// it in the transaction that revokes the device.
func DeleteDeviceKeys(ctx context.Context, tx *sql.Tx, device string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM vault_keys WHERE device_id = $1`, device)
	return err
}
