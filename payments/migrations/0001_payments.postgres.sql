-- The payments domain. Amounts are integer euro cents everywhere; times
-- are Unix seconds (UTC).

-- A contract registered by its hash (SHA-256 of the compact JWS), with the
-- metadata kanald acts on. Items and terms stay with the parties.
CREATE TABLE payments_contracts (
	id            TEXT    PRIMARY KEY,
	offer_id      TEXT    NOT NULL,
	org_id        TEXT    NOT NULL,
	buyer_account TEXT    NOT NULL,
	seller_device TEXT    NOT NULL,
	buyer_device  TEXT    NOT NULL,
	total_cents   BIGINT  NOT NULL CHECK (total_cents > 0),
	vat_cents     BIGINT  NOT NULL CHECK (vat_cents >= 0),
	signed_at     BIGINT  NOT NULL,
	registered_at BIGINT  NOT NULL,
	registered_by TEXT    NOT NULL,
	UNIQUE (org_id, offer_id)
);

-- Payment requests and their state. paid_cents and refunded_cents only
-- grow; refunded_cents never exceeds paid_cents.
CREATE TABLE payments_requests (
	id               TEXT    PRIMARY KEY,
	org_id           TEXT    NOT NULL,
	payer_account    TEXT    NOT NULL,
	contract_id      TEXT    REFERENCES payments_contracts (id),
	income_account   TEXT    NOT NULL,
	amount_cents     BIGINT  NOT NULL CHECK (amount_cents > 0),
	currency         TEXT    NOT NULL,
	creditor         TEXT    NOT NULL,
	iban             TEXT    NOT NULL,
	bic              TEXT    NOT NULL,
	reference        TEXT    NOT NULL UNIQUE,
	purpose          TEXT    NOT NULL,
	due_date         TEXT    NOT NULL,
	status           TEXT    NOT NULL,
	paid_cents       BIGINT  NOT NULL DEFAULT 0,
	refunded_cents   BIGINT  NOT NULL DEFAULT 0 CHECK (refunded_cents <= paid_cents),
	provider         TEXT    NOT NULL DEFAULT '',
	provider_payment TEXT    NOT NULL DEFAULT '',
	created_at       BIGINT  NOT NULL,
	created_by       TEXT    NOT NULL,
	updated_at       BIGINT  NOT NULL
);
CREATE INDEX payments_requests_org ON payments_requests (org_id, created_at);
CREATE INDEX payments_requests_due ON payments_requests (status, due_date);

-- Idempotency keys of creates: the first answer for (scope, key) and a
-- fingerprint of the parameters it was made with.
CREATE TABLE payments_idempotency (
	scope       TEXT   NOT NULL,
	idem_key    TEXT   NOT NULL,
	fingerprint TEXT   NOT NULL,
	result      TEXT   NOT NULL, -- the JSON of the first answer
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (scope, idem_key)
);

-- Every state transition of a request.
CREATE TABLE payments_transitions (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	request_id   TEXT    NOT NULL REFERENCES payments_requests (id),
	from_status  TEXT    NOT NULL,
	to_status    TEXT    NOT NULL,
	amount_cents BIGINT  NOT NULL,
	source       TEXT    NOT NULL,
	actor        TEXT    NOT NULL,
	at           BIGINT  NOT NULL
);
CREATE INDEX payments_transitions_request ON payments_transitions (request_id, id);

-- Provider events already processed (webhook replay protection).
CREATE TABLE payments_provider_events (
	provider    TEXT   NOT NULL,
	event_id    TEXT   NOT NULL,
	request_id  TEXT   NOT NULL,
	received_at BIGINT NOT NULL,
	PRIMARY KEY (provider, event_id)
);

-- The ledger: a transaction and its lines. Debits are positive, credits
-- negative; every transaction's lines sum to zero, checked in the
-- transaction that writes them.
CREATE TABLE payments_ledger_tx (
	id         TEXT   PRIMARY KEY,
	request_id TEXT   NOT NULL,
	kind       TEXT   NOT NULL,
	at         BIGINT NOT NULL
);
CREATE TABLE payments_ledger_entries (
	tx_id        TEXT    NOT NULL REFERENCES payments_ledger_tx (id),
	line         INTEGER NOT NULL,
	org_id       TEXT    NOT NULL,
	account      TEXT    NOT NULL,
	amount_cents BIGINT  NOT NULL CHECK (amount_cents <> 0),
	PRIMARY KEY (tx_id, line)
);
CREATE INDEX payments_ledger_account ON payments_ledger_entries (org_id, account);

-- Bank statement entries imported from camt.053: matched to a request, or
-- unmatched until a person resolves them. id is derived from the account
-- and the bank's reference, so importing a statement twice books nothing
-- twice.
CREATE TABLE payments_bank_entries (
	id           TEXT   PRIMARY KEY,
	statement_id TEXT   NOT NULL,
	iban         TEXT   NOT NULL,
	bank_ref     TEXT   NOT NULL,
	amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
	currency     TEXT   NOT NULL,
	reference    TEXT   NOT NULL,
	remittance   TEXT   NOT NULL,
	debtor       TEXT   NOT NULL,
	booking_date TEXT   NOT NULL,
	status       TEXT   NOT NULL,
	org_id       TEXT   NOT NULL, -- the organisation its ledger lines are booked under, '' if none
	request_id   TEXT   NOT NULL,
	note         TEXT   NOT NULL,
	imported_at  BIGINT NOT NULL,
	resolved_at  BIGINT,
	resolved_by  TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX payments_bank_entries_status ON payments_bank_entries (status, imported_at);

-- Who created, cancelled, refunded, imported or resolved what, and when.
-- Append-only: the code only INSERTs, and triggers refuse the rest.
CREATE TABLE payments_audit (
	id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at      BIGINT  NOT NULL,
	actor   TEXT    NOT NULL,
	action  TEXT    NOT NULL,
	org_id  TEXT    NOT NULL,
	object  TEXT    NOT NULL,
	detail  TEXT    NOT NULL
);
CREATE INDEX payments_audit_org ON payments_audit (org_id, id);
CREATE FUNCTION payments_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'payments_audit is append-only';
END $$;
CREATE TRIGGER payments_audit_no_change BEFORE UPDATE OR DELETE ON payments_audit
	FOR EACH ROW EXECUTE FUNCTION payments_audit_append_only();
