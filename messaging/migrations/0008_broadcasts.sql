-- Broadcasts: an organisation's announcements to the accounts that follow
-- it. The announcement itself is stored once (mailbox_shared, same id);
-- each follower device's mailbox holds a reference to it.
CREATE TABLE messaging_followers (
	org_id      TEXT   NOT NULL,
	account_id  TEXT   NOT NULL,
	followed_at BIGINT NOT NULL,
	PRIMARY KEY (org_id, account_id)
);
CREATE INDEX messaging_followers_account ON messaging_followers (account_id);

CREATE TABLE messaging_broadcasts (
	id            TEXT   PRIMARY KEY,
	org_id        TEXT   NOT NULL,
	sender_device TEXT   NOT NULL,
	client_id     TEXT   NOT NULL,
	created_at    BIGINT NOT NULL,
	expires_at    BIGINT NOT NULL,
	devices       BIGINT NOT NULL
);
CREATE UNIQUE INDEX messaging_broadcasts_client ON messaging_broadcasts (sender_device, client_id);
CREATE INDEX messaging_broadcasts_expiry ON messaging_broadcasts (expires_at);
