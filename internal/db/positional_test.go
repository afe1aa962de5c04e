package db

import (
	"slices"
	"testing"
)

// positional rewrites "$k" to "?" outside quotes and comments, and leaves
// a statement alone whose parameters it cannot map.
func TestPositional(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		order   []int
	}{
		{`SELECT a FROM t WHERE b = $1 AND c = $2`, `SELECT a FROM t WHERE b = ? AND c = ?`, []int{0, 1}},
		{`INSERT INTO t VALUES ($2, $1), ($2, $3)`, `INSERT INTO t VALUES (?, ?), (?, ?)`, []int{1, 0, 1, 2}},
		{`SELECT '$1', "$2", [$3], $1 -- $4 ?` + "\n" + `/* $5 ? */ , $10`, `SELECT '$1', "$2", [$3], ? -- $4 ?` + "\n" + `/* $5 ? */ , ?`, []int{0, 9}},
		{`SELECT 'it''s $1', $1`, `SELECT 'it''s $1', ?`, []int{0}},
		{`SELECT a - $1, b-$2`, `SELECT a - ?, b-?`, []int{0, 1}},
		{`SELECT 1`, `SELECT 1`, nil},                   // nothing to rewrite
		{`SELECT ?, $1`, `SELECT ?, $1`, nil},           // already anonymous: not mixed
		{`SELECT :a, $1`, `SELECT :a, $1`, nil},         // named
		{`SELECT @a, $1`, `SELECT @a, $1`, nil},         // named
		{`SELECT $a, $1`, `SELECT $a, $1`, nil},         // named with $
		{`SELECT $0`, `SELECT $0`, nil},                 // not a parameter number
		{`SELECT $1x`, `SELECT $1x`, nil},               // not a plain number
		{`SELECT 'open, $1`, `SELECT 'open, $1`, nil},   // unterminated quote
		{`SELECT /* open $1`, `SELECT /* open $1`, nil}, // unterminated comment
		{`SELECT $1 -- last line`, `SELECT ? -- last line`, []int{0}},
	} {
		out, order := positional(tc.in)
		if out != tc.out || !slices.Equal(order, tc.order) {
			t.Errorf("positional(%q) = %q %v, want %q %v", tc.in, out, order, tc.out, tc.order)
		}
	}
}

func FuzzPositional(f *testing.F) {
	for _, s := range []string{`SELECT $1, '$2' -- $3`, `INSERT INTO t VALUES ($2, $1), ($2, $3)`, `SELECT "a""b", $1 /* x */`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out, order := positional(q)
		if order == nil {
			if out != q {
				t.Fatalf("not rewritten but changed: %q -> %q", q, out)
			}
			return
		}
		// One "?" per "$k" removed, nothing else changed: undoing the
		// rewrite gives the query back.
		var b []byte
		n := 0
		for i := 0; i < len(out); i++ {
			if out[i] == '?' {
				if n >= len(order) {
					t.Fatalf("%q: more ? than parameters", out)
				}
				b = append(b, '$')
				b = append(b, []byte(itoa(order[n]+1))...)
				n++
				continue
			}
			b = append(b, out[i])
		}
		if n != len(order) {
			t.Fatalf("%q: %d ? for %d parameters", out, n, len(order))
		}
		if string(b) != q && !sameButLeadingZeros(q, string(b)) {
			t.Fatalf("%q rewritten to %q does not map back (%q)", q, out, b)
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

// sameButLeadingZeros accepts "$01" written back as "$1".
func sameButLeadingZeros(a, b string) bool {
	strip := func(s string) string {
		var o []byte
		for i := 0; i < len(s); i++ {
			if s[i] == '$' {
				o = append(o, '$')
				for i+1 < len(s) && s[i+1] == '0' && i+2 < len(s) && s[i+2] >= '0' && s[i+2] <= '9' {
					i++
				}
				continue
			}
			o = append(o, s[i])
		}
		return string(o)
	}
	return strip(a) == strip(b)
}
