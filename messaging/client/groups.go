package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/kanal-server/kanal/messaging"
)

// Groups. The server keeps a group's member list (it must know whom to
// deliver to); everything members say, the group's name included, goes
// end to end with Send to Peer{GroupID}. Each change of the list reaches
// every member as a group.change notice from the server, and Send
// encrypts only to the members those notices named (GroupMembers). A
// device that has no such notices for a group asks for them with
// RequestRoster and receives them on its stream.

// CreateGroup creates a group with this account as its admin and invites
// members: each becomes a member when it accepts (AcceptInvitation).
func (c *Client) CreateGroup(ctx context.Context, members ...messaging.GroupMemberRequest) (*messaging.Group, error) {
	var g messaging.Group
	if members == nil {
		members = []messaging.GroupMemberRequest{}
	}
	err := c.doStatus(ctx, http.MethodPost, "/v1/groups", &messaging.CreateGroupRequest{Members: members}, &g, http.StatusCreated)
	return &g, err
}

// Group returns a group this account is a member of.
func (c *Client) Group(ctx context.Context, id string) (*messaging.Group, error) {
	var g messaging.Group
	err := c.do(ctx, http.MethodGet, "/v1/groups/"+url.PathEscape(id), nil, &g)
	return &g, err
}

// Groups lists this account's groups.
func (c *Client) Groups(ctx context.Context) (*messaging.GroupList, error) {
	var l messaging.GroupList
	err := c.do(ctx, http.MethodGet, "/v1/groups", nil, &l)
	return &l, err
}

// AddGroupMember invites an account (admins only); it becomes a member
// when it accepts.
func (c *Client) AddGroupMember(ctx context.Context, id, account, role string) (*messaging.Group, error) {
	var g messaging.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(id)+"/members",
		&messaging.GroupMemberRequest{AccountID: account, Role: role}, &g)
	return &g, err
}

// RemoveGroupMember removes an account or withdraws its invitation
// (admins), or leaves the group (account is this account's own).
func (c *Client) RemoveGroupMember(ctx context.Context, id, account string) (*messaging.Group, error) {
	var g messaging.Group
	err := c.do(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(id)+"/members/"+url.PathEscape(account), nil, &g)
	return &g, err
}

// RequestRoster asks the server to send this device the group's member
// list as group.change notices (op member); they arrive on the stream like
// any notice, and Send uses them once they have been received.
func (c *Client) RequestRoster(ctx context.Context, id string) error {
	var out messaging.RosterResponse
	return c.doStatus(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(id)+"/roster", nil, &out, http.StatusAccepted)
}

// Invitations lists this account's pending invitations to groups.
func (c *Client) Invitations(ctx context.Context) (*messaging.InvitationList, error) {
	var l messaging.InvitationList
	err := c.do(ctx, http.MethodGet, "/v1/invitations", nil, &l)
	return &l, err
}

// AcceptInvitation makes this account a member of a group it is invited
// to. The member list reaches this device as group.change notices on the
// stream, before the notice of its own joining.
func (c *Client) AcceptInvitation(ctx context.Context, id string) (*messaging.Group, error) {
	var g messaging.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(id)+"/invitation/accept", nil, &g)
	return &g, err
}

// DeclineInvitation refuses an invitation to a group: this account is not
// invited to it again, nor by the same inviter to any group, for
// messaging.DeclineBlock.
func (c *Client) DeclineInvitation(ctx context.Context, id string) (*messaging.DeclineResponse, error) {
	var out messaging.DeclineResponse
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(id)+"/invitation/decline", nil, &out)
	return &out, err
}
