-- Account salts (docs/transparency.md, "Account commitments"): a version 2
-- entry names SHA-256("kanal-account/v1" || salt || account) instead of
-- the account. An account's row goes at its erasure, and with it every
-- link from the log to the account. commitment is the hex form the
-- entries and translog_entries.account hold, to find the salt of an
-- entry.
CREATE TABLE translog_account_salts (
	account    TEXT   PRIMARY KEY,
	salt       BYTEA  NOT NULL,
	commitment TEXT   NOT NULL UNIQUE,
	created_at BIGINT NOT NULL
);
