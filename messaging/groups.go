package messaging

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Group conversations: a group has members, each an admin or a plain
// member. The server keeps the member list, because it must know whose
// devices a group message goes to and who may change the list; what the
// members write, the group's name included, travels end to end.
//
// Every change of the list is announced to the devices of every member —
// and of the member who was removed or left — as a group.change notice,
// stored in the same transaction as the change, so no member can miss who
// reads along from now on.

// Group roles.
const (
	GroupAdmin  = "admin"
	GroupMember = "member"
)

// Problem types of groups.
var (
	TypeNotMember     = web.NewType("not-a-member")      // the caller is not a member of the group (or it does not exist)
	TypeNotAdmin      = web.NewType("not-a-group-admin") // the change needs an admin
	TypeAlreadyMember = web.NewType("already-a-member")
	TypeLastAdmin     = web.NewType("last-admin") // the last admin cannot leave or step down while others remain
)

// GroupMemberInfo is one member of a group.
type GroupMemberInfo struct {
	AccountID string    `json:"account_id"`
	Role      string    `json:"role"`
	AddedAt   time.Time `json:"added_at"`
}

// Group answers GET /v1/groups/{id} and the changes.
type Group struct {
	GroupID   string            `json:"group_id"`
	CreatedBy string            `json:"created_by"`
	CreatedAt time.Time         `json:"created_at"`
	Members   []GroupMemberInfo `json:"members"`
	// Invitations are the pending invitations, not yet accepted,
	// declined, withdrawn or expired.
	Invitations []GroupInvitation `json:"invitations"`
}

// GroupMemberRequest names an account and its role: an element of
// CreateGroupRequest, and the body of POST /v1/groups/{id}/members.
type GroupMemberRequest struct {
	AccountID string `json:"account_id"`
	Role      string `json:"role"`
}

// CreateGroupRequest is the body of POST /v1/groups: the members besides
// the caller, who becomes the group's first admin.
type CreateGroupRequest struct {
	Members []GroupMemberRequest `json:"members"`
}

// GroupRoleRequest is the body of PATCH /v1/groups/{id}/members/{account}.
type GroupRoleRequest struct {
	Role string `json:"role"`
}

// GroupList answers GET /v1/groups: the caller's groups.
type GroupList struct {
	Groups []GroupSummary `json:"groups"`
}

// GroupSummary is one of the caller's groups.
type GroupSummary struct {
	GroupID string `json:"group_id"`
	Role    string `json:"role"`
	Members int    `json:"members"`
}

var groupIDPattern = regexp.MustCompile(`^g_[0-9a-f]{32}$`)

// ValidGroupID reports whether id has the form of a group id.
func ValidGroupID(id string) bool { return groupIDPattern.MatchString(id) }

func newGroupID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "g_" + hex.EncodeToString(b[:])
}

func validRole(r string) bool { return r == GroupAdmin || r == GroupMember }

func errNotMember(id string) error {
	// The same answer whether the group does not exist or the caller is
	// not in it: a non-member learns nothing about a group.
	return web.Errorf(http.StatusNotFound, TypeNotMember, "Not a member", "no group %s with you as a member", id)
}

