-- The mini-app registry, consents, the OpenID Provider's state and the
-- bridge's audit. Times are Unix seconds (UTC). Tokens and secrets are
-- stored as SHA-256 hashes, never themselves.

-- A mini-app: its organisation, whether citizens may see it, the version
-- they see (approved_version; 0 before the first approval) and the latest
-- registered. A new version that asks for no scope beyond the approved
-- one is approved with its registration; one asking for more waits.
CREATE TABLE miniapps_apps (
	id               TEXT    PRIMARY KEY,
	org_id           TEXT    NOT NULL,
	status           TEXT    NOT NULL, -- pending, approved, suspended
	approved_version INTEGER NOT NULL DEFAULT 0,
	latest_version   INTEGER NOT NULL,
	secret_hash      TEXT    NOT NULL, -- the backend's client secret
	created_at       BIGINT  NOT NULL,
	updated_at       BIGINT  NOT NULL
);
CREATE INDEX miniapps_apps_org ON miniapps_apps (org_id);

-- Every registered manifest version, as signed.
CREATE TABLE miniapps_manifests (
	app_id         TEXT    NOT NULL REFERENCES miniapps_apps (id),
	version        INTEGER NOT NULL,
	payload        TEXT    NOT NULL, -- the verified manifest, JSON
	jws            TEXT    NOT NULL,
	signer_account TEXT    NOT NULL,
	signer_device  TEXT    NOT NULL,
	registered_at  BIGINT  NOT NULL,
	PRIMARY KEY (app_id, version)
);

-- Consent decisions, append-only: the newest row per (account, app,
-- scope) is in force. A revocation writes one "revoked" row per scope.
CREATE TABLE miniapps_consents (
	account_id       TEXT    NOT NULL,
	app_id           TEXT    NOT NULL,
	seq              BIGINT  NOT NULL, -- per account and app, from 1
	scope            TEXT    NOT NULL,
	decision         TEXT    NOT NULL, -- granted, refused, revoked
	manifest_version INTEGER NOT NULL,
	decided_at       BIGINT  NOT NULL,
	device_id        TEXT    NOT NULL,
	PRIMARY KEY (account_id, app_id, seq, scope)
);

-- Pairwise subjects, so that the bridge can find the citizen an app
-- names. subject is derived (keyed hash), the table only reverses it.
CREATE TABLE miniapps_subjects (
	sector     TEXT NOT NULL,
	subject    TEXT NOT NULL,
	account_id TEXT NOT NULL,
	PRIMARY KEY (sector, subject)
);

-- Conversation handles given to an app in a launch token.
CREATE TABLE miniapps_handles (
	handle       TEXT   PRIMARY KEY,
	app_id       TEXT   NOT NULL,
	account_id   TEXT   NOT NULL,
	conversation TEXT   NOT NULL,
	created_at   BIGINT NOT NULL
);

-- Launch tokens used to log in (each once), until they expire.
CREATE TABLE miniapps_launches_used (
	jti        TEXT   PRIMARY KEY,
	expires_at BIGINT NOT NULL
);

-- Authorization requests of the OpenID Provider, from /authorize to the
-- code's exchange. request is the parsed request, JSON.
CREATE TABLE miniapps_auth_requests (
	id         TEXT    PRIMARY KEY,
	client_id  TEXT    NOT NULL,
	request    TEXT    NOT NULL,
	account_id TEXT    NOT NULL DEFAULT '',
	subject    TEXT    NOT NULL DEFAULT '',
	level      TEXT    NOT NULL DEFAULT '',
	auth_time  BIGINT  NOT NULL DEFAULT 0,
	done       INTEGER NOT NULL DEFAULT 0,
	code_hash  TEXT    UNIQUE,
	created_at BIGINT  NOT NULL
);

-- Access and refresh tokens. A refresh token is rotated on use (the old
-- one revoked); revoking consent revokes every token of the app and
-- citizen.
CREATE TABLE miniapps_tokens (
	id         TEXT    PRIMARY KEY,
	kind       TEXT    NOT NULL, -- access, refresh
	hash       TEXT    UNIQUE,   -- refresh tokens: SHA-256 of the token
	client_id  TEXT    NOT NULL,
	account_id TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	scopes     TEXT    NOT NULL,
	level      TEXT    NOT NULL,
	auth_time  BIGINT  NOT NULL,
	expires_at BIGINT  NOT NULL,
	revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX miniapps_tokens_owner ON miniapps_tokens (client_id, account_id);

-- What happened: registrations, approvals, consents, logins, bridge calls.
CREATE TABLE miniapps_audit (
	id         TEXT   PRIMARY KEY,
	at         BIGINT NOT NULL,
	app_id     TEXT   NOT NULL,
	account_id TEXT   NOT NULL,
	actor      TEXT   NOT NULL,
	action     TEXT   NOT NULL,
	detail     TEXT   NOT NULL
);
CREATE INDEX miniapps_audit_app ON miniapps_audit (app_id, action, at);
