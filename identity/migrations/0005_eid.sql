-- eID (level high).
--
-- identity_eid_bindings: one proven identity binds to at most one account
-- and an account to at most one identity. subject_mac is HMAC-SHA-256,
-- under a key derived from the deployment secret (never in the database),
-- of the provider's issuer and the subject: the subject itself is never
-- stored, and without the secret a row cannot be tested against a
-- guessed one. No attribute (name, birth date, address) is stored at all.
CREATE TABLE identity_eid_bindings (
	subject_mac TEXT   PRIMARY KEY,
	account_id  TEXT   NOT NULL UNIQUE REFERENCES identity_accounts (id),
	level       BIGINT NOT NULL,
	bound_at    BIGINT NOT NULL,
	verified_at BIGINT NOT NULL
);

-- identity_eid_flows: eID logins in progress, minutes long. state_hash
-- is the SHA-256 of the OAuth state; the nonce and the PKCE verifier are
-- derived from the state under the secret-derived key and not stored.
-- seal_key is the device's HPKE public key; sealed the attributes
-- encrypted to it (never in clear), deleted when the device completes.
-- problem is the problem+json of a refused login, for the device.
CREATE TABLE identity_eid_flows (
	id           TEXT   PRIMARY KEY,
	state_hash   TEXT   NOT NULL UNIQUE,
	account_id   TEXT   NOT NULL,
	device_id    TEXT   NOT NULL,
	level        BIGINT NOT NULL,
	seal_key     TEXT   NOT NULL,
	status       TEXT   NOT NULL,
	problem      TEXT   NOT NULL DEFAULT '',
	proven       BIGINT NOT NULL DEFAULT 0,
	acr          TEXT   NOT NULL DEFAULT '',
	sealed       TEXT   NOT NULL DEFAULT '',
	completed_at BIGINT,
	expires_at   BIGINT NOT NULL
);
CREATE INDEX identity_eid_flows_device ON identity_eid_flows (device_id);
