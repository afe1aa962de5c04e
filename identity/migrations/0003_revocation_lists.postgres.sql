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
	der         BYTEA  NOT NULL
);

-- Statement-level triggers over transition tables: one bump per
-- statement, not per row, since updating one row many times in a
-- transaction makes each further update slower in PostgreSQL.
CREATE FUNCTION identity_bump_device_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NOT EXISTS (SELECT 1 FROM new_rows WHERE revoked_at IS NOT NULL) THEN
			RETURN NULL;
		END IF;
	ELSIF NOT EXISTS (SELECT 1 FROM new_rows n JOIN old_rows o ON o.serial = n.serial
			WHERE n.revoked_at IS NOT NULL AND o.revoked_at IS NULL) THEN
		RETURN NULL;
	END IF;
	INSERT INTO identity_revocation_generations (scope, generation) VALUES ('device', 1)
		ON CONFLICT (scope) DO UPDATE SET generation = identity_revocation_generations.generation + 1;
	RETURN NULL;
END $$;

CREATE FUNCTION identity_bump_org_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO identity_revocation_generations (scope, generation)
			SELECT DISTINCT 'org:' || org_id, 1 FROM new_rows WHERE revoked_at IS NOT NULL
			ON CONFLICT (scope) DO UPDATE SET generation = identity_revocation_generations.generation + 1;
	ELSE
		INSERT INTO identity_revocation_generations (scope, generation)
			SELECT DISTINCT 'org:' || n.org_id, 1 FROM new_rows n JOIN old_rows o ON o.serial = n.serial
			WHERE n.revoked_at IS NOT NULL AND o.revoked_at IS NULL
			ON CONFLICT (scope) DO UPDATE SET generation = identity_revocation_generations.generation + 1;
	END IF;
	RETURN NULL;
END $$;

CREATE TRIGGER identity_device_certs_revoke AFTER UPDATE ON identity_device_certs
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION identity_bump_device_generation();
CREATE TRIGGER identity_device_certs_insert_revoked AFTER INSERT ON identity_device_certs
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION identity_bump_device_generation();
CREATE TRIGGER identity_memberships_revoke AFTER UPDATE ON identity_memberships
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION identity_bump_org_generation();
CREATE TRIGGER identity_memberships_insert_revoked AFTER INSERT ON identity_memberships
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION identity_bump_org_generation();
