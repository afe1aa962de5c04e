-- Erasure (docs/privacy.md): the audit log stays append-only, except that
-- an erased account's id in actor, object or detail is replaced by its
-- pseudonym ("erased_…"). An update that changes anything else, or leaves
-- a changed column without the pseudonym, is refused; a delete is refused
-- as before.
CREATE OR REPLACE FUNCTION payments_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE'
		AND NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.action = OLD.action AND NEW.org_id = OLD.org_id
		AND (NEW.actor = OLD.actor OR NEW.actor LIKE '%erased\_%')
		AND (NEW.object = OLD.object OR NEW.object LIKE '%erased\_%')
		AND (NEW.detail = OLD.detail OR NEW.detail LIKE '%erased\_%') THEN
		RETURN NEW;
	END IF;
	RAISE EXCEPTION 'payments_audit is append-only';
END $$;
