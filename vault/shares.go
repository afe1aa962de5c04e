package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Share records that the actor shares a version of one of their documents
// with an account or an organisation in a conversation with them. The
// sharing device sends the key in a document.share message in that
// conversation; from now on the recipient may fetch the ciphertext.
func (s *Service) Share(ctx context.Context, a Actor, id string, in ShareRequest) (*Share, error) {
	switch {
	case (in.Account == "") == (in.Org == ""):
		return nil, invalid("name either an account or an organisation")
	case in.Account == a.AccountID:
		return nil, invalid("a document is not shared with its owner")
	case in.Conversation == "" || len(in.Conversation) > 128:
		return nil, invalid("conversation is required")
	case in.Version < 1:
		return nil, invalid("version must be at least 1")
	}
	sh := &Share{DocumentID: id, Version: in.Version, Owner: a.AccountID, Account: in.Account, Org: in.Org, Conversation: in.Conversation}
	err := s.db.QueryRow(ctx, `SELECT v.blob_hash, v.size FROM vault_versions v JOIN vault_documents d ON d.id = v.document_id
		WHERE v.document_id = $1 AND v.version = $2 AND d.account_id = $3`, id, in.Version, a.AccountID).Scan(&sh.SHA256, &sh.Size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: document %s version %d", ErrNotFound, id, in.Version)
	} else if err != nil {
		return nil, err
	}
	ok, err := s.convs.Between(ctx, in.Conversation, a.AccountID, in.Account, in.Org)
	if err != nil {
		return nil, err
	}
	if !ok {
		who := in.Account
		if who == "" {
			who = in.Org
		}
		return nil, fmt.Errorf("%w: %s is not in conversation %s with you", ErrNotParty, who, in.Conversation)
	}
	if sh.ID, err = newID("vs_"); err != nil {
		return nil, err
	}
	sh.CreatedAt = s.now().Unix()
	_, err = s.db.Exec(ctx, `INSERT INTO vault_shares (id, document_id, version, owner_account, grantee_account, grantee_org, conversation, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, sh.ID, id, in.Version, a.AccountID, in.Account, in.Org, in.Conversation, sh.CreatedAt)
	if err != nil {
		return nil, err
	}
	return sh, nil
}

// Unshare withdraws one of the actor's shares: the recipient can no longer
// fetch the ciphertext, and its devices are told. What they fetched and
// decrypted before stays theirs.
func (s *Service) Unshare(ctx context.Context, a Actor, shareID string) (*Share, error) {
	var shares []Share
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		shares, err = activeShares(ctx, tx, `s.id = $1`, shareID)
		if err != nil {
			return err
		}
		if len(shares) == 0 || shares[0].Owner != a.AccountID {
			return fmt.Errorf("%w: active share %s", ErrNotFound, shareID)
		}
		shares[0].WithdrawnAt = s.now().Unix()
		_, err = tx.ExecContext(ctx, `UPDATE vault_shares SET withdrawn_at = $2 WHERE id = $1`, shareID, shares[0].WithdrawnAt)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.announce(ctx, shares)
	return &shares[0], nil
}

func (s *Service) announce(ctx context.Context, shares []Share) {
	if s.notifier == nil {
		return
	}
	for _, sh := range shares {
		if err := s.notifier.Withdrawn(ctx, sh); err != nil {
			s.log.Warn("vault: withdrawal not announced", "share", sh.ID, "err", err)
		}
	}
}

const shareColumns = `s.id, s.document_id, s.version, s.owner_account, s.grantee_account, s.grantee_org, s.conversation,
	s.created_at, COALESCE(s.withdrawn_at, 0), v.blob_hash, v.size`

func scanShares(rows *sql.Rows) ([]Share, error) {
	defer rows.Close()
	out := []Share{}
	for rows.Next() {
		var sh Share
		if err := rows.Scan(&sh.ID, &sh.DocumentID, &sh.Version, &sh.Owner, &sh.Account, &sh.Org, &sh.Conversation,
			&sh.CreatedAt, &sh.WithdrawnAt, &sh.SHA256, &sh.Size); err != nil {
			return nil, err
		}
		out = append(out, sh)
	}
	return out, rows.Err()
}

func activeShares(ctx context.Context, tx *sql.Tx, where string, arg any) ([]Share, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+shareColumns+` FROM vault_shares s
		JOIN vault_versions v ON v.document_id = s.document_id AND v.version = s.version
		WHERE s.withdrawn_at IS NULL AND `+where+` ORDER BY s.created_at, s.id`, arg)
	if err != nil {
		return nil, err
	}
	return scanShares(rows)
}

// Shares lists the shares the actor's account made and those it received;
// with org, those the organisation received (for its agents only).
func (s *Service) Shares(ctx context.Context, a Actor, org string) (*ShareList, error) {
	out := &ShareList{}
	q := func(where string, arg any) ([]Share, error) {
		rows, err := s.db.Query(ctx, `SELECT `+shareColumns+` FROM vault_shares s
			JOIN vault_versions v ON v.document_id = s.document_id AND v.version = s.version
			WHERE `+where+` ORDER BY s.created_at, s.id LIMIT `+fmt.Sprint(MaxList), arg)
		if err != nil {
			return nil, err
		}
		return scanShares(rows)
	}
	var err error
	if org != "" {
		role, err := s.dir.OrgRole(ctx, org, a.AccountID)
		if err != nil {
			return nil, err
		}
		if role == "" {
			return nil, fmt.Errorf("%w: only an agent of %s sees its shares", ErrForbidden, org)
		}
		out.Made = []Share{}
		out.Received, err = q(`s.grantee_org = $1`, org)
		return out, err
	}
	if out.Made, err = q(`s.owner_account = $1`, a.AccountID); err != nil {
		return nil, err
	}
	if out.Received, err = q(`s.grantee_account = $1`, a.AccountID); err != nil {
		return nil, err
	}
	return out, nil
}
