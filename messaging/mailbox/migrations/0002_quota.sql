-- What each mailbox holds, kept beside its head so that a send checks a
-- recipient's quota in the statement that reserves its sequence numbers:
-- depth envelopes of bytes ciphertext bytes in all. Appends add, acks,
-- expiry and deletion subtract.
ALTER TABLE mailbox_heads ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailbox_heads ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
UPDATE mailbox_heads SET
	depth = (SELECT COUNT(*) FROM mailbox m WHERE m.device_id = mailbox_heads.device_id),
	bytes = (SELECT COALESCE(SUM(LENGTH(m.ciphertext)), 0) FROM mailbox m WHERE m.device_id = mailbox_heads.device_id);