// CreateGroup creates a group with the caller as its only member (an
// admin) and invites the requested accounts, and announces the group to
// the caller's devices and each invitation to the caller's and the
// invitee's devices.
func (s *Service) CreateGroup(ctx context.Context, c Caller, req *CreateGroupRequest) (*Group, error) {
	if err := s.groupLimit(s.groupCreates, "group creations", c.DeviceID); err != nil {
		return nil, err
	}
	if len(req.Members)+1 > MaxGroupMembers {
		return nil, errGroupFull()
	}
	seen := map[string]bool{c.AccountID: true}
	for i, m := range req.Members {
		if !validAccountID(m.AccountID) {
			return nil, fmt.Errorf("%w: members[%d].account_id: malformed", ErrInvalid, i)
		}
		if !validRole(m.Role) {
			return nil, fmt.Errorf("%w: members[%d].role: admin or member", ErrInvalid, i)
		}
		if seen[m.AccountID] {
			return nil, fmt.Errorf("%w: members[%d].account_id: %s appears twice (the creator is added as admin)", ErrInvalid, i, m.AccountID)
		}
		seen[m.AccountID] = true
	}
	if err := s.checkAccounts(ctx, req.Members); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Second)
	g := &Group{GroupID: newGroupID(), CreatedBy: c.AccountID, CreatedAt: now,
		Members:     []GroupMemberInfo{{AccountID: c.AccountID, Role: GroupAdmin, AddedAt: now}},
		Invitations: []GroupInvitation{}}
	p := &groupPlan{notices: []groupNotice{{kind.GroupChangeBody{GroupID: g.GroupID, Op: "created", AccountID: c.AccountID, By: c.AccountID, Role: GroupAdmin}, []string{c.AccountID}}}}
	for _, m := range req.Members {
		inv := GroupInvitation{AccountID: m.AccountID, Role: m.Role, InvitedBy: c.AccountID, InvitedAt: now, ExpiresAt: now.Add(InvitationLifetime)}
		g.Invitations = append(g.Invitations, inv)
		p.notices = append(p.notices, groupNotice{kind.GroupChangeBody{GroupID: g.GroupID, Op: "invited", AccountID: m.AccountID, By: c.AccountID, Role: m.Role},
			[]string{c.AccountID, m.AccountID}})
	}
	envs, devices, err := s.sealPlan(ctx, g.GroupID, p)
	if err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, inv := range g.Invitations {
			if err := s.checkDeclined(ctx, tx, g.GroupID, c.AccountID, inv.AccountID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO messaging_groups (id, created_by, created_at) VALUES ($1, $2, $3)`,
			g.GroupID, c.AccountID, now.Unix()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO messaging_group_members (group_id, account_id, role, added_at) VALUES ($1, $2, $3, $4)`,
			g.GroupID, c.AccountID, GroupAdmin, now.Unix()); err != nil {
			return err
		}
		for _, inv := range g.Invitations {
			if err := insertInvitation(ctx, tx, g.GroupID, inv); err != nil {
				return err
			}
		}
		return s.appendNotices(ctx, tx, envs)
	})
	if err != nil {
		var pr *web.Problem
		if errors.As(err, &pr) {
			return nil, pr
		}
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	s.wake(devices)
	return g, nil
}

// checkAccounts refuses accounts that have no active device: nobody could
// ever read the group's messages there, and a typo would go unnoticed.
func (s *Service) checkAccounts(ctx context.Context, ms []GroupMemberRequest) error {
	accounts := make([]string, len(ms))
	for i, m := range ms {
		accounts[i] = m.AccountID
	}
	ds, err := s.dir.DevicesOf(ctx, accounts)
	if err != nil {
		return err
	}
	for _, a := range accounts {
		if !slices.ContainsFunc(ds, func(d Device) bool { return d.AccountID == a }) {
			return web.Errorf(http.StatusNotFound, TypeUnknownRecipient, "Unknown account",
				"account %s has no active devices", a)
		}
	}
	return nil
}

func validAccountID(id string) bool { return len(id) <= 128 && mailbox.ValidDeviceID(id) }

func accountsOf(ms []GroupMemberInfo) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.AccountID
	}
	return out
}

// GetGroup returns a group the caller is a member of, as it was at one
// moment (members and invitations from one snapshot).
func (s *Service) GetGroup(ctx context.Context, c Caller, id string) (*Group, error) {
	g, err := s.readGroup(ctx, id)
	if err != nil {
		return nil, err
	}
	if g == nil || g.role(c.AccountID) == "" {
		return nil, errNotMember(id)
	}
	return g, nil
}

