-- The vault: documents encrypted on the devices. The server holds only
-- what it must act on: the owner, sizes, times, the quota class and the
-- content address of each version's ciphertext. Titles, tags, folders and
-- file names are inside meta, encrypted with the version's key; the
-- version's key is in vault_keys, HPKE-wrapped to each device that may
-- read it. Times are Unix seconds (UTC).

CREATE TABLE vault_documents (
	id          TEXT    PRIMARY KEY,
	account_id  TEXT    NOT NULL,
	quota_class TEXT    NOT NULL,
	issuer_org  TEXT    NOT NULL DEFAULT '',
	created_at  BIGINT  NOT NULL,
	updated_at  BIGINT  NOT NULL
);
CREATE INDEX vault_documents_account ON vault_documents (account_id);

-- One row per version; blob_hash is the SHA-256 (hex) of the ciphertext, its
-- key in the blob store.
CREATE TABLE vault_versions (
	document_id TEXT    NOT NULL REFERENCES vault_documents (id) ON DELETE CASCADE,
	version     INTEGER NOT NULL,
	account_id  TEXT    NOT NULL,
	blob_hash   TEXT    NOT NULL,
	size        BIGINT  NOT NULL CHECK (size > 0),
	meta        BLOB    NOT NULL,
	created_at  BIGINT  NOT NULL,
	created_by  TEXT    NOT NULL,
	PRIMARY KEY (document_id, version)
);
CREATE INDEX vault_versions_account ON vault_versions (account_id);
CREATE INDEX vault_versions_blob ON vault_versions (blob_hash);

-- A version's key wrapped to one device of the owner. Deleting these rows
-- (erasure, a revoked device) is crypto-shredding: the ciphertext alone
-- is useless.
CREATE TABLE vault_keys (
	document_id TEXT    NOT NULL,
	version     INTEGER NOT NULL,
	device_id   TEXT    NOT NULL,
	wrapped     BLOB    NOT NULL,
	wrapped_by  TEXT    NOT NULL,
	created_at  BIGINT  NOT NULL,
	PRIMARY KEY (document_id, version, device_id),
	FOREIGN KEY (document_id, version) REFERENCES vault_versions (document_id, version) ON DELETE CASCADE
);

-- A share of one version with an account or an organisation in a
-- conversation. The key travels end to end in the document.share
-- message; this row lets the grantee fetch the ciphertext until it is
-- withdrawn.
CREATE TABLE vault_shares (
	id              TEXT    PRIMARY KEY,
	document_id     TEXT    NOT NULL,
	version         INTEGER NOT NULL,
	owner_account   TEXT    NOT NULL,
	grantee_account TEXT    NOT NULL DEFAULT '',
	grantee_org     TEXT    NOT NULL DEFAULT '',
	conversation    TEXT    NOT NULL,
	created_at      BIGINT  NOT NULL,
	withdrawn_at    BIGINT,
	FOREIGN KEY (document_id, version) REFERENCES vault_versions (document_id, version) ON DELETE CASCADE
);
CREATE INDEX vault_shares_owner ON vault_shares (owner_account);
CREATE INDEX vault_shares_grantee ON vault_shares (grantee_account);
CREATE INDEX vault_shares_org ON vault_shares (grantee_org);
