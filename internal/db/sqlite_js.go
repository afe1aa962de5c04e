package db

// In the browser (GOOS=js) there is no SQLite: the client SDK compiled to
// WebAssembly shares the wire types of the server packages that import this
// one, but never opens a database.

import (
	"database/sql"
	"errors"
)

func openSQLitePool(string) (*sql.DB, error) {
	return nil, errors.New("db: SQLite is not available in the browser")
}

func walFramesVFS() (string, error) {
	return "", errors.New("db: SQLite is not available in the browser")
}

func sqliteBusy(error) bool   { return false }
func sqliteUnique(error) bool { return false }