// loadGroup reads a group, its members and its pending invitations (those
// not expired), nil if there is none.
func (s *Service) loadGroup(ctx context.Context, tx *sql.Tx, id string) (*Group, error) {
	if !ValidGroupID(id) {
		return nil, nil
	}
	g := &Group{GroupID: id, Invitations: []GroupInvitation{}}
	var created int64
	err := tx.QueryRowContext(ctx, `SELECT created_by, created_at FROM messaging_groups WHERE id = $1`, id).Scan(&g.CreatedBy, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	g.CreatedAt = time.Unix(created, 0).UTC()
	rs, err := tx.QueryContext(ctx, `SELECT account_id, role, added_at FROM messaging_group_members WHERE group_id = $1 ORDER BY added_at, account_id`, id)
	if err != nil {
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var m GroupMemberInfo
		var added int64
		if err := rs.Scan(&m.AccountID, &m.Role, &added); err != nil {
			return nil, fmt.Errorf("messaging.group: %w", err)
		}
		m.AddedAt = time.Unix(added, 0).UTC()
		g.Members = append(g.Members, m)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	rs.Close()
	is, err := tx.QueryContext(ctx, `SELECT account_id, role, invited_by, invited_at, expires_at FROM messaging_group_invitations
		WHERE group_id = $1 AND expires_at > $2 ORDER BY invited_at, account_id`, id, s.now().Unix())
	if err != nil {
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	defer is.Close()
	for is.Next() {
		var inv GroupInvitation
		var at, exp int64
		if err := is.Scan(&inv.AccountID, &inv.Role, &inv.InvitedBy, &at, &exp); err != nil {
			return nil, fmt.Errorf("messaging.group: %w", err)
		}
		inv.InvitedAt, inv.ExpiresAt = time.Unix(at, 0).UTC(), time.Unix(exp, 0).UTC()
		g.Invitations = append(g.Invitations, inv)
	}
	return g, is.Err()
}

func (g *Group) role(account string) string {
	for _, m := range g.Members {
		if m.AccountID == account {
			return m.Role
		}
	}
	return ""
}

// invitation returns account's pending invitation, nil if there is none.
func (g *Group) invitation(account string) *GroupInvitation {
	for i := range g.Invitations {
		if g.Invitations[i].AccountID == account {
			return &g.Invitations[i]
		}
	}
	return nil
}

func (g *Group) admins() int {
	n := 0
	for _, m := range g.Members {
		if m.Role == GroupAdmin {
			n++
		}
	}
	return n
}

// ListGroups returns the caller's groups.
func (s *Service) ListGroups(ctx context.Context, c Caller) (*GroupList, error) {
	rs, err := s.db.Query(ctx, `SELECT m.group_id, m.role,
			(SELECT COUNT(*) FROM messaging_group_members o WHERE o.group_id = m.group_id)
		FROM messaging_group_members m WHERE m.account_id = $1 ORDER BY m.group_id`, c.AccountID)
	if err != nil {
		return nil, fmt.Errorf("messaging.groups: %w", err)
	}
	defer rs.Close()
	out := &GroupList{Groups: []GroupSummary{}}
	for rs.Next() {
		var g GroupSummary
		if err := rs.Scan(&g.GroupID, &g.Role, &g.Members); err != nil {
			return nil, fmt.Errorf("messaging.groups: %w", err)
		}
		out.Groups = append(out.Groups, g)
	}
	return out, rs.Err()
}

// AddGroupMember invites an account to a group; only an admin may. The
// account becomes a member when it accepts (AcceptInvitation).
func (s *Service) AddGroupMember(ctx context.Context, c Caller, id string, req *GroupMemberRequest) (*Group, error) {
	if err := s.groupLimit(s.groupChanges, "group changes", c.DeviceID); err != nil {
		return nil, err
	}
	if !validAccountID(req.AccountID) {
		return nil, fmt.Errorf("%w: account_id: malformed", ErrInvalid)
	}
	if !validRole(req.Role) {
		return nil, fmt.Errorf("%w: role: admin or member", ErrInvalid)
	}
	if err := s.checkAccounts(ctx, []GroupMemberRequest{*req}); err != nil {
		return nil, err
	}
	return s.changeGroup(ctx, id, func(g *Group) (*groupPlan, error) {
		if g == nil || g.role(c.AccountID) == "" {
			return nil, errNotMember(id)
		}
		if g.role(c.AccountID) != GroupAdmin {
			return nil, web.Errorf(http.StatusForbidden, TypeNotAdmin, "Not a group admin", "only an admin invites members")
		}
		if g.role(req.AccountID) != "" {
			return nil, web.Errorf(http.StatusConflict, TypeAlreadyMember, "Already a member", "%s is already a member", req.AccountID)
		}
		if g.invitation(req.AccountID) != nil {
			return nil, web.Errorf(http.StatusConflict, TypeAlreadyInvited, "Already invited", "%s is already invited; the invitation waits for an answer", req.AccountID)
		}
		if len(g.Members)+len(g.Invitations)+1 > MaxGroupMembers {
			return nil, errGroupFull()
		}
		now := s.now().UTC().Truncate(time.Second)
		inv := GroupInvitation{AccountID: req.AccountID, Role: req.Role, InvitedBy: c.AccountID, InvitedAt: now, ExpiresAt: now.Add(InvitationLifetime)}
		return &groupPlan{
			notices: []groupNotice{{kind.GroupChangeBody{GroupID: id, Op: "invited", AccountID: req.AccountID, By: c.AccountID, Role: req.Role},
				append(accountsOf(g.Members), req.AccountID)}},
			apply: func(ctx context.Context, tx *sql.Tx) error {
				if err := s.checkDeclined(ctx, tx, id, c.AccountID, req.AccountID); err != nil {
					return err
				}
				return insertInvitation(ctx, tx, id, inv)
			},
		}, nil
	})
}

// SetGroupRole changes a member's role; only an admin may, and the last
// admin cannot step down while other members remain.
func (s *Service) SetGroupRole(ctx context.Context, c Caller, id, account string, req *GroupRoleRequest) (*Group, error) {
	if err := s.groupLimit(s.groupChanges, "group changes", c.DeviceID); err != nil {
		return nil, err
	}
	if !validRole(req.Role) {
		return nil, fmt.Errorf("%w: role: admin or member", ErrInvalid)
	}
	return s.changeGroup(ctx, id, func(g *Group) (*groupPlan, error) {
		if g == nil || g.role(c.AccountID) == "" {
			return nil, errNotMember(id)
		}
		if g.role(c.AccountID) != GroupAdmin {
			return nil, web.Errorf(http.StatusForbidden, TypeNotAdmin, "Not a group admin", "only an admin changes roles")
		}
		old := g.role(account)
		if old == "" {
			// An invitee too: a role change never makes a member.
			return nil, web.Errorf(http.StatusNotFound, TypeNotMember, "Not a member", "%s is not a member", account)
		}
		if old == GroupAdmin && req.Role != GroupAdmin && g.admins() == 1 && len(g.Members) > 1 {
			return nil, web.Errorf(http.StatusConflict, TypeLastAdmin, "Last admin", "make another member admin first")
		}
		return &groupPlan{
			notices: []groupNotice{{kind.GroupChangeBody{GroupID: id, Op: "role", AccountID: account, By: c.AccountID, Role: req.Role}, accountsOf(g.Members)}},
			apply: func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `UPDATE messaging_group_members SET role = $3 WHERE group_id = $1 AND account_id = $2`, id, account, req.Role)
				return err
			},
		}, nil
	})
}

// RemoveGroupMember removes account from a group: an admin removes
// anyone, a member removes only themselves (leaves). The last admin
// cannot leave while other members remain; the last member leaving ends
// the group, its invitations with it. An admin removing an invitee
// withdraws the invitation.
func (s *Service) RemoveGroupMember(ctx context.Context, c Caller, id, account string) (*Group, error) {
	if account != c.AccountID { // leaving is never limited
		if err := s.groupLimit(s.groupChanges, "group changes", c.DeviceID); err != nil {
			return nil, err
		}
	}
	return s.changeGroup(ctx, id, func(g *Group) (*groupPlan, error) {
		if g == nil || g.role(c.AccountID) == "" {
			return nil, errNotMember(id)
		}
		role := g.role(account)
		op := "removed"
		if account == c.AccountID {
			op = "left"
		} else if g.role(c.AccountID) != GroupAdmin {
			return nil, web.Errorf(http.StatusForbidden, TypeNotAdmin, "Not a group admin", "only an admin removes other members")
		}
		if role == "" && account != c.AccountID && g.invitation(account) != nil {
			return &groupPlan{
				notices: []groupNotice{{kind.GroupChangeBody{GroupID: id, Op: "uninvited", AccountID: account, By: c.AccountID},
					append(accountsOf(g.Members), account)}},
				apply: func(ctx context.Context, tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, `DELETE FROM messaging_group_invitations WHERE group_id = $1 AND account_id = $2`, id, account)
					return err
				},
			}, nil
		}
		if role == "" {
			return nil, web.Errorf(http.StatusNotFound, TypeNotMember, "Not a member", "%s is not a member", account)
		}
		if role == GroupAdmin && g.admins() == 1 && len(g.Members) > 1 {
			return nil, web.Errorf(http.StatusConflict, TypeLastAdmin, "Last admin", "make another member admin first")
		}
		return &groupPlan{
			notices: []groupNotice{{kind.GroupChangeBody{GroupID: id, Op: op, AccountID: account, By: c.AccountID}, accountsOf(g.Members)}},
			apply: func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `DELETE FROM messaging_group_members WHERE group_id = $1 AND account_id = $2`, id, account); err != nil {
					return err
				}
				if len(g.Members) == 1 { // the last member: the group ends
					_, err := tx.ExecContext(ctx, `DELETE FROM messaging_groups WHERE id = $1`, id)
					return err
				}
				return nil
			},
		}, nil
	})
}

