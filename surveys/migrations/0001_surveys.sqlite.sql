-- Surveys. Three kinds of rows, kept apart on purpose:
--
--   surveys          one row per survey: its signed definition, its keys,
--                    the board's length and head, the published result.
--   survey_tokens    who received their anonymous eligibility token: the
--                    account, a hash of the blinded request and the blind
--                    signature (so a retry is answered without signing
--                    again), never the token. No time, no order column: WITHOUT ROWID keeps
--                    the rows in key order, not in the order they came.
--   survey_board     the public bulletin board: ballots and nullifiers. No
--                    account, no device, no session, no time: nothing here
--                    names a person or points at survey_tokens, so no
--                    query can join a ballot to an account.
--
-- survey_named_voters exists for named surveys only, whose board names the
-- voter on purpose; an anonymous survey never has a row there.

CREATE TABLE surveys (
	id             TEXT    PRIMARY KEY,
	org_id         TEXT    NOT NULL,
	created_by     TEXT    NOT NULL,
	mode           TEXT    NOT NULL CHECK (mode IN ('anonymous', 'named')),
	token_key      BLOB,
	token_pub      BLOB,
	signed         TEXT,
	opens_at       INTEGER,
	closes_at      INTEGER,
	board_len      INTEGER NOT NULL DEFAULT 0,
	board_head     BLOB    NOT NULL,
	tokens_issued  INTEGER NOT NULL DEFAULT 0,
	result         TEXT,
	created_at     INTEGER NOT NULL
);

CREATE INDEX surveys_open ON surveys (closes_at);

CREATE TABLE survey_tokens (
	survey_id    TEXT NOT NULL REFERENCES surveys (id),
	account_id   TEXT NOT NULL,
	blinded_hash BLOB NOT NULL,
	blind_sig    BLOB NOT NULL,
	PRIMARY KEY (survey_id, account_id)
) WITHOUT ROWID;

CREATE TABLE survey_board (
	survey_id       TEXT    NOT NULL REFERENCES surveys (id),
	seq             INTEGER NOT NULL,
	prev            BLOB    NOT NULL,
	nullifier       BLOB    NOT NULL,
	token_message   BLOB,
	token_signature BLOB,
	ciphertext      BLOB    NOT NULL,
	hash            BLOB    NOT NULL,
	PRIMARY KEY (survey_id, seq),
	UNIQUE (survey_id, nullifier)
) WITHOUT ROWID;

CREATE TABLE survey_named_voters (
	survey_id  TEXT    NOT NULL REFERENCES surveys (id),
	account_id TEXT    NOT NULL,
	seq        INTEGER NOT NULL,
	PRIMARY KEY (survey_id, account_id)
);
