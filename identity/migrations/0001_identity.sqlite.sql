-- Accounts: one per verified e-mail address. password is a PHC argon2id
-- string, or empty while the account has none.
CREATE TABLE identity_accounts (
	id         TEXT   PRIMARY KEY,
	email      TEXT   NOT NULL UNIQUE,
	password   TEXT   NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);

-- Pending sign-ups, one per address. code_hash is HMAC-SHA256 of the code
-- under a server secret; empty when the address already had an account and
-- was sent a notice instead of a code. sends/window_start rate-limit mails.
CREATE TABLE identity_signups (
	email        TEXT    PRIMARY KEY,
	code_hash    TEXT    NOT NULL,
	expires_at   BIGINT  NOT NULL,
	attempts     INTEGER NOT NULL,
	used         INTEGER NOT NULL,
	sends        INTEGER NOT NULL,
	window_start BIGINT  NOT NULL
);

-- Setup tokens (SHA-256 hex) handed out by signup verification.
CREATE TABLE identity_setup_tokens (
	token_hash TEXT   PRIMARY KEY,
	account_id TEXT   NOT NULL REFERENCES identity_accounts (id),
	expires_at BIGINT NOT NULL
);

-- Devices and their current certificate.
CREATE TABLE identity_devices (
	id          TEXT    PRIMARY KEY,
	account_id  TEXT    NOT NULL REFERENCES identity_accounts (id),
	name        TEXT    NOT NULL,
	level       INTEGER NOT NULL,
	cert_pem    TEXT    NOT NULL,
	cert_serial TEXT    NOT NULL,
	expires_at  BIGINT  NOT NULL,
	created_at  BIGINT  NOT NULL,
	revoked_at  BIGINT
);
CREATE INDEX identity_devices_account ON identity_devices (account_id);

-- Every device certificate issued, for the CRL: a certificate is revoked
-- with its device, or when a renewal replaces it.
CREATE TABLE identity_device_certs (
	serial     TEXT   PRIMARY KEY,
	device_id  TEXT   NOT NULL REFERENCES identity_devices (id),
	not_after  BIGINT NOT NULL,
	revoked_at BIGINT
);
CREATE INDEX identity_device_certs_revoked ON identity_device_certs (revoked_at);

-- Login challenges: single use, bound to a device and a purpose.
CREATE TABLE identity_challenges (
	id         TEXT    PRIMARY KEY,
	device_id  TEXT    NOT NULL,
	purpose    TEXT    NOT NULL,
	nonce      TEXT    NOT NULL,
	expires_at BIGINT  NOT NULL,
	used       INTEGER NOT NULL
);

-- Sessions (bearer tokens stored as SHA-256 hex), bound to a device.
CREATE TABLE identity_sessions (
	token_hash TEXT    PRIMARY KEY,
	family     TEXT    NOT NULL,
	account_id TEXT    NOT NULL,
	device_id  TEXT    NOT NULL REFERENCES identity_devices (id),
	level      INTEGER NOT NULL,
	expires_at BIGINT  NOT NULL,
	revoked    INTEGER NOT NULL
);
CREATE INDEX identity_sessions_device ON identity_sessions (device_id);
CREATE INDEX identity_sessions_family ON identity_sessions (family);

-- Refresh tokens; one family per login. Reusing a used one revokes the family.
CREATE TABLE identity_refresh_tokens (
	token_hash TEXT    PRIMARY KEY,
	family     TEXT    NOT NULL,
	account_id TEXT    NOT NULL,
	device_id  TEXT    NOT NULL REFERENCES identity_devices (id),
	level      INTEGER NOT NULL,
	expires_at BIGINT  NOT NULL,
	used       INTEGER NOT NULL,
	revoked    INTEGER NOT NULL
);
CREATE INDEX identity_refresh_family ON identity_refresh_tokens (family);

-- Failed logins per key ("account:<id>", "addr:<ip>"), shared by all nodes.
CREATE TABLE identity_throttle (
	key          TEXT    PRIMARY KEY,
	failures     INTEGER NOT NULL,
	locked_until BIGINT  NOT NULL,
	updated_at   BIGINT  NOT NULL
);

-- The operator credential (SHA-256 hex of the token).
CREATE TABLE identity_operator (
	singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
	token_hash TEXT    NOT NULL,
	created_at BIGINT  NOT NULL
);

-- Organisations. key_sealed is the organisation authority's private key,
-- sealed with AES-256-GCM under a key derived from the deployment CA key.
CREATE TABLE identity_orgs (
	id          TEXT   PRIMARY KEY,
	name        TEXT   NOT NULL,
	kind        TEXT   NOT NULL,
	created_at  BIGINT NOT NULL,
	verified_at BIGINT,
	cert_pem    TEXT   NOT NULL DEFAULT '',
	key_sealed  TEXT   NOT NULL DEFAULT ''
);

CREATE TABLE identity_members (
	org_id     TEXT   NOT NULL REFERENCES identity_orgs (id),
	account_id TEXT   NOT NULL REFERENCES identity_accounts (id),
	role       TEXT   NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (org_id, account_id)
);
CREATE INDEX identity_members_account ON identity_members (account_id);

-- Membership certificates, one per member device.
CREATE TABLE identity_memberships (
	serial     TEXT   PRIMARY KEY,
	org_id     TEXT   NOT NULL,
	account_id TEXT   NOT NULL,
	device_id  TEXT   NOT NULL,
	cert_pem   TEXT   NOT NULL,
	not_after  BIGINT NOT NULL,
	revoked_at BIGINT
);
CREATE INDEX identity_memberships_org ON identity_memberships (org_id, account_id);
CREATE INDEX identity_memberships_device ON identity_memberships (device_id);

-- The audit log is append-only: the code only ever INSERTs into it.
CREATE TABLE identity_audit (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	at         BIGINT  NOT NULL,
	actor      TEXT    NOT NULL,
	action     TEXT    NOT NULL,
	org_id     TEXT    NOT NULL,
	account_id TEXT    NOT NULL,
	detail     TEXT    NOT NULL
);
CREATE TRIGGER identity_audit_no_update BEFORE UPDATE ON identity_audit
BEGIN SELECT RAISE(ABORT, 'identity_audit is append-only'); END;
CREATE TRIGGER identity_audit_no_delete BEFORE DELETE ON identity_audit
BEGIN SELECT RAISE(ABORT, 'identity_audit is append-only'); END;
