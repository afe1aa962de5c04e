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
	data       BLOB    NOT NULL,
	created_at BIGINT  NOT NULL
);
CREATE INDEX translog_entries_device ON translog_entries (device, kind, cert);
CREATE INDEX translog_entries_account ON translog_entries (account);

-- The tree's stored hashes (golang.org/x/mod/sumdb/tlog's StoredHashes),
-- by storage index.
CREATE TABLE translog_hashes (
	idx  BIGINT PRIMARY KEY,
	hash BLOB   NOT NULL
);

-- One signed checkpoint per committed append, by tree size.
CREATE TABLE translog_checkpoints (
	size       BIGINT PRIMARY KEY,
	note       TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TRIGGER translog_entries_no_update BEFORE UPDATE ON translog_entries
BEGIN SELECT RAISE(ABORT, 'translog_entries is append-only'); END;
CREATE TRIGGER translog_entries_no_delete BEFORE DELETE ON translog_entries
BEGIN SELECT RAISE(ABORT, 'translog_entries is append-only'); END;
CREATE TRIGGER translog_hashes_no_update BEFORE UPDATE ON translog_hashes
BEGIN SELECT RAISE(ABORT, 'translog_hashes is append-only'); END;
CREATE TRIGGER translog_hashes_no_delete BEFORE DELETE ON translog_hashes
BEGIN SELECT RAISE(ABORT, 'translog_hashes is append-only'); END;
