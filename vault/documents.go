package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
)

// check validates an upload's metadata before anything is read or written.
func (s *Service) check(in *PutRequest) error {
	switch {
	case !hashPattern.MatchString(in.SHA256):
		return invalid("sha256 must be 64 lower-case hex digits")
	case in.Size <= 0:
		return invalid("size must be positive")
	case in.Size > s.maxDoc:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, in.Size, s.maxDoc)
	case len(in.Meta) == 0 || len(in.Meta) > MaxMeta:
		return invalid("meta must be 1 to %d bytes", MaxMeta)
	case len(in.Keys) == 0 || len(in.Keys) > MaxKeys:
		return invalid("keys must name 1 to %d devices", MaxKeys)
	}
	seen := map[string]bool{}
	for _, k := range in.Keys {
		switch {
		case k.Device == "" || len(k.Device) > 64:
			return invalid("a key's device is missing or too long")
		case seen[k.Device]:
			return invalid("device %s has two keys", k.Device)
		case len(k.Wrapped) == 0 || len(k.Wrapped) > MaxWrapped:
			return invalid("the key for %s must be 1 to %d bytes", k.Device, MaxWrapped)
		}
		seen[k.Device] = true
	}
	return nil
}

// checkDevices refuses a key for a device that is not an active device of
// account.
func (s *Service) checkDevices(ctx context.Context, account string, ks []WrappedKey) error {
	active, err := s.dir.AccountDevices(ctx, account)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	for _, d := range active {
		set[d] = true
	}
	for _, k := range ks {
		if !set[k.Device] {
			return fmt.Errorf("%w: device %s is not an active device of account %s", ErrDevice, k.Device, account)
		}
	}
	return nil
}

// rowQuery is QueryRow of the database or of a transaction.
type rowQuery func(ctx context.Context, query string, args ...any) *sql.Row

// usage returns the bytes account stores in class.
func usage(ctx context.Context, q rowQuery, account, class string) (int64, error) {
	var n int64
	err := q(ctx, `SELECT COALESCE(SUM(v.size), 0) FROM vault_versions v JOIN vault_documents d ON d.id = v.document_id
		WHERE v.account_id = $1 AND d.quota_class = $2`, account, class).Scan(&n)
	return n, err
}

// Put stores a new document of the actor's: its first version's
// ciphertext from content, with the metadata and keys of in.
func (s *Service) Put(ctx context.Context, a Actor, in PutRequest, content io.Reader) (*Document, error) {
	if in.Org != "" || in.Account != "" || in.Conversation != "" {
		return nil, invalid("org, account and conversation are for issued documents only")
	}
	return s.put(ctx, a, "", a.AccountID, ClassPersonal, "", in, content)
}

// AddVersion stores a new version of one of the actor's documents.
func (s *Service) AddVersion(ctx context.Context, a Actor, id string, in PutRequest, content io.Reader) (*Document, error) {
	if in.Org != "" || in.Account != "" || in.Conversation != "" {
		return nil, invalid("org, account and conversation are for issued documents only")
	}
	var owner, class string
	err := s.db.QueryRow(ctx, `SELECT account_id, quota_class FROM vault_documents WHERE id = $1`, id).Scan(&owner, &class)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != a.AccountID) {
		return nil, fmt.Errorf("%w: document %s", ErrNotFound, id)
	} else if err != nil {
		return nil, err
	}
	if class == ClassIssued {
		return nil, fmt.Errorf("%w: an issued document keeps the version its office signed", ErrForbidden)
	}
	return s.put(ctx, a, id, owner, class, "", in, content)
}

// Issue stores a document an agent of in.Org issues into the vault of
// in.Account, in the organisation's conversation with that account. The
// keys are wrapped to the citizen's devices by the agent's device.
func (s *Service) Issue(ctx context.Context, a Actor, in PutRequest, content io.Reader) (*Document, error) {
	if in.Org == "" || in.Account == "" || in.Conversation == "" {
		return nil, invalid("org, account and conversation are required")
	}
	role, err := s.dir.OrgRole(ctx, in.Org, a.AccountID)
	if err != nil {
		return nil, err
	}
	if role == "" {
		return nil, fmt.Errorf("%w: only an agent of %s issues its documents", ErrForbidden, in.Org)
	}
	ok, err := s.convs.Between(ctx, in.Conversation, in.Account, "", in.Org)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s is not the conversation of %s with %s", ErrNotParty, in.Conversation, in.Org, in.Account)
	}
	return s.put(ctx, a, "", in.Account, ClassIssued, in.Org, in, content)
}

