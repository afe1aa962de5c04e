// Command kanald is the kanal server. With no configuration it keeps its
// data in ./kanal-data (SQLite) and runs an in-process NATS server; pointed
// at PostgreSQL and a NATS cluster, several kanald nodes serve one city.
//
// `kanald operator reset` issues a new operator token and revokes the
// earlier ones, against the database of the same settings. `kanald ca
// init` and `kanald ca issue-intermediate` keep the CA's root offline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if startedByGoRun() {
		// `go run` does not pass SIGTERM on to the program it built: the go
		// command dies and kanald would live on, orphaned, holding the port
		// and the database. Under go run, kanald stops when its parent does.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go exitWithParent(os.Getppid(), cancel)
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kanald: %v\n", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds a graceful stop: in-flight requests get this long.
const shutdownTimeout = 8 * time.Second

// run starts kanald and blocks until ctx is cancelled, then shuts down
// gracefully. Any startup failure is returned as one line naming the setting
// and the cause, and leaves nothing half-written behind.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) (err error) {
	if len(args) > 0 && args[0] == "operator" {
		return runOperator(ctx, args[1:], getenv, stdout)
	}
	if len(args) > 0 && args[0] == "ca" {
		return runCA(ctx, args[1:], getenv, stdout)
	}
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg, stdout)

	// Listen first: a port in use is the most common mistake and costs
	// nothing to find out before anything is written.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return &settingError{"KANAL_ADDR", fmt.Errorf("cannot listen on %s: %w", cfg.Addr, errors.Unwrap(err))}
	}
	defer ln.Close()
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + ln.Addr().String()
	}
	// The first line says where kanald will answer and where it keeps its
	// data, before the slow parts (migrations, the CA, NATS) begin: a
	// newcomer sees at once what started and where to look.
	log.Info("kanald starting",
		"pid", os.Getpid(),
		"addr", "http://"+ln.Addr().String(),
		"data_dir", absPath(cfg.DataDir),
		"database", databaseSummary(cfg.DatabaseURL, cfg.DataDir))

	createdDir, err := prepareDataDir(cfg.DataDir)
	if err != nil {
		return &settingError{"KANAL_DATA_DIR", err}
	}
	defer func() {
		// A first start that fails leaves no data directory behind.
		if err != nil && createdDir {
			os.RemoveAll(cfg.DataDir)
		}
	}()

	d, err := db.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		if cfg.DatabaseURL == "" {
			return &settingError{"KANAL_DATA_DIR", err}
		}
		return &settingError{"KANAL_DATABASE_URL", err}
	}
	defer d.Close()
	if err := d.Migrate(ctx, migrations()...); err != nil {
		return &settingError{"KANAL_DATABASE_URL", err}
	}
	if on, err := d.Autovacuum(ctx); err == nil && !on {
		log.Warn("PostgreSQL's autovacuum is off: the mailbox tables (every envelope inserted, then deleted at its acknowledgement) fill with dead rows that slow every send and delivery; set autovacuum = on, or VACUUM the database on a schedule")
	}

	dep, err := loadDeployment(ctx, d, time.Now())
	if err != nil {
		return &settingError{"KANAL_DATABASE_URL", fmt.Errorf("load deployment: %w", err)}
	}

	authority, err := loadCA(cfg.caDir(), "kanal "+dep.ID[:8], time.Now())
	if err != nil {
		return &settingError{"KANAL_CA_DIR", err}
	}
	if err := checkCAFingerprint(ctx, d, cfg.caDir(), caFingerprint(authority)); err != nil {
		return &settingError{"KANAL_CA_DIR", err}
	}

	// The deployment secret, not the CA key, yields the keys that seal
	// what the database holds. A data directory from before the secret
	// still opens: its CA key is the legacy master, and what was sealed
	// under it is sealed again under the secret at start.
	recorded, err := secretRecorded(ctx, d)
	if err != nil {
		return &settingError{"KANAL_DATABASE_URL", err}
	}
	secret, createdSecret, err := loadOrCreateSecret(cfg.secretFile(), recorded == "")
	if err != nil {
		return &settingError{"KANAL_SECRET_FILE", err}
	}
	var legacy []byte // the CA key, if this node holds the root (older data directories)
	if authority.Intermediates() == nil {
		if legacy, err = authority.KeyPEM(); err != nil {
			return &settingError{"KANAL_CA_DIR", err}
		}
	}
	keys, err := deriveSecretKeys(secret, legacy)
	if err != nil {
		return err
	}
	if err := checkSecret(ctx, d, cfg.secretFile(), keys.check); err != nil {
		if createdSecret {
			os.Remove(cfg.secretFile())
		}
		return &settingError{"KANAL_SECRET_FILE", err}
	}
	if createdSecret {
		log.Info("deployment secret created (mode 0600); every node of the deployment needs this file", "file", cfg.secretFile())
	}

	natsOpts := cfg.NATS
	natsOpts.Name, natsOpts.Logger = "kanald-"+cfg.Addr, log
	b, err := bus.Open(ctx, natsOpts)
	if err != nil {
		return natsSettingError(natsOpts, err)
	}
	defer b.Close()

	a, err := newApp(cfg, log, d, b, authority, keys)
	if err != nil {
		return err
	}
	// The first operator token is issued once per deployment, by the node
	// that gets there first, into a file only kanald's user can read:
	// never onto the log stream. Only its hash is stored.
	tokenFile := cfg.operatorTokenFile()
	if t, created, err := a.ident.EnsureOperator(ctx, identity.OperatorOptions{
		TTL: cfg.OperatorTokenTTL, Actor: "kanald",
		Deliver: func(tok string, _ identity.OperatorToken) error { return writeSecretFile(tokenFile, tok+"\n") },
	}); err != nil {
		return &settingError{"KANAL_OPERATOR_TOKEN_FILE", fmt.Errorf("issue the operator token: %w", err)}
	} else if created {
		log.Info(fmt.Sprintf("operator token %s written to %s (mode 0600)", t.ID, tokenFile), "expires", t.ExpiresAt)
	}
	warnOperatorExpiry(ctx, log, d, time.Now())
	if cfg.PprofAddr != "" {
		stopPprof, err := startPprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	srv := web.NewServer(a.handler, log)
	srv.RegisterOnShutdown(a.conns.CloseAll)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("kanald ready",
		"addr", "http://"+ln.Addr().String(),
		"database", string(d.Dialect()),
		"bus", map[bool]string{true: "embedded", false: "external"}[b.Embedded()],
		"data_dir", cfg.DataDir,
		"deployment", dep.ID,
		"ca_sha256", caFingerprint(authority),
		"log_key", a.tlog.VerifierKey())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Shutdown stops accepting, waits for in-flight requests and, through
	// RegisterOnShutdown, closes the websockets it cannot see.
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: requests still running were cut", "err", err)
		srv.Close()
	}
	a.close()
	if err := b.Close(); err != nil {
		log.Warn("bus drain", "err", err)
	}
	if err := d.Close(); err != nil {
		log.Warn("database close", "err", err)
	}
	log.Info("stopped")
	return nil
}

