package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the fresh PostgreSQL schema of a run
)

// node is one kanald child process.
type node struct {
	URL     string
	DataDir string
	cmd     *exec.Cmd
	done    chan struct{}
	mu      sync.Mutex
	out     bytes.Buffer // the child's output, for the operator token and errors
}

func (n *node) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

// Pid is the child's process id, for /proc.
func (n *node) Pid() int { return n.cmd.Process.Pid }

// cluster is what the bench talks to: the kanald nodes it started (or the
// one it was pointed at), the operator token, and where sign-up mails land.
type cluster struct {
	nodes    []*node
	urls     []string
	opToken  string
	mailDirs []string    // each node writes the mails of the sign-ups it served
	tmp      string      // removed by stop
	dropPG   func()      // drops the run's PostgreSQL schema, unless kept
	keptPG   atomic.Bool // the schema belongs to a -keep directory: stop leaves it
	// pg and pgApp find the run's PostgreSQL backends: the nodes connect
	// with application_name pgApp (the run's schema).
	pg    *sql.DB
	pgApp string
}

// kanaldBinary returns the kanald to run: the -kanald flag, else a fresh
// build of this module's cmd/kanald (so the bench measures the code beside
// it), else kanald on PATH.
func kanaldBinary(flagPath, dir string, stderr io.Writer) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	out := filepath.Join(dir, "kanald")
	cmd := exec.Command("go", "build", "-o", out, "github.com/kanal-server/kanal/cmd/kanald")
	b, err := cmd.CombinedOutput()
	if err == nil {
		return out, nil
	}
	if p, perr := exec.LookPath("kanald"); perr == nil {
		fmt.Fprintf(stderr, "kanal-bench: go build of cmd/kanald failed (%v); using %s\n", err, p)
		return p, nil
	}
	return "", fmt.Errorf("build kanald: %v\n%s", err, b)
}

type startOptions struct {
	bin         string
	nodes       int
	databaseURL string // empty: SQLite in the first node's data directory
	natsURL     string
	sendLimit   int    // KANAL_SEND_LIMIT of the nodes; 0: kanald's default
	keep        string // a -keep directory: the nodes' data and CA directories live there, and stay
	keptSchema  string // PostgreSQL: the kept schema to start on instead of a fresh one
	stderr      io.Writer
}