func (s *Service) put(ctx context.Context, a Actor, id, owner, class, org string, in PutRequest, content io.Reader) (*Document, error) {
	if err := s.check(&in); err != nil {
		return nil, err
	}
	if err := s.checkDevices(ctx, owner, in.Keys); err != nil {
		return nil, err
	}
	if class == ClassPersonal && !hasKeyFor(in.Keys, a.DeviceID) {
		return nil, invalid("the uploading device %s must wrap the key to itself", a.DeviceID)
	}
	used, err := usage(ctx, s.db.QueryRow, owner, class)
	if err != nil {
		return nil, err
	}
	if used+in.Size > s.quota {
		return nil, fmt.Errorf("%w: %d of %d bytes used in the %s class", ErrQuota, used, s.quota, class)
	}
	if err := s.blobs.Put(ctx, in.SHA256, in.Size, content); err != nil {
		if errors.Is(err, ErrHashMismatch) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, invalid("the content does not match its size and sha256")
		}
		return nil, err
	}
	now := s.now().Unix()
	newDoc := id == ""
	if newDoc {
		if id, err = newID("vd_"); err != nil {
			return nil, err
		}
	}
	var version int
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if newDoc {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vault_documents (id, account_id, quota_class, issuer_org, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $5)`, id, owner, class, org, now); err != nil {
				return err
			}
		} else if _, err := tx.ExecContext(ctx, `UPDATE vault_documents SET updated_at = $2 WHERE id = $1`, id, now); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM vault_versions WHERE document_id = $1`, id).Scan(&version); err != nil {
			return err
		}
		if version > MaxVersions {
			return fmt.Errorf("%w: a document has at most %d versions", ErrQuota, MaxVersions)
		}
		// Checked again in the transaction: two uploads racing past the
		// first check must not both land.
		used, err := usage(ctx, tx.QueryRowContext, owner, class)
		if err != nil {
			return err
		}
		if used+in.Size > s.quota {
			return fmt.Errorf("%w: %d of %d bytes used in the %s class", ErrQuota, used, s.quota, class)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO vault_versions (document_id, version, account_id, blob_hash, size, meta, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, version, owner, in.SHA256, in.Size, in.Meta, now, a.DeviceID); err != nil {
			return err
		}
		for _, k := range in.Keys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vault_keys (document_id, version, device_id, wrapped, wrapped_by, created_at)
				VALUES ($1, $2, $3, $4, $5, $6)`, id, version, k.Device, k.Wrapped, a.DeviceID, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.dropUnreferenced(ctx, in.SHA256)
		return nil, err
	}
	return s.document(ctx, owner, id, a.DeviceID, false)
}

func hasKeyFor(ks []WrappedKey, device string) bool {
	for _, k := range ks {
		if k.Device == device {
			return true
		}
	}
	return false
}

// dropUnreferenced deletes blobs no version refers to any more. A failure
// leaves an orphan, which holds ciphertext only; it is logged.
func (s *Service) dropUnreferenced(ctx context.Context, hashes ...string) {
	for _, h := range hashes {
		var n int
		if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM vault_versions WHERE blob_hash = $1`, h).Scan(&n); err != nil || n > 0 {
			continue
		}
		if err := s.blobs.Delete(ctx, h); err != nil {
			s.log.Warn("vault: orphan blob left", "blob", h, "err", err)
		}
	}
}

// Document returns one of the actor's documents with all its versions.
func (s *Service) Document(ctx context.Context, a Actor, id string) (*Document, error) {
	return s.document(ctx, a.AccountID, id, a.DeviceID, false)
}

// document reads a document of owner; latest keeps only the newest version.
func (s *Service) document(ctx context.Context, owner, id, device string, latest bool) (*Document, error) {
	d := &Document{ID: id}
	err := s.db.QueryRow(ctx, `SELECT account_id, quota_class, issuer_org, created_at, updated_at FROM vault_documents WHERE id = $1`, id).
		Scan(&d.Account, &d.Class, &d.IssuerOrg, &d.CreatedAt, &d.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && d.Account != owner) {
		return nil, fmt.Errorf("%w: document %s", ErrNotFound, id)
	} else if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT v.version, v.blob_hash, v.size, v.meta, v.created_at, v.created_by, k.wrapped
		FROM vault_versions v LEFT JOIN vault_keys k ON k.document_id = v.document_id AND k.version = v.version AND k.device_id = $2
		WHERE v.document_id = $1 ORDER BY v.version`, id, device)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v Version
		if err := rows.Scan(&v.Version, &v.SHA256, &v.Size, &v.Meta, &v.CreatedAt, &v.CreatedBy, &v.Key); err != nil {
			return nil, err
		}
		d.Versions = append(d.Versions, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if latest && len(d.Versions) > 1 {
		d.Versions = d.Versions[len(d.Versions)-1:]
	}
	return d, nil
}

// List returns the actor's documents, each with its newest version, and
// the account's usage.
func (s *Service) List(ctx context.Context, a Actor) (*DocumentList, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM vault_documents WHERE account_id = $1 ORDER BY created_at, id LIMIT $2`, a.AccountID, MaxList)
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
	out := &DocumentList{Documents: []Document{}}
	for _, id := range ids {
		d, err := s.document(ctx, a.AccountID, id, a.DeviceID, true)
		if err != nil {
			return nil, err
		}
		out.Documents = append(out.Documents, *d)
	}
	u, err := s.Usage(ctx, a)
	if err != nil {
		return nil, err
	}
	out.Usage = *u
	return out, nil
}

