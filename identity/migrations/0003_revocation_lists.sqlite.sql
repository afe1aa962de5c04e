-- Revocation generations: one counter per published list ("device" for
-- the deployment CA's device CRL, "org:<id>" for an organisation's
-- membership CRL). Triggers bump it in the transaction that revokes a
-- certificate, whatever code path does it, so every node sees that its
-- cached list is stale as soon as the revocation commits.
CREATE TABLE identity_revocation_generations (
	scope      TEXT   PRIMARY KEY,
	generation BIGINT NOT NULL
);

-- The signed lists, shared by all nodes: a list is signed once per
-- generation (and again when it nears its next update), then served as
-- stored. number is the CRL number of der.
CREATE TABLE identity_crls (
	scope       TEXT   PRIMARY KEY,
	generation  BIGINT NOT NULL,
	number      BIGINT NOT NULL,
	this_update BIGINT NOT NULL,
	der         BLOB   NOT NULL
);

CREATE TRIGGER identity_device_certs_revoke AFTER UPDATE OF revoked_at ON identity_device_certs
WHEN NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL
BEGIN
	INSERT INTO identity_revocation_generations (scope, generation) VALUES ('device', 1)
		ON CONFLICT (scope) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER identity_device_certs_insert_revoked AFTER INSERT ON identity_device_certs
WHEN NEW.revoked_at IS NOT NULL
BEGIN
	INSERT INTO identity_revocation_generations (scope, generation) VALUES ('device', 1)
		ON CONFLICT (scope) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER identity_memberships_revoke AFTER UPDATE OF revoked_at ON identity_memberships
WHEN NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL
BEGIN
	INSERT INTO identity_revocation_generations (scope, generation) VALUES ('org:' || NEW.org_id, 1)
		ON CONFLICT (scope) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER identity_memberships_insert_revoked AFTER INSERT ON identity_memberships
WHEN NEW.revoked_at IS NOT NULL
BEGIN
	INSERT INTO identity_revocation_generations (scope, generation) VALUES ('org:' || NEW.org_id, 1)
		ON CONFLICT (scope) DO UPDATE SET generation = generation + 1;
END;

