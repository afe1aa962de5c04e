-- Every request with a session token, and every stream's periodic recheck,
-- reads its session and device rows by the token's hash (sessionread.go,
-- sessionend.go). With these two indexes SQLite answers that read from
-- the indexes alone: two B-tree searches instead of four (a table's
-- primary key index and then its row, for each of the two tables). The
-- queries name them (INDEXED BY), since without statistics the planner
-- prefers the primary keys' unique indexes. Sessions and devices are
-- written at login, refresh and revocation only.
CREATE INDEX identity_sessions_read ON identity_sessions (token_hash, family, account_id, device_id, level, expires_at, revoked);
CREATE INDEX identity_devices_read ON identity_devices (id, revoked_at, expires_at);