// startCluster starts o.nodes kanald processes on loopback ports sharing one
// CA. Several nodes need PostgreSQL and NATS, as in production.
func startCluster(ctx context.Context, o startOptions) (_ *cluster, err error) {
	if o.nodes < 1 {
		o.nodes = 1
	}
	if o.nodes > 1 && (o.databaseURL == "" || o.natsURL == "") {
		return nil, errors.New("-nodes > 1 needs -database-url and -nats-url (nodes share the database and the bus)")
	}
	tmp, err := os.MkdirTemp("", "kanal-bench-")
	if err != nil {
		return nil, err
	}
	c := &cluster{tmp: tmp}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	bin, err := kanaldBinary(o.bin, tmp, o.stderr)
	if err != nil {
		return nil, err
	}
	dbURL := o.databaseURL
	if strings.HasPrefix(dbURL, "postgres") {
		// A fresh schema per run: every run starts from an empty database
		// and leaves nothing behind — unless it is kept (-keep), when the
		// run that provisioned it leaves it, and later runs start on it.
		if o.keptSchema != "" {
			dbURL, c.pgApp, c.pg, err = keptSchema(ctx, dbURL, o.keptSchema)
			c.keptPG.Store(true)
			if err == nil {
				err = vacuumSchema(ctx, c.pg, c.pgApp, o.stderr)
			}
		} else {
			dbURL, c.pgApp, c.pg, err = freshSchema(ctx, dbURL)
		}
		if err != nil {
			return nil, err
		}
		c.dropPG = func() {
			if !c.keptPG.Load() {
				c.pg.Exec("DROP SCHEMA " + c.pgApp + " CASCADE")
			}
			c.pg.Close()
		}
	}
	caDir := filepath.Join(tmp, "ca")
	if o.keep != "" {
		_, caDir = keepDirs(o.keep, 0)
	}
	for i := range o.nodes {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		n := &node{URL: fmt.Sprintf("http://127.0.0.1:%d", port), DataDir: filepath.Join(tmp, fmt.Sprintf("node%d", i)), done: make(chan struct{})}
		if o.keep != "" {
			n.DataDir, _ = keepDirs(o.keep, i)
		}
		n.cmd = exec.Command(bin)
		// Warnings only: an access log line per request would cost the
		// server more than some handlers do, and would measure logging.
		n.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp,
			"KANAL_ADDR=127.0.0.1:" + strconv.Itoa(port), "KANAL_DATA_DIR=" + n.DataDir,
			"KANAL_CA_DIR=" + caDir, "KANAL_LOG_LEVEL=warn",
			// Every bench device signs up from this one address.
			"KANAL_SIGNUP_LIMIT=1000000", "KANAL_SIGNUP_CLIENT_LIMIT=1000000"}
		if dbURL != "" {
			n.cmd.Env = append(n.cmd.Env, "KANAL_DATABASE_URL="+dbURL)
		}
		if o.natsURL != "" {
			n.cmd.Env = append(n.cmd.Env, "KANAL_NATS_URL="+o.natsURL)
		}
		if o.sendLimit > 0 {
			n.cmd.Env = append(n.cmd.Env, "KANAL_SEND_LIMIT="+strconv.Itoa(o.sendLimit))
		}
		// Go's own memory settings pass through, so a run can show kanald
		// as an operator would run it (GOMEMLIMIT=1800MiB, for example).
		for _, k := range []string{"GOMEMLIMIT", "GOGC"} {
			if v, ok := os.LookupEnv(k); ok {
				n.cmd.Env = append(n.cmd.Env, k+"="+v)
			}
		}
		// KANAL_PPROF_ADDR in kanal-bench's environment profiles the first
		// node: bench/profile.sh reads it with go tool pprof.
		if a := os.Getenv("KANAL_PPROF_ADDR"); a != "" && i == 0 {
			n.cmd.Env = append(n.cmd.Env, "KANAL_PPROF_ADDR="+a)
		}
		pr, pw := io.Pipe()
		n.cmd.Stdout, n.cmd.Stderr = pw, pw
		n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := n.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start kanald: %w", err)
		}
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				n.mu.Lock()
				if n.out.Len() < 1<<20 {
					n.out.Write(sc.Bytes())
					n.out.WriteByte('\n')
				}
				n.mu.Unlock()
			}
		}()
		go func() { n.cmd.Wait(); pw.Close(); close(n.done) }()
		c.nodes = append(c.nodes, n)
		c.urls = append(c.urls, n.URL)
		// One at a time: the first node creates the CA and migrates.
		if err := waitReady(ctx, n); err != nil {
			return nil, err
		}
	}
	for _, n := range c.nodes {
		c.mailDirs = append(c.mailDirs, filepath.Join(n.DataDir, "mail"))
	}
	// The first node issued the operator token into its data directory
	// before it became ready.
	b, err := os.ReadFile(filepath.Join(c.nodes[0].DataDir, "operator-token"))
	if err != nil {
		return nil, fmt.Errorf("read the operator token: %w", err)
	}
	c.opToken = strings.TrimSpace(string(b))
	return c, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(ctx context.Context, n *node) error {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			return fmt.Errorf("kanald exited before it was ready:\n%s", n.output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get(n.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("kanald not ready after 90s:\n%s", n.output())
}

// stop ends the children with SIGTERM (kanald shuts down gracefully) and
// removes the temporary directory and schema.
func (c *cluster) stop() {
	for _, n := range c.nodes {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range c.nodes {
		select {
		case <-n.done:
		case <-time.After(20 * time.Second):
			n.cmd.Process.Kill()
			<-n.done
		}
	}
	if c.dropPG != nil {
		c.dropPG()
	}
	if c.tmp != "" {
		os.RemoveAll(c.tmp)
	}
}

// freshSchema creates a schema for the run and returns the URL the nodes
// connect with: the schema as their search_path, and as their
// application_name, by which postgresCPU finds their backends.
func freshSchema(ctx context.Context, base string) (string, string, *sql.DB, error) {
	d, err := sql.Open("pgx", base)
	if err != nil {
		return "", "", nil, err
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "kanal_bench_" + hex.EncodeToString(b[:])
	if _, err := d.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		d.Close()
		return "", "", nil, fmt.Errorf("-database-url: create schema: %w", err)
	}
	u, err := schemaURL(base, schema)
	if err != nil {
		d.Exec("DROP SCHEMA " + schema + " CASCADE")
		d.Close()
		return "", "", nil, err
	}
	return u, schema, d, nil
}

// keptSchema is freshSchema for a schema a -keep directory names: it must
// exist already, and nothing is created.
func keptSchema(ctx context.Context, base, schema string) (string, string, *sql.DB, error) {
	if !keptSchemaRE.MatchString(schema) {
		return "", "", nil, fmt.Errorf("kept schema %q is not one kanal-bench made", schema)
	}
	d, err := sql.Open("pgx", base)
	if err != nil {
		return "", "", nil, err
	}
	var n int
	err = d.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n)
	if err == nil && n == 0 {
		err = fmt.Errorf("-database-url: no schema %s (was it dropped?): remove the -keep directory", schema)
	}
	if err != nil {
		d.Close()
		return "", "", nil, err
	}
	u, err := schemaURL(base, schema)
	if err != nil {
		d.Close()
		return "", "", nil, err
	}
	return u, schema, d, nil
}

var keptSchemaRE = regexp.MustCompile(`^kanal_bench_[0-9a-f]{12}$`)

// vacuumSchema vacuums and analyzes every table of a kept schema before
// a run. Each run inserts and deletes a reference per follower and
// updates each head twice; where the server's autovacuum is off (it is
// on the machines the benchmarks ran on) or has not caught up, a run
// would meet the dead rows of every run before it, and runs of two
// builds would not compare.
func vacuumSchema(ctx context.Context, d *sql.DB, schema string, stderr io.Writer) error {
	start := time.Now()
	rows, err := d.QueryContext(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema)
	if err != nil {
		return fmt.Errorf("vacuum kept schema: %w", err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return fmt.Errorf("vacuum kept schema: %w", err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("vacuum kept schema: %w", err)
	}
	for _, t := range tables {
		if _, err := d.ExecContext(ctx, "VACUUM (ANALYZE) "+pgx.Identifier{schema, t}.Sanitize()); err != nil {
			return fmt.Errorf("vacuum kept schema: %w", err)
		}
	}
	fmt.Fprintf(stderr, "kanal-bench: kept schema %s vacuumed (%d tables) in %.1f s\n", schema, len(tables), time.Since(start).Seconds())
	return nil
}

// schemaURL is base with the schema as search_path and application_name.
func schemaURL(base, schema string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// postgresCPU is the CPU time so far of each PostgreSQL backend the nodes
// have open, by process id, when PostgreSQL runs on this machine (its
// /proc readable); nil without PostgreSQL. It does not see PostgreSQL's
// shared background processes (WAL writer, checkpointer) nor a backend
// that exits between two samples.
func (c *cluster) postgresCPU(ctx context.Context) map[int]time.Duration {
	if c == nil || c.pg == nil {
		return nil
	}
	rows, err := c.pg.QueryContext(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", c.pgApp)
	if err != nil {
		return nil
	}
	defer rows.Close()
	cpu := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return nil
		}
		if s, err := sampleProc(pid); err == nil {
			cpu[pid] = s.cpu
		}
	}
	if rows.Err() != nil {
		return nil
	}
	return cpu
}

// procSample is a process's CPU time and resident memory at one moment.
type procSample struct {
	at  time.Time
	cpu time.Duration // user + system
	rss int64         // bytes
}

// sampleProc reads /proc/<pid>/stat and /proc/<pid>/status.
func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces; fields count from after its ')'.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return s, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	s.cpu = time.Duration(utime+stime) * time.Second / clkTck
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.rss = kb << 10
		}
	}
	return s, nil
}

// mailCodes finds sign-up codes in the directory kanald's embedded mailer
// writes to, as a user would read them; one scan serves every waiter. A
// mail read is moved into the directory's read/ subdirectory, so that a
// scan lists only the mails still waiting: with every mail left in place,
// each scan listed all the mails of the run so far, and provisioning slowed
// with the square of the devices (50,000 sign-ups made 1.25 billion
// directory entries to list).
type mailCodes struct {
	dirs  []string
	mu    sync.Mutex
	seen  map[string]bool
	codes map[string]string // address → newest code
}

func newMailCodes(dirs []string) *mailCodes {
	return &mailCodes{dirs: dirs, seen: map[string]bool{}, codes: map[string]string{}}
}

var codeRE = regexp.MustCompile(`\b[0-9]{8}\b`)

// code waits for the code mailed to addr.
func (m *mailCodes) code(ctx context.Context, addr string) (string, error) {
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		m.mu.Lock()
		c, ok := m.codes[addr]
		if !ok {
			m.scan()
			c, ok = m.codes[addr]
		}
		m.mu.Unlock()
		if ok {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no sign-up mail to %s in %s: %w", addr, strings.Join(m.dirs, ", "), ctx.Err())
		case <-time.After(wait):
		}
	}
}

func (m *mailCodes) scan() {
	for _, dir := range m.dirs {
		m.scanDir(dir)
	}
}

func (m *mailCodes) scanDir(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if m.seen[e.Name()] || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			continue // being written; the next scan reads it
		}
		to, err := mail.ParseAddress(msg.Header.Get("To"))
		if err != nil {
			continue
		}
		var body io.Reader = msg.Body
		if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		text, _ := io.ReadAll(body)
		if code := codeRE.FindString(string(text)); code != "" {
			m.seen[e.Name()] = true
			m.codes[to.Address] = code
			read := filepath.Join(dir, "read")
			if err := os.MkdirAll(read, 0o700); err == nil {
				if os.Rename(filepath.Join(dir, e.Name()), filepath.Join(read, e.Name())) == nil {
					delete(m.seen, e.Name()) // gone from the listing
				}
			}
		}
	}
}