// groupNotice is one group.change notice and the accounts whose active
// devices receive it.
type groupNotice struct {
	change   kind.GroupChangeBody
	accounts []string
}

// groupPlan is one change of a group: the notices announcing it, the
// roster a newcomer receives first, and the statements that make it.
type groupPlan struct {
	notices []groupNotice
	roster  *rosterFor
	apply   func(ctx context.Context, tx *sql.Tx) error
}

// key identifies what a plan announces to whom, to see whether the group
// changed between sealing the notices and the transaction.
func (p *groupPlan) key() string {
	var b strings.Builder
	for _, n := range p.notices {
		as := slices.Clone(n.accounts)
		sort.Strings(as)
		fmt.Fprintf(&b, "%+v %v;", n.change, as)
	}
	if p.roster != nil {
		fmt.Fprintf(&b, "roster %s %+v", p.roster.account, p.roster.group.Members)
	}
	return b.String()
}

// changeGroup runs one change: decide reads the group (nil if there is
// none) and returns the plan. The notices are sealed first, outside the
// transaction, for the devices of the accounts as they are now; inside,
// under the group's lock, decide runs again on the group as it is then,
// and if its plan differs (the group changed at the same time) the whole
// change starts over, a few times at most.
func (s *Service) changeGroup(ctx context.Context, id string, decide func(g *Group) (*groupPlan, error)) (*Group, error) {
	for range 3 {
		before, err := s.readGroup(ctx, id)
		if err != nil {
			return nil, err
		}
		p, err := decide(before)
		if err != nil {
			return nil, err
		}
		envs, devices, err := s.sealPlan(ctx, id, p)
		if err != nil {
			return nil, err
		}
		var after *Group
		err = s.db.Tx(ctx, func(tx *sql.Tx) error {
			if err := s.db.Lock(ctx, tx, "messaging.group:"+id); err != nil {
				return err
			}
			g, err := s.loadGroup(ctx, tx, id)
			if err != nil {
				return err
			}
			now, err := decide(g)
			if err != nil {
				return err
			}
			if now.key() != p.key() {
				return errGroupChanged
			}
			if err := now.apply(ctx, tx); err != nil {
				return err
			}
			if after, err = s.loadGroup(ctx, tx, id); err != nil {
				return err
			}
			return s.appendNotices(ctx, tx, envs)
		})
		if errors.Is(err, errGroupChanged) {
			continue
		}
		if err != nil {
			var pr *web.Problem
			if errors.As(err, &pr) {
				return nil, pr
			}
			return nil, fmt.Errorf("messaging.group: %w", err)
		}
		s.wake(devices)
		if after == nil { // the group ended
			after = &Group{GroupID: id, Members: []GroupMemberInfo{}, Invitations: []GroupInvitation{}}
		}
		return after, nil
	}
	return nil, web.Errorf(http.StatusConflict, web.TypeConflict, "Group changed", "the group changed at the same time; try again")
}

