package messaging

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kanal-server/kanal/messaging/kind"
)

// An account's own data (GDPR Art. 15 and 17; docs/privacy.md): what
// messaging holds about an account, and its erasure. cmd/kanald calls
// these with the account's devices, which identity knows.

// AccountData is what messaging holds about one account.
type AccountData struct {
	Groups      []AccountGroup      `json:"groups"`
	Invitations []AccountInvitation `json:"invitations"`
	Declines    []AccountDecline    `json:"declines"`
	Devices     []DeviceKeys        `json:"devices"`
	Blobs       []AccountBlob       `json:"attachments"`
	Following   []Following         `json:"following"` // organisations whose broadcasts it follows
}

// AccountGroup is one group the account is a member of.
type AccountGroup struct {
	GroupID   string    `json:"group_id"`
	Role      string    `json:"role"`
	AddedAt   time.Time `json:"added_at"`
	CreatedBy bool      `json:"created_by_you"`
	Members   int       `json:"members"`
}

// AccountInvitation is a pending invitation to or by the account.
type AccountInvitation struct {
	GroupID   string    `json:"group_id"`
	AccountID string    `json:"account_id"` // who is invited
	Role      string    `json:"role"`
	InvitedBy string    `json:"invited_by"`
	InvitedAt time.Time `json:"invited_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AccountDecline is a declined invitation that still blocks new ones.
type AccountDecline struct {
	GroupID      string    `json:"group_id"`
	AccountID    string    `json:"account_id"`
	InvitedBy    string    `json:"invited_by"`
	BlockedUntil time.Time `json:"blocked_until"`
}

// DeviceKeys is what the prekey directory and the mailbox hold for one
// device: its published public keys, how many one-time prekeys are
// left, and the envelopes waiting for it (ciphertext only the device
// reads; the server knows their metadata).
type DeviceKeys struct {
	DeviceID          string          `json:"device_id"`
	IdentityKey       []byte          `json:"identity_key,omitempty"`
	KeysUpdatedAt     *time.Time      `json:"keys_updated_at"`
	OneTimePrekeys    int             `json:"one_time_prekeys"`
	PQPrekeys         int             `json:"pq_prekeys"`
	PendingEnvelopes  []EnvelopeEntry `json:"pending_envelopes"`
	IdempotentSends   int             `json:"recent_sends"`
	LastSendAt        *time.Time      `json:"last_send_at"`
	ConversationsSent []string        `json:"conversations_sent_to"`
}

// EnvelopeEntry is the metadata of one envelope waiting in a mailbox.
type EnvelopeEntry struct {
	EnvelopeID   string    `json:"envelope_id"`
	Conversation string    `json:"conversation"`
	Sender       string    `json:"sender_device"`
	Class        string    `json:"class"`
	Bytes        int       `json:"bytes"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// AccountBlob is one attachment blob the account uploaded (ciphertext;
// the key travelled end to end and is not on the server).
type AccountBlob struct {
	BlobID    string    `json:"blob_id"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ExportAccount returns what messaging holds about account and its
// devices.
func (s *Service) ExportAccount(ctx context.Context, account string, devices []string) (*AccountData, error) {
	out := &AccountData{Groups: []AccountGroup{}, Invitations: []AccountInvitation{}, Declines: []AccountDecline{},
		Devices: []DeviceKeys{}, Blobs: []AccountBlob{}, Following: []Following{}}
	err := s.each(ctx, `SELECT m.group_id, m.role, m.added_at, g.created_by,
			(SELECT COUNT(*) FROM messaging_group_members o WHERE o.group_id = m.group_id)
		FROM messaging_group_members m JOIN messaging_groups g ON g.id = m.group_id
		WHERE m.account_id = $1 ORDER BY m.added_at, m.group_id`, []any{account}, func(r *sql.Rows) error {
		var g AccountGroup
		var added int64
		var by string
		if err := r.Scan(&g.GroupID, &g.Role, &added, &by, &g.Members); err != nil {
			return err
		}
		g.AddedAt, g.CreatedBy = time.Unix(added, 0).UTC(), by == account
		out.Groups = append(out.Groups, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.each(ctx, `SELECT group_id, account_id, role, invited_by, invited_at, expires_at FROM messaging_group_invitations
		WHERE account_id = $1 OR invited_by = $1 ORDER BY invited_at, group_id, account_id`, []any{account}, func(r *sql.Rows) error {
		var i AccountInvitation
		var at, exp int64
		if err := r.Scan(&i.GroupID, &i.AccountID, &i.Role, &i.InvitedBy, &at, &exp); err != nil {
			return err
		}
		i.InvitedAt, i.ExpiresAt = time.Unix(at, 0).UTC(), time.Unix(exp, 0).UTC()
		out.Invitations = append(out.Invitations, i)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.each(ctx, `SELECT group_id, account_id, invited_by, blocked_until FROM messaging_invitation_declines
		WHERE account_id = $1 OR invited_by = $1 ORDER BY group_id, account_id`, []any{account}, func(r *sql.Rows) error {
		var d AccountDecline
		var until int64
		if err := r.Scan(&d.GroupID, &d.AccountID, &d.InvitedBy, &until); err != nil {
			return err
		}
		d.BlockedUntil = time.Unix(until, 0).UTC()
		out.Declines = append(out.Declines, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, dev := range devices {
		k := DeviceKeys{DeviceID: dev, PendingEnvelopes: []EnvelopeEntry{}, ConversationsSent: []string{}}
		var updated int64
		switch err := s.db.QueryRow(ctx, `SELECT identity_key, updated_at FROM messaging_identities WHERE device_id = $1`, dev).Scan(&k.IdentityKey, &updated); {
		case err == nil:
			t := time.Unix(updated, 0).UTC()
			k.KeysUpdatedAt = &t
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("messaging.export: %w", err)
		}
		for _, c := range []struct {
			q string
			n *int
		}{
			{`SELECT COUNT(*) FROM messaging_one_time_prekeys WHERE device_id = $1`, &k.OneTimePrekeys},
			{`SELECT COUNT(*) FROM messaging_pq_prekeys WHERE device_id = $1`, &k.PQPrekeys},
			{`SELECT COUNT(*) FROM messaging_sends WHERE sender_device = $1`, &k.IdempotentSends},
		} {
			if err := s.db.QueryRow(ctx, c.q, dev).Scan(c.n); err != nil {
				return nil, fmt.Errorf("messaging.export: %w", err)
			}
		}
		var last sql.NullInt64
		if err := s.db.QueryRow(ctx, `SELECT MAX(created_at) FROM messaging_sends WHERE sender_device = $1`, dev).Scan(&last); err != nil {
			return nil, fmt.Errorf("messaging.export: %w", err)
		}
		if last.Valid {
			t := time.Unix(last.Int64, 0).UTC()
			k.LastSendAt = &t
		}
		err := s.each(ctx, `SELECT DISTINCT conversation FROM messaging_sends WHERE sender_device = $1 ORDER BY conversation`, []any{dev}, func(r *sql.Rows) error {
			var c string
			if err := r.Scan(&c); err != nil {
				return err
			}
			k.ConversationsSent = append(k.ConversationsSent, c)
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = s.each(ctx, `SELECT envelope_id, conversation, sender_device, class, LENGTH(ciphertext), created_at, expires_at FROM mailbox
			WHERE device_id = $1 ORDER BY seq`, []any{dev}, func(r *sql.Rows) error {
			var e EnvelopeEntry
			var at, exp int64
			if err := r.Scan(&e.EnvelopeID, &e.Conversation, &e.Sender, &e.Class, &e.Bytes, &at, &exp); err != nil {
				return err
			}
			e.CreatedAt, e.ExpiresAt = time.UnixMilli(at).UTC(), time.UnixMilli(exp).UTC()
			k.PendingEnvelopes = append(k.PendingEnvelopes, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
		out.Devices = append(out.Devices, k)
	}
	err = s.each(ctx, `SELECT id, size, sha256, created_at, expires_at FROM messaging_blobs WHERE uploader = $1 ORDER BY created_at, id`,
		[]any{account}, func(r *sql.Rows) error {
			var b AccountBlob
			var at, exp int64
			if err := r.Scan(&b.BlobID, &b.Size, &b.SHA256, &at, &exp); err != nil {
				return err
			}
			b.CreatedAt, b.ExpiresAt = time.Unix(at, 0).UTC(), time.Unix(exp, 0).UTC()
			out.Blobs = append(out.Blobs, b)
			return nil
		})
	if err != nil {
		return nil, err
	}
	following, err := s.FollowingOf(ctx, Caller{AccountID: account})
	if err != nil {
		return nil, err
	}
	out.Following = following.Following
	return out, nil
}

func (s *Service) each(ctx context.Context, query string, args []any, f func(*sql.Rows) error) error {
	rs, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("messaging.export: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		if err := f(rs); err != nil {
			return fmt.Errorf("messaging.export: %w", err)
		}
	}
	return rs.Err()
}

// LeaveAllGroups takes account out of every group it is in, as if it
// had left each (the remaining members' devices get a group.change
// notice, op left). Where it is the last admin of a group with other
// members, the longest-standing other member becomes admin first (op
// role). It returns the groups left. Erasure calls it before the account
// is erased; it is idempotent.
func (s *Service) LeaveAllGroups(ctx context.Context, account string) ([]string, error) {
	var groups []string
	err := s.each(ctx, `SELECT group_id FROM messaging_group_members WHERE account_id = $1 ORDER BY group_id`, []any{account}, func(r *sql.Rows) error {
		var g string
		if err := r.Scan(&g); err != nil {
			return err
		}
		groups = append(groups, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range groups {
		_, err := s.changeGroup(ctx, id, func(g *Group) (*groupPlan, error) {
			if g == nil || g.role(account) == "" {
				return &groupPlan{apply: func(context.Context, *sql.Tx) error { return nil }}, nil
			}
			others := slices.DeleteFunc(slices.Clone(g.Members), func(m GroupMemberInfo) bool { return m.AccountID == account })
			p := &groupPlan{}
			var heir string
			if g.role(account) == GroupAdmin && g.admins() == 1 && len(others) > 0 {
				heir = others[0].AccountID // Members are ordered by added_at
				p.notices = append(p.notices, groupNotice{kind.GroupChangeBody{GroupID: id, Op: "role", AccountID: heir, By: account, Role: GroupAdmin},
					accountsOf(g.Members)})
			}
			p.notices = append(p.notices, groupNotice{kind.GroupChangeBody{GroupID: id, Op: "left", AccountID: account, By: account}, accountsOf(others)})
			p.apply = func(ctx context.Context, tx *sql.Tx) error {
				if heir != "" {
					if _, err := tx.ExecContext(ctx, `UPDATE messaging_group_members SET role = $1 WHERE group_id = $2 AND account_id = $3`, GroupAdmin, id, heir); err != nil {
						return err
					}
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM messaging_group_members WHERE group_id = $1 AND account_id = $2`, id, account); err != nil {
					return err
				}
				if len(others) == 0 {
					_, err := tx.ExecContext(ctx, `DELETE FROM messaging_groups WHERE id = $1`, id)
					return err
				}
				return nil
			}
			return p, nil
		})
		if err != nil {
			return nil, fmt.Errorf("messaging.erase: group %s: %w", id, err)
		}
	}
	return groups, nil
}

