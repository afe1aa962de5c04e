package db

import (
	"context"
	"strings"
)

// Records runs a query and returns its rows as column → value maps, text
// and bytes as strings: the shape of an account's data export, where each
// domain hands over its rows as stored.
func (d *DB) Records(ctx context.Context, query string, args ...any) ([]map[string]any, error) {
	rows, err := d.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		m := make(map[string]any, len(cols))
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			m[strings.ToLower(c)] = vals[i]
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
