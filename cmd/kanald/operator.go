package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/internal/db"
)

// operatorExpiryWarning is how long before its expiry kanald starts
// warning, at every start, that the operator token needs rotating.
const operatorExpiryWarning = 14 * 24 * time.Hour

const operatorUsage = `usage: kanald operator reset [flags]

Issues a new operator token, writes it to KANAL_OPERATOR_TOKEN_FILE
(default <data-dir>/operator-token, mode 0600) and revokes every earlier
operator token. It talks to the database only, with the same settings as
kanald (KANAL_DATABASE_URL or KANAL_DATA_DIR), so it works while kanald
nodes keep running: they refuse the old tokens from the next request on.
The reset is recorded in the audit log.
`

// runOperator is `kanald operator <task>`: operator tasks run on a host
// that holds the deployment's settings, against the database directly.
func runOperator(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "reset" {
		fmt.Fprint(stdout, operatorUsage)
		if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
			return nil
		}
		return fmt.Errorf("unknown operator task %q (want reset)", args[0])
	}
	cfg, err := parseConfig(args[1:], getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	// A reset needs an existing deployment: it must not create an empty
	// database in a mistyped data directory.
	setting := "KANAL_DATABASE_URL"
	if cfg.DatabaseURL == "" {
		setting = "KANAL_DATA_DIR"
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "kanal.db")); err != nil {
			return &settingError{setting, fmt.Errorf("no kanal database in %s (start kanald there first)", cfg.DataDir)}
		}
	}
	d, err := db.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return &settingError{setting, err}
	}
	defer d.Close()
	var dep string
	if err := d.QueryRow(ctx, `SELECT id FROM deployment WHERE singleton = 1`).Scan(&dep); err != nil {
		return &settingError{setting, errors.New("no kanal deployment in this database (start kanald first)")}
	}
	if err := d.Migrate(ctx, migrations()...); err != nil {
		return &settingError{setting, err}
	}
	file := cfg.operatorTokenFile()
	t, revoked, err := identity.ResetOperator(ctx, d, identity.OperatorOptions{
		TTL: cfg.OperatorTokenTTL, Actor: "kanald operator reset",
		Deliver: func(tok string, _ identity.OperatorToken) error { return writeSecretFile(file, tok+"\n") },
	})
	if err != nil {
		return &settingError{"KANAL_OPERATOR_TOKEN_FILE", fmt.Errorf("reset the operator token: %w", err)}
	}
	gone := "no earlier token was active"
	if len(revoked) > 0 {
		gone = "revoked " + strings.Join(revoked, ", ")
	}
	fmt.Fprintf(stdout, "operator token %s written to %s (mode 0600), valid until %s; %s\n",
		t.ID, file, t.ExpiresAt.Format(time.RFC3339), gone)
	return nil
}

// writeSecretFile writes data to path with mode 0600, replacing any file
// there in one rename, so the path never holds a partial token or one
// readable by others.
func writeSecretFile(path, data string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".operator-token-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, errors.Unwrap(err))
	}
	defer os.Remove(f.Name()) // after a successful rename there is nothing left to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, errors.Unwrap(err))
	}
	return nil
}

// warnOperatorExpiry logs, at start, when no operator token works any
// more or the current one runs out soon.
func warnOperatorExpiry(ctx context.Context, log *slog.Logger, d *db.DB, now time.Time) {
	t, ok, err := identity.CurrentOperator(ctx, d, now)
	switch {
	case err != nil:
		log.Warn("cannot read the operator token's expiry", "err", err)
	case !ok:
		log.Warn("no operator token works (expired or revoked); issue one with: kanald operator reset")
	case t.ExpiresAt.Sub(now) < operatorExpiryWarning:
		log.Warn("the operator token expires soon; rotate it with: kanald operator reset", "id", t.ID, "expires", t.ExpiresAt)
	}
}
