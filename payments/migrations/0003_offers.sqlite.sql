-- Offers the server registered: each was checked, when it arrived, to be
-- signed by a current member with current certificates and to carry an
-- issued_at close to the server's clock. A contract is registered only
-- for a registered offer, so a former member's back-dated offer never
-- becomes a contract. id is the SHA-256 (hex) of the compact JWS.
CREATE TABLE payments_offers (
	id             TEXT   PRIMARY KEY,
	offer_id       TEXT   NOT NULL,
	org_id         TEXT   NOT NULL,
	seller_account TEXT   NOT NULL,
	seller_device  TEXT   NOT NULL,
	buyer_account  TEXT   NOT NULL,
	total_cents    BIGINT NOT NULL,
	issued_at      BIGINT NOT NULL,
	valid_until    BIGINT NOT NULL,
	registered_at  BIGINT NOT NULL,
	UNIQUE (org_id, offer_id)
);
