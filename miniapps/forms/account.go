package forms

import (
	"context"
	"database/sql"
	"fmt"
)

// TemplatesPublished lists the templates account published or withdrew
// for its organisation, for its data export (GDPR Art. 15).
func (c *Catalogue) TemplatesPublished(ctx context.Context, account string) ([]map[string]any, error) {
	rows, err := c.db.Records(ctx, `SELECT id, version, org_id, title_de, title_en, publisher_account, publisher_device, published_at, withdrawn_at, withdrawn_by
		FROM forms_templates WHERE publisher_account = $1 OR withdrawn_by = $1 ORDER BY published_at, id, version`, account)
	if err != nil {
		return nil, fmt.Errorf("forms.export: %w", err)
	}
	return rows, nil
}

// PseudonymiseAccountTx names pseudonym instead of account, inside tx, as
// the publisher or withdrawer of templates. The signed template itself
// stays as it was published: it is the organisation's, and its signature
// (whose certificate names the signing member) must keep verifying.
func (c *Catalogue) PseudonymiseAccountTx(ctx context.Context, tx *sql.Tx, account, pseudonym string) error {
	for _, q := range []string{
		`UPDATE forms_templates SET publisher_account = $2 WHERE publisher_account = $1`,
		`UPDATE forms_templates SET withdrawn_by = $2 WHERE withdrawn_by = $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, account, pseudonym); err != nil {
			return fmt.Errorf("forms.erase: %w", err)
		}
	}
	return nil
}
