package messaging

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Invitations: adding an account to a group — at creation or later —
// invites it. Until it accepts, the invitee is not a member: no message
// of the group is addressed to its devices, it cannot read the member
// list or send, and only its own invitation is announced to it. It may
// decline, and then it may not be invited to that group again, nor by the
// same inviter to any group, for DeclineBlock. An invitation not answered
// within InvitationLifetime is void. Pending invitations count against
// MaxGroupMembers.

// Problem types of invitations.
var (
	TypeGroupFull          = web.NewType("group-full")          // members and pending invitations are MaxGroupMembers
	TypeAlreadyInvited     = web.NewType("already-invited")     // the account has a pending invitation to the group
	TypeNoInvitation       = web.NewType("no-invitation")       // the caller has no pending invitation to the group (or it does not exist)
	TypeInvitationDeclined = web.NewType("invitation-declined") // the account declined an invitation to this group, or from this inviter, within DeclineBlock
)

// GroupInvitation is one pending invitation of a group.
type GroupInvitation struct {
	AccountID string    `json:"account_id"`
	Role      string    `json:"role"` // the role the account will have
	InvitedBy string    `json:"invited_by"`
	InvitedAt time.Time `json:"invited_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Invitation is one of the caller's pending invitations.
type Invitation struct {
	GroupID   string    `json:"group_id"`
	Role      string    `json:"role"`
	InvitedBy string    `json:"invited_by"`
	InvitedAt time.Time `json:"invited_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Members   int       `json:"members"` // how many members the group has now
}

// InvitationList answers GET /v1/invitations.
type InvitationList struct {
	Invitations []Invitation `json:"invitations"`
}

// DeclineResponse answers POST /v1/groups/{id}/invitation/decline.
type DeclineResponse struct {
	GroupID      string    `json:"group_id"`
	BlockedUntil time.Time `json:"blocked_until"` // no new invitation to the group, or from the inviter, before
}

func errGroupFull() error {
	return web.Errorf(http.StatusConflict, TypeGroupFull, "Group full",
		"a group has at most %d members, pending invitations counted", MaxGroupMembers)
}

func errNoInvitation(id string) error {
	// The same answer whether the group does not exist or has no
	// invitation for the caller.
	return web.Errorf(http.StatusNotFound, TypeNoInvitation, "No invitation", "no pending invitation to group %s for you", id)
}

// checkDeclined refuses, inside tx, an invitation of account to group by
// inviter while a decline blocks it.
func (s *Service) checkDeclined(ctx context.Context, tx *sql.Tx, group, inviter, account string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM messaging_invitation_declines
		WHERE account_id = $1 AND blocked_until > $2 AND (group_id = $3 OR invited_by = $4) LIMIT 1`,
		account, s.now().Unix(), group, inviter).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return err
	}
	return web.Errorf(http.StatusConflict, TypeInvitationDeclined, "Invitation declined",
		"%s declined an invitation to this group or from you; it cannot be invited again for now", account)
}

// insertInvitation stores inv, replacing an expired invitation of the
// same account to the group.
func insertInvitation(ctx context.Context, tx *sql.Tx, group string, inv GroupInvitation) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM messaging_group_invitations WHERE group_id = $1 AND account_id = $2`, group, inv.AccountID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO messaging_group_invitations (group_id, account_id, role, invited_by, invited_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, group, inv.AccountID, inv.Role, inv.InvitedBy, inv.InvitedAt.Unix(), inv.ExpiresAt.Unix())
	return err
}

