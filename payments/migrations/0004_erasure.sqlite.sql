-- Erasure (docs/privacy.md): the audit log stays append-only, except that
-- an erased account's id in actor, object or detail is replaced by its
-- pseudonym ("erased_…"). An update that changes anything else, or leaves
-- a changed column without the pseudonym, is refused; a delete is refused
-- as before.
DROP TRIGGER payments_audit_no_update;
CREATE TRIGGER payments_audit_no_update BEFORE UPDATE ON payments_audit
WHEN NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at OR NEW.action IS NOT OLD.action OR NEW.org_id IS NOT OLD.org_id
	OR (NEW.actor IS NOT OLD.actor AND NEW.actor NOT LIKE '%erased\_%' ESCAPE '\')
	OR (NEW.object IS NOT OLD.object AND NEW.object NOT LIKE '%erased\_%' ESCAPE '\')
	OR (NEW.detail IS NOT OLD.detail AND NEW.detail NOT LIKE '%erased\_%' ESCAPE '\')
BEGIN SELECT RAISE(ABORT, 'payments_audit is append-only'); END;
