package db

import "strconv"

// In returns the placeholder list "$1,$2,…" for values, and the values as
// query arguments, for a query's "IN (…)". Both engines take the $n form.
// Callers bound the number of values well below MaxParams.
func In(values []string) (placeholders string, args []any) {
	b := make([]byte, 0, len(values)*4)
	args = make([]any, len(values))
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(i+1), 10)
		args[i] = v
	}
	return string(b), args
}