// AcceptInvitation makes the caller a member of a group it has a pending
// invitation to, with the invitation's role. Every member and the
// newcomer are told (op added, By the inviter); the newcomer's devices
// first receive the member list.
func (s *Service) AcceptInvitation(ctx context.Context, c Caller, id string) (*Group, error) {
	if !ValidGroupID(id) {
		return nil, errNoInvitation(id)
	}
	return s.changeGroup(ctx, id, func(g *Group) (*groupPlan, error) {
		if g == nil {
			return nil, errNoInvitation(id)
		}
		inv := g.invitation(c.AccountID)
		if inv == nil || g.role(c.AccountID) != "" {
			return nil, errNoInvitation(id)
		}
		role := inv.Role
		return &groupPlan{
			notices: []groupNotice{{kind.GroupChangeBody{GroupID: id, Op: "added", AccountID: c.AccountID, By: inv.InvitedBy, Role: role},
				append(accountsOf(g.Members), c.AccountID)}},
			// The newcomer also learns who was there before: its client
			// encrypts to no member it has not been told of.
			roster: &rosterFor{account: c.AccountID, group: g},
			apply: func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `DELETE FROM messaging_group_invitations WHERE group_id = $1 AND account_id = $2`, id, c.AccountID); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO messaging_group_members (group_id, account_id, role, added_at) VALUES ($1, $2, $3, $4)`,
					id, c.AccountID, role, s.now().Unix())
				return err
			},
		}, nil
	})
}

// DeclineInvitation refuses the caller's pending invitation to a group:
// the invitation is gone, the members and the caller's devices are told
// (op declined), and for DeclineBlock nobody may invite the caller to
// the group again, nor the inviter to any group.
func (s *Service) DeclineInvitation(ctx context.Context, c Caller, id string) (*DeclineResponse, error) {
	if !ValidGroupID(id) {
		return nil, errNoInvitation(id)
	}
	until := s.now().UTC().Truncate(time.Second).Add(DeclineBlock)
	_, err := s.changeGroup(ctx, id, func(g *Group) (*groupPlan, error) {
		if g == nil {
			return nil, errNoInvitation(id)
		}
		inv := g.invitation(c.AccountID)
		if inv == nil {
			return nil, errNoInvitation(id)
		}
		inviter := inv.InvitedBy
		return &groupPlan{
			notices: []groupNotice{{kind.GroupChangeBody{GroupID: id, Op: "declined", AccountID: c.AccountID, By: c.AccountID},
				append(accountsOf(g.Members), c.AccountID)}},
			apply: func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `DELETE FROM messaging_group_invitations WHERE group_id = $1 AND account_id = $2`, id, c.AccountID); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM messaging_invitation_declines WHERE group_id = $1 AND account_id = $2`, id, c.AccountID); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO messaging_invitation_declines (group_id, account_id, invited_by, blocked_until) VALUES ($1, $2, $3, $4)`,
					id, c.AccountID, inviter, until.Unix())
				return err
			},
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return &DeclineResponse{GroupID: id, BlockedUntil: until}, nil
}

// ListInvitations returns the caller's pending invitations.
func (s *Service) ListInvitations(ctx context.Context, c Caller) (*InvitationList, error) {
	rs, err := s.db.Query(ctx, `SELECT i.group_id, i.role, i.invited_by, i.invited_at, i.expires_at,
			(SELECT COUNT(*) FROM messaging_group_members m WHERE m.group_id = i.group_id)
		FROM messaging_group_invitations i WHERE i.account_id = $1 AND i.expires_at > $2 ORDER BY i.invited_at, i.group_id`,
		c.AccountID, s.now().Unix())
	if err != nil {
		return nil, fmt.Errorf("messaging.invitations: %w", err)
	}
	defer rs.Close()
	out := &InvitationList{Invitations: []Invitation{}}
	for rs.Next() {
		var inv Invitation
		var at, exp int64
		if err := rs.Scan(&inv.GroupID, &inv.Role, &inv.InvitedBy, &at, &exp, &inv.Members); err != nil {
			return nil, fmt.Errorf("messaging.invitations: %w", err)
		}
		inv.InvitedAt, inv.ExpiresAt = time.Unix(at, 0).UTC(), time.Unix(exp, 0).UTC()
		out.Invitations = append(out.Invitations, inv)
	}
	return out, rs.Err()
}

// ExpireInvitations deletes expired invitations and declines whose block
// has run out, and returns how many rows; kanald's expiry sweep calls it.
// An expired invitation is void before it is swept.
func (s *Service) ExpireInvitations(ctx context.Context) (int64, error) {
	now := s.now().Unix()
	r, err := s.db.Exec(ctx, `DELETE FROM messaging_group_invitations WHERE expires_at <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("messaging.invitations: %w", err)
	}
	n, _ := r.RowsAffected()
	r, err = s.db.Exec(ctx, `DELETE FROM messaging_invitation_declines WHERE blocked_until <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("messaging.invitations: %w", err)
	}
	m, _ := r.RowsAffected()
	return n + m, nil
}

func (s *Service) handleListInvitations(w http.ResponseWriter, r *http.Request, c Caller) error {
	l, err := s.ListInvitations(r.Context(), c)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, l)
	return nil
}

// noBody refuses a request body: accepting and declining act for the
// session's own account and take nothing else.
func noBody(r *http.Request) error {
	var b [1]byte
	if n, _ := io.ReadFull(io.LimitReader(r.Body, 1), b[:]); n > 0 {
		return fmt.Errorf("%w: this route takes no body; it acts for the session's own account", ErrInvalid)
	}
	return nil
}

func (s *Service) handleAcceptInvitation(w http.ResponseWriter, r *http.Request, c Caller) error {
	if err := noBody(r); err != nil {
		return err
	}
	g, err := s.AcceptInvitation(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, g)
	return nil
}

func (s *Service) handleDeclineInvitation(w http.ResponseWriter, r *http.Request, c Caller) error {
	if err := noBody(r); err != nil {
		return err
	}
	out, err := s.DeclineInvitation(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}
