-- Operator tokens, one row per token ever issued. generation is the
-- token's public id (op1, op2, …, named in the audit log); only the
-- SHA-256 of the token is stored. A token works until expires_at unless
-- a reset has revoked it. The first start inserts generation 1, so
-- concurrent first starts agree on one token.
CREATE TABLE identity_operator_tokens (
	generation BIGINT PRIMARY KEY,
	token_hash TEXT   NOT NULL UNIQUE,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	revoked_at BIGINT
);

-- The token of a deployment made before expiry existed keeps working for
-- the default 90 days from its creation; after that, kanald operator reset.
INSERT INTO identity_operator_tokens (generation, token_hash, created_at, expires_at)
	SELECT 1, token_hash, created_at, created_at + 7776000 FROM identity_operator;

DROP TABLE identity_operator;
