-- Erasure (docs/privacy.md): the audit log stays append-only, except that
-- an erased account's id in actor, account_id or detail is replaced by
-- its pseudonym ("erased_…"). An update that changes anything else, or
-- leaves a changed column without the pseudonym, is refused; a delete is
-- refused as before.
DROP TRIGGER identity_audit_no_update;
CREATE TRIGGER identity_audit_no_update BEFORE UPDATE ON identity_audit
WHEN NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at OR NEW.action IS NOT OLD.action OR NEW.org_id IS NOT OLD.org_id
	OR (NEW.actor IS NOT OLD.actor AND NEW.actor NOT LIKE '%erased\_%' ESCAPE '\')
	OR (NEW.account_id IS NOT OLD.account_id AND NEW.account_id NOT LIKE '%erased\_%' ESCAPE '\')
	OR (NEW.detail IS NOT OLD.detail AND NEW.detail NOT LIKE '%erased\_%' ESCAPE '\')
BEGIN SELECT RAISE(ABORT, 'identity_audit is append-only'); END;