var errGroupChanged = errors.New("messaging.group: changed concurrently")

// readGroup loads a group outside changeGroup's transaction, in one
// snapshot. Each statement outside a transaction sees what was committed
// when it started: a change committed between the reads of the members
// and of the invitations showed a group that never was (an invitee
// neither invited nor a member), and decide refused on it with 404 at
// once, where the locked reading would have seen the change.
func (s *Service) readGroup(ctx context.Context, id string) (*Group, error) {
	var g *Group
	err := s.db.ReadTx(ctx, func(tx *sql.Tx) error {
		var err error
		g, err = s.loadGroup(ctx, tx, id)
		return err
	})
	return g, err
}

// rosterFor asks for a group's members to be listed, as group.change
// notices with op member, to the devices of one account.
type rosterFor struct {
	account string
	group   *Group
}

// rosterNotices returns a group.change notice with op member for every
// member of g, addressed to each of devices.
func (s *Service) rosterNotices(g *Group, devices []string) ([]mailbox.Envelope, error) {
	var envs []mailbox.Envelope
	for _, m := range g.Members {
		msg, err := kind.New(newMessageID(), s.now(), &kind.GroupChangeBody{GroupID: g.GroupID, Op: "member",
			AccountID: m.AccountID, By: g.CreatedBy, Role: m.Role})
		if err != nil {
			return nil, err
		}
		sealed, err := s.sealNotices(g.GroupID, msg, devices)
		if err != nil {
			return nil, err
		}
		envs = append(envs, sealed...)
	}
	return envs, nil
}

