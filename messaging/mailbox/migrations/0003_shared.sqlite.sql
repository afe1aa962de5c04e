-- A body stored once for many mailboxes: a broadcast's announcement. Each
-- recipient's mailbox row (class 'broadcast') holds the body's id as its
-- ciphertext; reading the mailbox puts the body back.
CREATE TABLE mailbox_shared (
	id         TEXT   PRIMARY KEY,
	body       BLOB   NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX mailbox_shared_expiry ON mailbox_shared (expires_at);