// prepareDataDir creates dir if needed and proves it is writable. It
// reports whether it created the directory, so a failed first start can
// remove it again.
func prepareDataDir(dir string) (created bool, err error) {
	if _, statErr := os.Stat(dir); errors.Is(statErr, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("cannot create %s: %w", dir, errors.Unwrap(err))
	}
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		if created {
			os.RemoveAll(dir)
		}
		return false, fmt.Errorf("cannot write to %s: %w", dir, errors.Unwrap(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return created, nil
}

// absPath is dir made absolute for the log, or dir itself if it cannot be.
func absPath(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// databaseSummary names the database for the first log line without its
// credentials: the SQLite file, or the PostgreSQL host and database.
func databaseSummary(url, dataDir string) string {
	switch {
	case url == "":
		return "sqlite:" + filepath.Join(absPath(dataDir), "kanal.db")
	case strings.HasPrefix(url, "sqlite:"):
		return url
	}
	u, err := neturl.Parse(url)
	if err != nil {
		return "postgres"
	}
	return "postgres://" + u.Host + u.Path
}

// startedByGoRun reports whether `go run` started this process: its
// parent is the go command running "run" (read from /proc where there is
// one), or the binary sits where go run links it (…/go-build…/exe/).
func startedByGoRun() bool {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", os.Getppid())); err == nil {
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && filepath.Base(args[0]) == "go" && args[1] == "run" {
			return true
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	return filepath.Base(filepath.Dir(exe)) == "exe" && strings.Contains(exe, string(filepath.Separator)+"go-build")
}

// exitWithParent calls stop once the process whose child kanald is (ppid)
// has gone: kanald is then re-parented and its parent id changes.
func exitWithParent(ppid int, stop func()) {
	for range time.Tick(250 * time.Millisecond) {
		if os.Getppid() != ppid {
			stop()
			return
		}
	}
}
