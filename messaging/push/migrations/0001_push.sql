-- The deployment's VAPID key pair (RFC 8292). One row, created by the first
-- node that starts; every node signs with it. The private scalar is sealed
-- with AES-256-GCM under a key derived from the deployment CA key, so the
-- database alone cannot sign for the deployment.
CREATE TABLE push_vapid (
	singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
	public_key     TEXT    NOT NULL, -- base64url, uncompressed P-256 point
	sealed_private TEXT    NOT NULL, -- base64url of nonce || ciphertext
	created_at     BIGINT  NOT NULL
);

-- One push subscription per device, registered by the device itself.
CREATE TABLE push_subscriptions (
	device_id    TEXT   PRIMARY KEY,
	endpoint     TEXT   NOT NULL,
	p256dh       TEXT   NOT NULL, -- base64url, 65 bytes decoded
	auth         TEXT   NOT NULL, -- base64url, 16 bytes decoded
	created_at   BIGINT NOT NULL, -- unix ms
	last_sent_at BIGINT NOT NULL DEFAULT 0
);

-- The durable queue: at most one job per device, which is what coalesces
-- pushes. Times are unix milliseconds.
CREATE TABLE push_jobs (
	device_id   TEXT    PRIMARY KEY,
	notified_at BIGINT  NOT NULL, -- the latest envelope notification
	due_at      BIGINT  NOT NULL, -- not taken before
	attempts    INTEGER NOT NULL DEFAULT 0,
	lease_until BIGINT  NOT NULL DEFAULT 0 -- a node is sending until then
);
CREATE INDEX push_jobs_due ON push_jobs (due_at);