// sealPlan seals the plan's notices — the roster first — for the active
// devices of their accounts, and returns them with every device to wake.
func (s *Service) sealPlan(ctx context.Context, id string, p *groupPlan) ([]mailbox.Envelope, []string, error) {
	if s.mailbox == nil {
		return nil, nil, nil
	}
	set := map[string]bool{}
	for _, n := range p.notices {
		for _, a := range n.accounts {
			set[a] = true
		}
	}
	if p.roster != nil {
		set[p.roster.account] = true
	}
	accounts := make([]string, 0, len(set))
	for a := range set {
		accounts = append(accounts, a)
	}
	sort.Strings(accounts)
	ds, err := s.dir.DevicesOf(ctx, accounts)
	if err != nil {
		return nil, nil, err
	}
	byAccount := map[string][]string{}
	var all []string
	for _, d := range ds {
		byAccount[d.AccountID] = append(byAccount[d.AccountID], d.DeviceID)
		all = append(all, d.DeviceID)
	}
	sort.Strings(all)
	var envs []mailbox.Envelope
	if p.roster != nil {
		devs := slices.Clone(byAccount[p.roster.account])
		sort.Strings(devs)
		if envs, err = s.rosterNotices(p.roster.group, devs); err != nil {
			return nil, nil, err
		}
	}
	for i := range p.notices {
		var devs []string
		for _, a := range p.notices[i].accounts {
			devs = append(devs, byAccount[a]...)
		}
		sort.Strings(devs)
		devs = slices.Compact(devs)
		m, err := kind.New(newMessageID(), s.now(), &p.notices[i].change)
		if err != nil {
			return nil, nil, err
		}
		sealed, err := s.sealNotices(id, m, devs)
		if err != nil {
			return nil, nil, err
		}
		envs = append(envs, sealed...)
	}
	return envs, all, nil
}

