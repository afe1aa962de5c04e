-- Attachment blobs: ciphertext the client encrypted with a key that only
-- travels inside end-to-end messages. The id is the capability to fetch
-- it; the server knows who uploaded how much, and when.
CREATE TABLE messaging_blobs (
	id              TEXT    PRIMARY KEY,
	uploader        TEXT    NOT NULL, -- account
	size            BIGINT  NOT NULL,
	sha256          TEXT    NOT NULL,
	data            BYTEA   NOT NULL,
	created_at      BIGINT  NOT NULL,
	expires_at      BIGINT  NOT NULL
);
CREATE INDEX messaging_blobs_uploader ON messaging_blobs (uploader, expires_at);
CREATE INDEX messaging_blobs_expires ON messaging_blobs (expires_at);
