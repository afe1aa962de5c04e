-- Witness cosignatures (C2SP tlog-cosignature, cosignature/v1) of the
-- log's checkpoints, one per witness and size: the newest a witness sent.
-- signature is the note signature line as the witness wrote it.
CREATE TABLE translog_cosignatures (
	size       BIGINT NOT NULL,
	witness    TEXT   NOT NULL,
	signature  TEXT   NOT NULL,
	signed_at  BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (size, witness)
);
