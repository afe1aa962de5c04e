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

// CreateGroup creates a group with the caller as admin and the requested
// members, and announces each to every member's devices.
func (s *Service) CreateGroup(ctx context.Context, c Caller, req *CreateGroupRequest) (*Group, error) {
	if err := s.groupLimit(s.groupCreates, "group creations", c.DeviceID); err != nil {
		return nil, err
	}
	if len(req.Members)+1 > MaxGroupMembers {
		return nil, fmt.Errorf("%w: a group has at most %d members", ErrInvalid, MaxGroupMembers)
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
	g := &Group{GroupID: newGroupID(), CreatedBy: c.AccountID, CreatedAt: s.now().UTC().Truncate(time.Second)}
	g.Members = append(g.Members, GroupMemberInfo{AccountID: c.AccountID, Role: GroupAdmin, AddedAt: g.CreatedAt})
	for _, m := range req.Members {
		g.Members = append(g.Members, GroupMemberInfo{AccountID: m.AccountID, Role: m.Role, AddedAt: g.CreatedAt})
	}
	changes := []kind.GroupChangeBody{{GroupID: g.GroupID, Op: "created", AccountID: c.AccountID, By: c.AccountID, Role: GroupAdmin}}
	for _, m := range req.Members {
		changes = append(changes, kind.GroupChangeBody{GroupID: g.GroupID, Op: "added", AccountID: m.AccountID, By: c.AccountID, Role: m.Role})
	}
	err := s.changeGroup(ctx, g.GroupID, accountsOf(g.Members), changes, nil, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO messaging_groups (id, created_by, created_at) VALUES ($1, $2, $3)`,
			g.GroupID, c.AccountID, g.CreatedAt.Unix()); err != nil {
			return err
		}
		for _, m := range g.Members {
			if _, err := tx.ExecContext(ctx, `INSERT INTO messaging_group_members (group_id, account_id, role, added_at) VALUES ($1, $2, $3, $4)`,
				g.GroupID, m.AccountID, m.Role, g.CreatedAt.Unix()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
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

// GetGroup returns a group the caller is a member of.
func (s *Service) GetGroup(ctx context.Context, c Caller, id string) (*Group, error) {
	g, err := s.loadGroup(ctx, s.db.QueryRow, s.db.Query, id)
	if err != nil {
		return nil, err
	}
	if g == nil || g.role(c.AccountID) == "" {
		return nil, errNotMember(id)
	}
	return g, nil
}

type (
	queryRowFunc func(ctx context.Context, q string, args ...any) *sql.Row
	queryFunc    func(ctx context.Context, q string, args ...any) (*sql.Rows, error)
)

// loadGroup reads a group and its members, nil if there is none.
func (s *Service) loadGroup(ctx context.Context, row queryRowFunc, rows queryFunc, id string) (*Group, error) {
	if !ValidGroupID(id) {
		return nil, nil
	}
	g := &Group{GroupID: id}
	var created int64
	err := row(ctx, `SELECT created_by, created_at FROM messaging_groups WHERE id = $1`, id).Scan(&g.CreatedBy, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	g.CreatedAt = time.Unix(created, 0).UTC()
	rs, err := rows(ctx, `SELECT account_id, role, added_at FROM messaging_group_members WHERE group_id = $1 ORDER BY added_at, account_id`, id)
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
	return g, rs.Err()
}

func (g *Group) role(account string) string {
	for _, m := range g.Members {
		if m.AccountID == account {
			return m.Role
		}
	}
	return ""
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

// AddGroupMember adds an account to a group; only an admin may.
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
	return s.editGroup(ctx, c, id, func(g *Group) (*kind.GroupChangeBody, string, error) {
		if g.role(c.AccountID) != GroupAdmin {
			return nil, "", web.Errorf(http.StatusForbidden, TypeNotAdmin, "Not a group admin", "only an admin adds members")
		}
		if g.role(req.AccountID) != "" {
			return nil, "", web.Errorf(http.StatusConflict, TypeAlreadyMember, "Already a member", "%s is already a member", req.AccountID)
		}
		if len(g.Members)+1 > MaxGroupMembers {
			return nil, "", fmt.Errorf("%w: a group has at most %d members", ErrInvalid, MaxGroupMembers)
		}
		return &kind.GroupChangeBody{GroupID: id, Op: "added", AccountID: req.AccountID, By: c.AccountID, Role: req.Role},
			`INSERT INTO messaging_group_members (group_id, account_id, role, added_at) VALUES ($1, $2, $3, $4)`, nil
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
	return s.editGroup(ctx, c, id, func(g *Group) (*kind.GroupChangeBody, string, error) {
		if g.role(c.AccountID) != GroupAdmin {
			return nil, "", web.Errorf(http.StatusForbidden, TypeNotAdmin, "Not a group admin", "only an admin changes roles")
		}
		old := g.role(account)
		if old == "" {
			return nil, "", web.Errorf(http.StatusNotFound, TypeNotMember, "Not a member", "%s is not a member", account)
		}
		if old == GroupAdmin && req.Role != GroupAdmin && g.admins() == 1 && len(g.Members) > 1 {
			return nil, "", web.Errorf(http.StatusConflict, TypeLastAdmin, "Last admin", "make another member admin first")
		}
		return &kind.GroupChangeBody{GroupID: id, Op: "role", AccountID: account, By: c.AccountID, Role: req.Role},
			`UPDATE messaging_group_members SET role = $3 WHERE group_id = $1 AND account_id = $2`, nil
	})
}

// RemoveGroupMember removes account from a group: an admin removes
// anyone, a member removes only themselves (leaves). The last admin
// cannot leave while other members remain; the last member leaving ends
// the group.
func (s *Service) RemoveGroupMember(ctx context.Context, c Caller, id, account string) (*Group, error) {
	if account != c.AccountID { // leaving is never limited
		if err := s.groupLimit(s.groupChanges, "group changes", c.DeviceID); err != nil {
			return nil, err
		}
	}
	return s.editGroup(ctx, c, id, func(g *Group) (*kind.GroupChangeBody, string, error) {
		role := g.role(account)
		op := "removed"
		if account == c.AccountID {
			op = "left"
		} else if g.role(c.AccountID) != GroupAdmin {
			return nil, "", web.Errorf(http.StatusForbidden, TypeNotAdmin, "Not a group admin", "only an admin removes other members")
		}
		if role == "" {
			return nil, "", web.Errorf(http.StatusNotFound, TypeNotMember, "Not a member", "%s is not a member", account)
		}
		if role == GroupAdmin && g.admins() == 1 && len(g.Members) > 1 {
			return nil, "", web.Errorf(http.StatusConflict, TypeLastAdmin, "Last admin", "make another member admin first")
		}
		return &kind.GroupChangeBody{GroupID: id, Op: op, AccountID: account, By: c.AccountID},
			`DELETE FROM messaging_group_members WHERE group_id = $1 AND account_id = $2`, nil
	})
}

// editGroup runs one membership change: decide reads the group inside the
// transaction (the caller must be a member) and returns the change to
// announce and the statement that makes it, run with the group id, the
// account and (for an insert or a role change) the role.
func (s *Service) editGroup(ctx context.Context, c Caller, id string,
	decide func(g *Group) (*kind.GroupChangeBody, string, error)) (*Group, error) {
	if !ValidGroupID(id) {
		return nil, errNotMember(id)
	}
	// The announcement goes to the members before and after the change;
	// their devices are looked up first, outside the transaction, from
	// the member list as it is now. A concurrent change is caught inside.
	before, err := s.loadGroup(ctx, s.db.QueryRow, s.db.Query, id)
	if err != nil {
		return nil, err
	}
	if before == nil || before.role(c.AccountID) == "" {
		return nil, errNotMember(id)
	}
	change, stmt, err := decide(before)
	if err != nil {
		return nil, err
	}
	audience := accountsOf(before.Members)
	var roster *rosterFor
	if change.Op == "added" {
		audience = append(audience, change.AccountID)
		// The newcomer also learns who was there before: its client
		// encrypts to no member it has not been told of.
		roster = &rosterFor{account: change.AccountID, group: before}
	}
	var after *Group
	err = s.changeGroup(ctx, id, audience, []kind.GroupChangeBody{*change}, roster, func(tx *sql.Tx) error {
		g, err := s.loadGroup(ctx, tx.QueryRowContext, tx.QueryContext, id)
		if err != nil {
			return err
		}
		if g == nil || g.role(c.AccountID) == "" {
			return errNotMember(id)
		}
		if _, _, err := decide(g); err != nil {
			return err // the group changed since the first look
		}
		if len(g.Members) != len(before.Members) {
			return errGroupChanged
		}
		switch change.Op {
		case "added":
			_, err = tx.ExecContext(ctx, stmt, id, change.AccountID, change.Role, s.now().Unix())
		case "role":
			_, err = tx.ExecContext(ctx, stmt, id, change.AccountID, change.Role)
		default:
			_, err = tx.ExecContext(ctx, stmt, id, change.AccountID)
		}
		if err != nil {
			return err
		}
		if after, err = s.loadGroup(ctx, tx.QueryRowContext, tx.QueryContext, id); err != nil {
			return err
		}
		if len(after.Members) == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM messaging_groups WHERE id = $1`, id)
		}
		return err
	})
	if errors.Is(err, errGroupChanged) {
		return nil, web.Errorf(http.StatusConflict, web.TypeConflict, "Group changed", "the group changed at the same time; try again")
	}
	if err != nil {
		var p *web.Problem
		if errors.As(err, &p) {
			return nil, p
		}
		return nil, fmt.Errorf("messaging.group: %w", err)
	}
	return after, nil
}