// Usage returns what the actor's account stores against its quotas.
func (s *Service) Usage(ctx context.Context, a Actor) (*Usage, error) {
	u := &Usage{QuotaBytes: s.quota, MaxDocument: s.maxDoc}
	var err error
	if u.PersonalBytes, err = usage(ctx, s.db.QueryRow, a.AccountID, ClassPersonal); err != nil {
		return nil, err
	}
	if u.IssuedBytes, err = usage(ctx, s.db.QueryRow, a.AccountID, ClassIssued); err != nil {
		return nil, err
	}
	return u, nil
}

// Content opens a version's ciphertext for its owner, or for a grantee of
// an active share of it (the account, or an agent of the organisation).
func (s *Service) Content(ctx context.Context, a Actor, id string, version int) (io.ReadCloser, *Version, error) {
	var owner string
	v := &Version{Version: version}
	err := s.db.QueryRow(ctx, `SELECT account_id, blob_hash, size, created_at, created_by FROM vault_versions WHERE document_id = $1 AND version = $2`, id, version).
		Scan(&owner, &v.SHA256, &v.Size, &v.CreatedAt, &v.CreatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w: document %s version %d", ErrNotFound, id, version)
	} else if err != nil {
		return nil, nil, err
	}
	if owner != a.AccountID {
		ok, err := s.granted(ctx, a, id, version)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			// Not found, not forbidden: a stranger learns nothing of
			// which documents exist.
			return nil, nil, fmt.Errorf("%w: document %s version %d", ErrNotFound, id, version)
		}
	}
	rc, err := s.blobs.Get(ctx, v.SHA256)
	if err != nil {
		return nil, nil, err
	}
	return rc, v, nil
}

// granted reports whether an active share of the version is to the actor's
// account or to an organisation the actor is an agent of.
func (s *Service) granted(ctx context.Context, a Actor, id string, version int) (bool, error) {
	rows, err := s.db.Query(ctx, `SELECT grantee_account, grantee_org FROM vault_shares
		WHERE document_id = $1 AND version = $2 AND withdrawn_at IS NULL`, id, version)
	if err != nil {
		return false, err
	}
	var orgs []string
	for rows.Next() {
		var acct, org string
		if err := rows.Scan(&acct, &org); err != nil {
			rows.Close()
			return false, err
		}
		if acct != "" && acct == a.AccountID {
			rows.Close()
			return true, nil
		}
		if org != "" {
			orgs = append(orgs, org)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, org := range orgs {
		role, err := s.dir.OrgRole(ctx, org, a.AccountID)
		if err != nil {
			return false, err
		}
		if role != "" {
			return true, nil
		}
	}
	return false, nil
}

// Delete removes one of the actor's documents: its versions, their keys
// and shares (each withdrawn, its recipients told) and the blobs nothing
// else refers to.
func (s *Service) Delete(ctx context.Context, a Actor, id string) error {
	var hashes []string
	var shares []Share
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT account_id FROM vault_documents WHERE id = $1`, id).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != a.AccountID) {
			return fmt.Errorf("%w: document %s", ErrNotFound, id)
		} else if err != nil {
			return err
		}
		if hashes, err = blobsOf(ctx, tx, `document_id = $1`, id); err != nil {
			return err
		}
		if shares, err = activeShares(ctx, tx, `s.document_id = $1`, id); err != nil {
			return err
		}
		return deleteDocuments(ctx, tx, `id = $1`, id)
	})
	if err != nil {
		return err
	}
	s.dropUnreferenced(ctx, hashes...)
	s.announce(ctx, shares)
	return nil
}

func blobsOf(ctx context.Context, tx *sql.Tx, where string, arg any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT blob_hash FROM vault_versions WHERE `+where, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// deleteDocuments deletes documents and, explicitly rather than by
// cascade, everything that hangs off them.
func deleteDocuments(ctx context.Context, tx *sql.Tx, where string, arg any) error {
	sub := `SELECT id FROM vault_documents WHERE ` + where
	for _, q := range []string{
		`DELETE FROM vault_keys WHERE document_id IN (` + sub + `)`,
		`DELETE FROM vault_shares WHERE document_id IN (` + sub + `)`,
		`DELETE FROM vault_versions WHERE document_id IN (` + sub + `)`,
		`DELETE FROM vault_documents WHERE ` + where,
	} {
		if _, err := tx.ExecContext(ctx, q, arg); err != nil {
			return err
		}
	}
	return nil
}
