package db

import (
	"strconv"
	"strings"
	"sync"
)

// MaxParams is the most arguments one statement may carry on both
// engines: SQLite's limit (SQLITE_MAX_VARIABLE_NUMBER, 32,766) is the lower
// one; PostgreSQL's wire protocol takes 65,535. A statement that batches
// rows splits them by their parameters against this, not by a count of
// rows or devices whose parameters vary.
const MaxParams = 32766

// Rows returns how many of n rows the next multi-row statement takes: the
// largest power of two at most n and at most limit (n and limit ≥ 1). A
// statement's text grows with its rows, and a text is a statement of its
// own to the prepared-statement caches (this package's for SQLite, pgx's
// for PostgreSQL); in powers of two a batch of any size is a few
// statements of at most log2(limit)+1 texts, which the caches keep,
// instead of one text for every row count.
func Rows(n, limit int) int {
	m := min(n, limit)
	p := 1
	for p*2 <= m {
		p *= 2
	}
	return p
}

// values caches the texts Values builds, by rows and columns: with Rows
// a batch uses only a few sizes, so there are few texts.
var values sync.Map // [2]int → string

// Values returns the VALUES list of a multi-row statement of rows rows of
// cols parameters each, numbered from $1 row by row:
// "($1, $2), ($3, $4)" for 2 rows of 2.
func Values(rows, cols int) string {
	k := [2]int{rows, cols}
	if v, ok := values.Load(k); ok {
		return v.(string)
	}
	var b strings.Builder
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range cols {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i*cols + j + 1))
		}
		b.WriteByte(')')
	}
	v, _ := values.LoadOrStore(k, b.String())
	return v.(string)
}
