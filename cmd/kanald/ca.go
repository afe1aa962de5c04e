package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
)

// loadCA loads the deployment CA from dir, creating it on the first start.
// Nodes that start together on one shared directory take a file lock, so
// exactly one creates the CA and the others load it.
func loadCA(dir, name string, now time.Time) (*ca.CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot lock %s: %w", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("cannot lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	// A directory made by 'kanald ca init' holds an intermediate and no
	// root key; otherwise the CA directory holds the root itself.
	if ca.HasIssuingDir(dir) {
		return ca.LoadIssuingDir(dir)
	}
	c, _, err := ca.LoadOrCreateDir(dir, name, now)
	return c, err
}

// caFingerprint is the hex SHA-256 of the root certificate (the CA
// certificate itself, or the offline root above the intermediate: a new
// intermediate does not change it).
func caFingerprint(c *ca.CA) string {
	sum := sha256.Sum256(c.Root().Raw)
	return hex.EncodeToString(sum[:])
}

// checkCAFingerprint records the CA's fingerprint on the deployment's first
// start and afterwards refuses a node whose CA differs: a second CA would
// issue certificates that clients of the first reject.
func checkCAFingerprint(ctx context.Context, d *db.DB, dir, fp string) error {
	var recorded string
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE deployment SET ca_fingerprint = $1 WHERE singleton = 1 AND ca_fingerprint = ''`, fp); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT ca_fingerprint FROM deployment WHERE singleton = 1`).Scan(&recorded)
	})
	if err != nil {
		return err
	}
	if recorded != fp {
		return fmt.Errorf("the CA in %s (sha256 %s…) is not this deployment's CA (sha256 %s…); point KANAL_CA_DIR at the CA files every node shares", dir, fp[:16], recorded[:16])
	}
	return nil
}
