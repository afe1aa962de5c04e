-- Refunds are booked before the provider is asked to pay them out: a row
-- here is written in the transaction that books the refund, as pending,
-- and confirmed once the provider has accepted it. The provider is called
-- with an idempotency key derived from id, so asking again after a lost
-- answer pays out once.
CREATE TABLE payments_refunds (
	id           TEXT    PRIMARY KEY,
	request_id   TEXT    NOT NULL,
	amount_cents BIGINT  NOT NULL,
	provider     TEXT    NOT NULL,
	status       TEXT    NOT NULL CHECK (status IN ('pending', 'confirmed')),
	created_at   BIGINT  NOT NULL,
	updated_at   BIGINT  NOT NULL
);
CREATE INDEX payments_refunds_status ON payments_refunds (status, created_at);
