-- The idempotency rows keyed client id first. Under the old key
-- (sender_device, client_id) every send of a group commit inserted into
-- its own sender's part of the index, one page of the WAL per sender; the
-- SDK's client ids begin with the message's sent_at (docs/api-messaging.md,
-- "client_id"), so keyed client id first the sends of a commit land on the
-- index's last pages together. Lookups name both columns, as before; the
-- revocation's delete of a device's rows reads the table
-- (docs/benchmarks.md, "Idempotency rows keyed client id first on SQLite").
CREATE TABLE messaging_sends_new (
	sender_device TEXT    NOT NULL,
	client_id     TEXT    NOT NULL,
	conversation  TEXT    NOT NULL,
	result        TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (client_id, sender_device)
);
INSERT INTO messaging_sends_new (sender_device, client_id, conversation, result, created_at)
	SELECT sender_device, client_id, conversation, result, created_at FROM messaging_sends;
DROP TABLE messaging_sends;
ALTER TABLE messaging_sends_new RENAME TO messaging_sends;
CREATE INDEX messaging_sends_created ON messaging_sends (created_at);