// appendNotices stores sealed notices in tx.
func (s *Service) appendNotices(ctx context.Context, tx *sql.Tx, envs []mailbox.Envelope) error {
	if len(envs) == 0 || s.mailbox == nil {
		return nil
	}
	return s.mailbox.AppendTx(ctx, tx, slices.Clone(envs))
}

// wake tells devices they have new envelopes.
func (s *Service) wake(devices []string) {
	if s.notify != nil && len(devices) > 0 {
		s.notify(devices...)
	}
}

// SendRoster stores, for the calling device only, a group.change notice
// with op member for every member of a group the caller is a member of,
// and wakes the device: how a device that lost the group's notices (or
// never had them) learns whom it may encrypt the group's messages to.
func (s *Service) SendRoster(ctx context.Context, c Caller, id string) (*RosterResponse, error) {
	g, err := s.GetGroup(ctx, c, id)
	if err != nil {
		return nil, err
	}
	envs, err := s.rosterNotices(g, []string{c.DeviceID})
	if err != nil {
		return nil, err
	}
	if err := s.mailbox.Append(ctx, envs); err != nil {
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	if s.notify != nil {
		s.notify(c.DeviceID)
	}
	return &RosterResponse{GroupID: id, Members: len(g.Members)}, nil
}

// RosterResponse answers POST /v1/groups/{id}/roster (202): the member
// list is on its way to the calling device, one notice per member.
type RosterResponse struct {
	GroupID string `json:"group_id"`
	Members int    `json:"members"`
}

// groupMembers returns the accounts of a group the caller is a member of.
func (s *Service) groupMembers(ctx context.Context, c Caller, id string) ([]string, error) {
	g, err := s.GetGroup(ctx, c, id)
	if err != nil {
		return nil, err
	}
	return accountsOf(g.Members), nil
}

// groupLimit counts one group creation or change of device against l.
func (s *Service) groupLimit(l *sendLimiter, what, device string) error {
	if err := l.allow(device, s.now()); err != nil {
		var rl *RateLimitError
		if errors.As(err, &rl) {
			return &RateLimitError{RetryAfter: rl.RetryAfter, group: what, limit: l.limit}
		}
		return err
	}
	return nil
}

// Group routes.

func (s *Service) handleCreateGroup(w http.ResponseWriter, r *http.Request, c Caller) error {
	var req CreateGroupRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	g, err := s.CreateGroup(r.Context(), c, &req)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, g)
	return nil
}

func (s *Service) handleListGroups(w http.ResponseWriter, r *http.Request, c Caller) error {
	l, err := s.ListGroups(r.Context(), c)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, l)
	return nil
}

func (s *Service) handleGetGroup(w http.ResponseWriter, r *http.Request, c Caller) error {
	g, err := s.GetGroup(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, g)
	return nil
}

func (s *Service) handleGroupRoster(w http.ResponseWriter, r *http.Request, c Caller) error {
	out, err := s.SendRoster(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusAccepted, out)
	return nil
}

func (s *Service) handleAddGroupMember(w http.ResponseWriter, r *http.Request, c Caller) error {
	var req GroupMemberRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	g, err := s.AddGroupMember(r.Context(), c, r.PathValue("id"), &req)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, g)
	return nil
}

func (s *Service) handleSetGroupRole(w http.ResponseWriter, r *http.Request, c Caller) error {
	var req GroupRoleRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	g, err := s.SetGroupRole(r.Context(), c, r.PathValue("id"), r.PathValue("account"), &req)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, g)
	return nil
}

func (s *Service) handleRemoveGroupMember(w http.ResponseWriter, r *http.Request, c Caller) error {
	g, err := s.RemoveGroupMember(r.Context(), c, r.PathValue("id"), r.PathValue("account"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, g)
	return nil
}
