-- Group conversations. The server knows who is in a group and who may
-- change it, because it must know whom to deliver to; the group's name,
-- picture and messages travel end to end and are not here.
CREATE TABLE messaging_groups (
	id         TEXT    PRIMARY KEY,
	created_by TEXT    NOT NULL,
	created_at BIGINT  NOT NULL
);

CREATE TABLE messaging_group_members (
	group_id   TEXT    NOT NULL REFERENCES messaging_groups (id) ON DELETE CASCADE,
	account_id TEXT    NOT NULL,
	role       TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
	added_at   BIGINT  NOT NULL,
	PRIMARY KEY (group_id, account_id)
);

CREATE INDEX messaging_group_members_account ON messaging_group_members (account_id);
