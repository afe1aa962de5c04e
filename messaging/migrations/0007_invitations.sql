-- Invitations: adding someone to a group invites them; they become a
-- member only when they accept. Pending invitations count against the
-- group's member limit; an invitation not answered by expires_at is void
-- (and swept). A decline blocks further invitations of that account to
-- the group, and by the same inviter to any group, until blocked_until.
CREATE TABLE messaging_group_invitations (
	group_id   TEXT   NOT NULL REFERENCES messaging_groups (id) ON DELETE CASCADE,
	account_id TEXT   NOT NULL,
	role       TEXT   NOT NULL CHECK (role IN ('admin', 'member')),
	invited_by TEXT   NOT NULL,
	invited_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	PRIMARY KEY (group_id, account_id)
);

CREATE INDEX messaging_group_invitations_account ON messaging_group_invitations (account_id);

CREATE TABLE messaging_invitation_declines (
	group_id      TEXT   NOT NULL,
	account_id    TEXT   NOT NULL,
	invited_by    TEXT   NOT NULL,
	blocked_until BIGINT NOT NULL,
	PRIMARY KEY (group_id, account_id)
);

CREATE INDEX messaging_invitation_declines_inviter ON messaging_invitation_declines (invited_by, account_id);
