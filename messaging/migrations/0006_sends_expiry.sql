-- Idempotency rows are deleted by the expiry sweep by age, not by each
-- send; this index serves that delete.
CREATE INDEX messaging_sends_created ON messaging_sends (created_at);
