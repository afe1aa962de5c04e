-- require_high_for_agents (0 or 1): set by the operator or an owner or
-- admin of the organisation (PATCH /v1/orgs/{id}). While it is 1, an
-- account becomes an agent of the organisation only if it has an eID
-- linked (identity_eid_bindings at level high, docs/levels.md).
ALTER TABLE identity_orgs ADD COLUMN require_high_for_agents BIGINT NOT NULL DEFAULT 0;
