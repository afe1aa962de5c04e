-- The prekey directory. Keys are stored in their keys binary encodings
-- (version, kind, id where the type has one, key bytes); signatures as
-- uploaded. Rows are keyed by device_id first: nothing joins across devices.

-- One row per device that has published its identity: the E2E identity key,
-- its binding signature by the device key, the signed prekey and the
-- ML-KEM-768 last-resort prekey with their signatures by the identity key.
CREATE TABLE messaging_identities (
	device_id          TEXT   PRIMARY KEY,
	account_id         TEXT   NOT NULL,
	identity_key       BLOB   NOT NULL,
	identity_binding   BLOB   NOT NULL,
	signed_prekey      BLOB   NOT NULL,
	signed_prekey_sig  BLOB   NOT NULL,
	last_resort        BLOB   NOT NULL,
	last_resort_id     INTEGER NOT NULL,
	last_resort_sig    BLOB   NOT NULL,
	updated_at         INTEGER NOT NULL
);

-- Unused one-time X25519 prekeys. A claim deletes the row it hands out.
CREATE TABLE messaging_one_time_prekeys (
	device_id  TEXT   NOT NULL,
	key_id     INTEGER NOT NULL,
	public_key BLOB   NOT NULL,
	PRIMARY KEY (device_id, key_id)
);

-- Unused one-time ML-KEM-768 prekeys, each signed by the identity key.
CREATE TABLE messaging_pq_prekeys (
	device_id  TEXT   NOT NULL,
	key_id     INTEGER NOT NULL,
	public_key BLOB   NOT NULL,
	signature  BLOB   NOT NULL,
	PRIMARY KEY (device_id, key_id)
);

-- Claim counters: one row per claiming account and fixed window.
CREATE TABLE messaging_claim_counters (
	account_id   TEXT   NOT NULL,
	window_start INTEGER NOT NULL,
	claims       INTEGER NOT NULL,
	PRIMARY KEY (account_id, window_start)
);
