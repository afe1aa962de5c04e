package main

import (
	"io/fs"
	"strings"

	"github.com/kanal-server/kanal/internal/db"
)

// fsReadDir counts the PostgreSQL migrations of a set (generic files plus
// .postgres ones).
func fsReadDir(m db.Migrations) (int, error) {
	entries, err := fs.ReadDir(m.FS, ".")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") && !strings.HasSuffix(e.Name(), ".sqlite.sql") {
			n++
		}
	}
	return n, nil
}
