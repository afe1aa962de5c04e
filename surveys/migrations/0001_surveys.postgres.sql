-- Surveys. Three kinds of rows, kept apart on purpose:
--
--   surveys          one row per survey: its signed definition, its keys,
--                    the board's length and head, the published result.
--   survey_tokens    who received their anonymous eligibility token: the
--                    account, a hash of the blinded request and the blind
--                    signature (so a retry is answered without signing
--                    again), never the token. No time and no order column (the heap's
--                    physical order is not exposed by any query kanal
--                    runs; see docs/surveys.md).
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
	token_key      BYTEA,
	token_pub      BYTEA,
	signed         TEXT,
	opens_at       BIGINT,
	closes_at      BIGINT,
	board_len      BIGINT NOT NULL DEFAULT 0,
	board_head     BYTEA    NOT NULL,
	tokens_issued  BIGINT NOT NULL DEFAULT 0,
	result         TEXT,
	created_at     BIGINT NOT NULL
);

CREATE INDEX surveys_open ON surveys (closes_at);

CREATE TABLE survey_tokens (
	survey_id    TEXT NOT NULL REFERENCES surveys (id),
	account_id   TEXT NOT NULL,
	blinded_hash BYTEA NOT NULL,
	blind_sig    BYTEA NOT NULL,
	PRIMARY KEY (survey_id, account_id)
);

CREATE TABLE survey_board (
	survey_id       TEXT    NOT NULL REFERENCES surveys (id),
	seq             BIGINT NOT NULL,
	prev            BYTEA    NOT NULL,
	nullifier       BYTEA    NOT NULL,
	token_message   BYTEA,
	token_signature BYTEA,
	ciphertext      BYTEA    NOT NULL,
	hash            BYTEA    NOT NULL,
	PRIMARY KEY (survey_id, seq),
	UNIQUE (survey_id, nullifier)
);

CREATE TABLE survey_named_voters (
	survey_id  TEXT    NOT NULL REFERENCES surveys (id),
	account_id TEXT    NOT NULL,
	seq        BIGINT NOT NULL,
	PRIMARY KEY (survey_id, account_id)
);