// EraseAccountTx removes or pseudonymises, inside tx, what messaging
// still holds about account once it has left its groups: its pending
// invitations and declines go, and the groups it created, the
// invitations it sent and the attachment blobs it uploaded (ciphertext
// already sent to others, deleted at its expiry) name pseudonym instead;
// the organisations it follows forget it.
// Per-device state (prekeys, mailboxes, send records) goes with the
// devices' revocation (DeletePrekeys and the mailbox's hook).
func (s *Service) EraseAccountTx(ctx context.Context, tx *sql.Tx, account, pseudonym string) error {
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM messaging_group_members WHERE account_id = $1`, []any{account}},
		{`DELETE FROM messaging_group_invitations WHERE account_id = $1`, []any{account}},
		{`DELETE FROM messaging_invitation_declines WHERE account_id = $1 OR invited_by = $1`, []any{account}},
		{`UPDATE messaging_group_invitations SET invited_by = $2 WHERE invited_by = $1`, []any{account, pseudonym}},
		{`UPDATE messaging_groups SET created_by = $2 WHERE created_by = $1`, []any{account, pseudonym}},
		{`UPDATE messaging_blobs SET uploader = $2 WHERE uploader = $1`, []any{account, pseudonym}},
		{`DELETE FROM messaging_claim_counters WHERE account_id = $1`, []any{account}},
		{`DELETE FROM messaging_followers WHERE account_id = $1`, []any{account}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("messaging.erase: %w", err)
		}
	}
	return nil
}