var errGroupChanged = errors.New("messaging.group: changed concurrently")

// rosterFor asks changeGroup to list a group's members, as group.change
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

// changeGroup runs change and stores a group.change notice for every
// active device of the audience accounts, and the roster for a newcomer,
// in one transaction, then wakes those devices.
func (s *Service) changeGroup(ctx context.Context, id string, audience []string, changes []kind.GroupChangeBody, roster *rosterFor, change func(tx *sql.Tx) error) error {
	ds, err := s.dir.DevicesOf(ctx, audience)
	if err != nil {
		return err
	}
	devices := make([]string, len(ds))
	var newcomer []string
	for i, d := range ds {
		devices[i] = d.DeviceID
		if roster != nil && d.AccountID == roster.account {
			newcomer = append(newcomer, d.DeviceID)
		}
	}
	sort.Strings(devices)
	var envs []mailbox.Envelope
	if roster != nil && s.mailbox != nil {
		if envs, err = s.rosterNotices(roster.group, newcomer); err != nil {
			return err
		}
	}
	for i := range changes {
		if s.mailbox == nil {
			break
		}
		m, err := kind.New(newMessageID(), s.now(), &changes[i])
		if err != nil {
			return err
		}
		sealed, err := s.sealNotices(id, m, devices)
		if err != nil {
			return err
		}
		envs = append(envs, sealed...)
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := change(tx); err != nil {
			return err
		}
		if len(envs) == 0 || s.mailbox == nil {
			return nil
		}
		return s.mailbox.AppendTx(ctx, tx, slices.Clone(envs))
	})
	if err == nil && s.notify != nil && len(devices) > 0 {
		s.notify(devices...)
	}
	return err
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
