-- The transparency log (docs/transparency.md). Entries are append-only:
-- the code only INSERTs, and triggers refuse changes.
-- kind, account, device, org and cert repeat what data says, so that the
-- routes that attach proofs find an entry without parsing the log.
CREATE TABLE translog_entries (
	idx        BIGINT  PRIMARY KEY,
	kind       TEXT    NOT NULL,
	account    TEXT    NOT NULL,
	device     TEXT    NOT NULL,
	org        TEXT    NOT NULL,
	cert       TEXT    NOT NULL,
	data       BYTEA   NOT NULL,
	created_at BIGINT  NOT NULL
);
CREATE INDEX translog_entries_device ON translog_entries (device, kind, cert);
CREATE INDEX translog_entries_account ON translog_entries (account);

-- The tree's stored hashes (golang.org/x/mod/sumdb/tlog's StoredHashes),
-- by storage index.
CREATE TABLE translog_hashes (
	idx  BIGINT PRIMARY KEY,
	hash BYTEA  NOT NULL
);

-- One signed checkpoint per committed append, by tree size.
CREATE TABLE translog_checkpoints (
	size       BIGINT PRIMARY KEY,
	note       TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE FUNCTION translog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE TRIGGER translog_entries_append_only BEFORE UPDATE OR DELETE ON translog_entries
	FOR EACH ROW EXECUTE FUNCTION translog_append_only();
CREATE TRIGGER translog_hashes_append_only BEFORE UPDATE OR DELETE ON translog_hashes
	FOR EACH ROW EXECUTE FUNCTION translog_append_only();
