package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var ownMigrations embed.FS

func kanaldMigrations() db.Migrations {
	return db.Embedded("kanald", ownMigrations)
}

// deployment identifies the kanal installation a database belongs to.
type deployment struct {
	ID        string
	CreatedAt time.Time
}

// loadDeployment returns the deployment recorded in d, creating it on the
// very first start. Concurrent first starts agree on one row.
func loadDeployment(ctx context.Context, d *db.DB, now time.Time) (deployment, error) {
	var dep deployment
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO deployment (singleton, id, created_at) VALUES (1, $1, $2) ON CONFLICT (singleton) DO NOTHING`,
			hex.EncodeToString(b[:]), now.Unix()); err != nil {
			return err
		}
		var created int64
		if err := tx.QueryRowContext(ctx, `SELECT id, created_at FROM deployment WHERE singleton = 1`).Scan(&dep.ID, &created); err != nil {
			return err
		}
		dep.CreatedAt = time.Unix(created, 0).UTC()
		return nil
	})
	return dep, err
}
