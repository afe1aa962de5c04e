package payments

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// audit appends to the audit log inside tx.
func audit(ctx context.Context, tx *sql.Tx, at int64, actor Actor, action, org, object, detail string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO payments_audit (at, actor, action, org_id, object, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		at, actor.String(), action, org, object, detail)
	if err != nil {
		return fmt.Errorf("payments.audit: %w", err)
	}
	return nil
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	OrgID  string    `json:"org_id"`
	Object string    `json:"object"`
	Detail string    `json:"detail"`
}

// Audit lists the audit log after id after, oldest first: the whole log
// for the operator, one organisation's for its owners and admins.
func (s *Service) Audit(ctx context.Context, actor Actor, org string, after int64, limit int) ([]AuditEntry, error) {
	if !actor.Operator {
		if org == "" {
			return nil, fmt.Errorf("payments.audit: %w", ErrForbidden)
		}
		if err := s.requireRole(ctx, actor, org, "owner", "admin"); err != nil {
			return nil, err
		}
	}
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	q := `SELECT id, at, actor, action, org_id, object, detail FROM payments_audit WHERE id > $1`
	args := []any{after}
	if org != "" {
		q += ` AND org_id = $3`
	}
	q += ` ORDER BY id LIMIT $2`
	args = append(args, limit)
	if org != "" {
		args = append(args, org)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("payments.audit: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.OrgID, &e.Object, &e.Detail); err != nil {
			return nil, fmt.Errorf("payments.audit: %w", err)
		}
		e.At = time.Unix(at, 0).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// requireRole checks that actor holds one of roles in org.
func (s *Service) requireRole(ctx context.Context, actor Actor, org string, roles ...string) error {
	if actor.AccountID == "" {
		return fmt.Errorf("payments: %w", ErrForbidden)
	}
	role, err := s.orgs.OrgRole(ctx, org, actor.AccountID)
	if err != nil {
		return fmt.Errorf("payments: role: %w", err)
	}
	for _, r := range roles {
		if role == r {
			return nil
		}
	}
	return fmt.Errorf("payments: %w: needs role %v in organisation %s", ErrForbidden, roles, org)
}
