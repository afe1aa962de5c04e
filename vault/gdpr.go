package vault

import (
	"context"
	"database/sql"
)

// AccountExport is what the vault holds about an account, for the
// account's copy of its data (GDPR Art. 15): its documents with every
// version's metadata as stored (sizes, times, the encrypted metadata and
// the keys wrapped to its devices, by device), and the shares it made or
// received. The ciphertexts themselves are fetched and decrypted on the
// device (Content), not here.
type AccountExport struct {
	Documents      []ExportDocument `json:"documents"`
	SharesMade     []Share          `json:"shares_made"`
	SharesReceived []Share          `json:"shares_received"`
	Usage          Usage            `json:"usage"`
}

// ExportDocument is one document in an export.
type ExportDocument struct {
	Document
	Keys []ExportKey `json:"keys"`
}

// ExportKey is a version's key wrapped to one device.
type ExportKey struct {
	Version   int    `json:"version"`
	Device    string `json:"device"`
	WrappedBy string `json:"wrapped_by"`
	CreatedAt int64  `json:"created_at"`
}

// ExportAccount returns what the vault holds about account.
func (s *Service) ExportAccount(ctx context.Context, account string) (*AccountExport, error) {
	out := &AccountExport{Documents: []ExportDocument{}}
	rows, err := s.db.Query(ctx, `SELECT id FROM vault_documents WHERE account_id = $1 ORDER BY created_at, id`, account)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		d, err := s.document(ctx, account, id, "", false)
		if err != nil {
			return nil, err
		}
		ed := ExportDocument{Document: *d, Keys: []ExportKey{}}
		krows, err := s.db.Query(ctx, `SELECT version, device_id, wrapped_by, created_at FROM vault_keys WHERE document_id = $1 ORDER BY version, device_id`, id)
		if err != nil {
			return nil, err
		}
		for krows.Next() {
			var k ExportKey
			if err := krows.Scan(&k.Version, &k.Device, &k.WrappedBy, &k.CreatedAt); err != nil {
				krows.Close()
				return nil, err
			}
			ed.Keys = append(ed.Keys, k)
		}
		krows.Close()
		if err := krows.Err(); err != nil {
			return nil, err
		}
		out.Documents = append(out.Documents, ed)
	}
	sh, err := s.Shares(ctx, Actor{AccountID: account}, "")
	if err != nil {
		return nil, err
	}
	out.SharesMade, out.SharesReceived = sh.Made, sh.Received
	u, err := s.Usage(ctx, Actor{AccountID: account})
	if err != nil {
		return nil, err
	}
	out.Usage = *u
	return out, nil
}

// Erased counts what EraseAccount removed.
type Erased struct {
	Documents int64 `json:"documents"`
	Shares    int64 `json:"shares"`
}

// EraseAccount removes everything the vault holds about account (GDPR
// Art. 17): its documents, their versions and wrapped keys (the keys go
// first: crypto-shredding), the shares it made (their recipients are
// told) and received, and the blobs nothing else refers to. The vault
// keeps nothing of an erased account.
func (s *Service) EraseAccount(ctx context.Context, account string) (*Erased, error) {
	out := &Erased{}
	var hashes []string
	var made []Share
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		if hashes, err = blobsOf(ctx, tx, `account_id = $1`, account); err != nil {
			return err
		}
		if made, err = activeShares(ctx, tx, `s.owner_account = $1`, account); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM vault_documents WHERE account_id = $1`, account).Scan(&out.Documents); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM vault_shares WHERE owner_account = $1 OR grantee_account = $1`, account)
		if err != nil {
			return err
		}
		out.Shares, _ = res.RowsAffected()
		return deleteDocuments(ctx, tx, `account_id = $1`, account)
	})
	if err != nil {
		return nil, err
	}
	s.dropUnreferenced(ctx, hashes...)
	s.announce(ctx, made)
	return out, nil
}
