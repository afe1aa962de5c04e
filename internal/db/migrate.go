package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Migrations are one domain's schema changes: files in FS named
// NNNN_name.sql, or NNNN_name.sqlite.sql and NNNN_name.postgres.sql where
// the DDL must differ. Versions start at 1 and have no gaps. A released
// migration is never edited: its checksum is recorded, and a changed file
// stops the server from starting.
type Migrations struct {
	Domain string // e.g. "identity"; also the key in the version table
	FS     fs.FS
}

type migration struct {
	version  int
	name     string
	sql      string
	checksum string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+?)(\.sqlite|\.postgres)?\.sql$`)

// migrationLockKey is the PostgreSQL advisory lock that serialises
// migrations across nodes starting at once: the first takes it and migrates,
// the others wait, then find nothing left to do.
const migrationLockKey = 0x6b616e616c /* "kanal" */

const versionTableDDL = `CREATE TABLE IF NOT EXISTS kanal_migrations (
	domain     TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	name       TEXT    NOT NULL,
	checksum   TEXT    NOT NULL,
	applied_at BIGINT  NOT NULL,
	PRIMARY KEY (domain, version)
)`

// load reads the migrations of one set that apply to dialect.
func (m Migrations) load(dialect Dialect) ([]migration, error) {
	entries, err := fs.ReadDir(m.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("db: migrations %s: %w", m.Domain, err)
	}
	byVersion := map[int]migration{}
	specific := map[int]bool{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		parts := migrationName.FindStringSubmatch(e.Name())
		if parts == nil {
			return nil, fmt.Errorf("db: migrations %s: bad file name %q (want NNNN_name[.sqlite|.postgres].sql)", m.Domain, e.Name())
		}
		v, _ := strconv.Atoi(parts[1])
		suffix := strings.TrimPrefix(parts[3], ".")
		if suffix != "" && Dialect(suffix) != dialect {
			continue
		}
		if prev, dup := byVersion[v]; dup && (specific[v] == (suffix != "")) {
			return nil, fmt.Errorf("db: migrations %s: version %d given twice (%s, %s)", m.Domain, v, prev.name, parts[2])
		} else if dup && specific[v] {
			continue // a dialect-specific file wins over the generic one
		}
		body, err := fs.ReadFile(m.FS, e.Name())
		if err != nil {
			return nil, fmt.Errorf("db: migrations %s: %w", m.Domain, err)
		}
		sum := sha256.Sum256(body)
		byVersion[v] = migration{version: v, name: parts[2], sql: string(body), checksum: hex.EncodeToString(sum[:])}
		specific[v] = suffix != ""
	}
	out := make([]migration, 0, len(byVersion))
	for _, mg := range byVersion {
		out = append(out, mg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, mg := range out {
		if mg.version != i+1 {
			return nil, fmt.Errorf("db: migrations %s: version %d missing", m.Domain, i+1)
		}
	}
	return out, nil
}

// Migrate applies every migration not yet applied, for all sets, in one
// transaction: either the schema moves to the new version completely or not
// at all. On PostgreSQL an advisory lock makes concurrent nodes wait for
// the first one instead of migrating twice.
func (d *DB) Migrate(ctx context.Context, sets ...Migrations) error {
	loaded := make([][]migration, len(sets))
	seen := map[string]bool{}
	for i, s := range sets {
		if seen[s.Domain] {
			return fmt.Errorf("db: migrations for %q given twice", s.Domain)
		}
		seen[s.Domain] = true
		ms, err := s.load(d.dialect)
		if err != nil {
			return err
		}
		loaded[i] = ms
	}
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		if d.dialect == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockKey)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, versionTableDDL); err != nil {
			return err
		}
		for i, s := range sets {
			if err := apply(ctx, tx, s.Domain, loaded[i]); err != nil {
				return err
			}
		}
		return nil
	})
	d.migrated.Store(err == nil)
	if err != nil {
		return err
	}
	return nil
}

func apply(ctx context.Context, tx *sql.Tx, domain string, ms []migration) error {
	applied := map[int]string{}
	rows, err := tx.QueryContext(ctx, `SELECT version, checksum FROM kanal_migrations WHERE domain = $1`, domain)
	if err != nil {
		return err
	}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return err
		}
		applied[v] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(applied) > len(ms) {
		return fmt.Errorf("db: the database has %d %s migrations but this kanald knows %d: it is older than the schema", len(applied), domain, len(ms))
	}
	for _, m := range ms {
		if sum, ok := applied[m.version]; ok {
			if sum != m.checksum {
				return fmt.Errorf("db: migration %s %04d_%s was edited after it was applied", domain, m.version, m.name)
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("db: migration %s %04d_%s: %w", domain, m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO kanal_migrations (domain, version, name, checksum, applied_at) VALUES ($1, $2, $3, $4, $5)`,
			domain, m.version, m.name, m.checksum, time.Now().Unix()); err != nil {
			return err
		}
	}
	return nil
}

// Applied returns the number of applied migrations per domain.
func (d *DB) Applied(ctx context.Context) (map[string]int, error) {
	rows, err := d.Query(ctx, `SELECT domain, COUNT(*) FROM kanal_migrations GROUP BY domain`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var dom string
		var n int
		if err := rows.Scan(&dom, &n); err != nil {
			return nil, err
		}
		out[dom] = n
	}
	return out, rows.Err()
}

// Embedded returns the migrations in the "migrations" directory of an
// embedded file system, the layout every domain uses:
//
//	//go:embed migrations/*.sql
//	var migrationFiles embed.FS
//	func Migrations() db.Migrations { return db.Embedded("identity", migrationFiles) }
func Embedded(domain string, fsys fs.FS) Migrations {
	sub, err := fs.Sub(fsys, "migrations")
	if err != nil {
		panic(err) // the directory is fixed at compile time
	}
	return Migrations{Domain: domain, FS: sub}
}
