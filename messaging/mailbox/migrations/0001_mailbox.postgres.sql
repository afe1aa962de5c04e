-- One durable, ordered queue per device. Rows are keyed by device_id first so
-- the table can be distributed by device; nothing on the hot path joins
-- across devices.
CREATE TABLE mailbox_heads (
	device_id TEXT   PRIMARY KEY,
	last_seq  BIGINT NOT NULL
);
CREATE TABLE mailbox (
	device_id     TEXT   NOT NULL,
	seq           BIGINT NOT NULL,
	envelope_id   TEXT   NOT NULL,
	conversation  TEXT   NOT NULL,
	sender_device TEXT   NOT NULL,
	class         TEXT   NOT NULL,
	ciphertext    BYTEA  NOT NULL,
	created_at    BIGINT NOT NULL,
	expires_at    BIGINT NOT NULL,
	PRIMARY KEY (device_id, seq)
);
CREATE UNIQUE INDEX mailbox_envelope ON mailbox (device_id, envelope_id);
CREATE INDEX mailbox_expiry ON mailbox (expires_at);
