package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// kanaldBin is the real binary, built once for the end-to-end tests.
var kanaldBin string

func TestMain(m *testing.M) { kanaldtest.Main(m, &kanaldBin) }

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigRejectsBadSettings(t *testing.T) {
	cases := []struct {
		env     map[string]string
		setting string
	}{
		{map[string]string{"KANAL_DATABASE_URL": "mysql://127.0.0.1/x"}, "KANAL_DATABASE_URL"},
		{map[string]string{"KANAL_DATABASE_URL": "postgres://u:pw@[::1"}, "KANAL_DATABASE_URL"},
		{map[string]string{"KANAL_NATS_URL": "http://127.0.0.1:4222"}, "KANAL_NATS_URL"},
		{map[string]string{"KANAL_NATS_URL": "nats://[::1"}, "KANAL_NATS_URL"},
		{map[string]string{"KANAL_ADDR": "8080"}, "KANAL_ADDR"},
		{map[string]string{"KANAL_LOG_LEVEL": "loud"}, "KANAL_LOG_LEVEL"},
		{map[string]string{"KANAL_LOG_FORMAT": "xml"}, "KANAL_LOG_FORMAT"},
		{map[string]string{"KANAL_RETENTION": "10m"}, "KANAL_RETENTION"},
		{map[string]string{"KANAL_RETENTION": "forever"}, "KANAL_RETENTION"},
		{map[string]string{"KANAL_SEND_LIMIT": "0"}, "KANAL_SEND_LIMIT"},
		{map[string]string{"KANAL_SEND_LIMIT": "1e3"}, "KANAL_SEND_LIMIT"},
		{map[string]string{"KANAL_SEND_LIMIT": "100001"}, "KANAL_SEND_LIMIT"},
		{map[string]string{"KANAL_SEND_QUEUE_DELAY": "-1s"}, "KANAL_SEND_QUEUE_DELAY"},
		{map[string]string{"KANAL_SEND_QUEUE_DELAY": "2m"}, "KANAL_SEND_QUEUE_DELAY"},
		{map[string]string{"KANAL_SEND_QUEUE_DELAY": "2"}, "KANAL_SEND_QUEUE_DELAY"},
		{map[string]string{"KANAL_COMMIT_INTERVAL": "-1ms"}, "KANAL_COMMIT_INTERVAL"},
		{map[string]string{"KANAL_COMMIT_INTERVAL": "21ms"}, "KANAL_COMMIT_INTERVAL"},
		{map[string]string{"KANAL_COMMIT_INTERVAL": "2"}, "KANAL_COMMIT_INTERVAL"},
		{map[string]string{"KANAL_SEND_QUEUE_MAX": "-1"}, "KANAL_SEND_QUEUE_MAX"},
		{map[string]string{"KANAL_SEND_QUEUE_MAX": "x"}, "KANAL_SEND_QUEUE_MAX"},
		{map[string]string{"KANAL_PUSH_WORKERS": "0"}, "KANAL_PUSH_WORKERS"},
		{map[string]string{"KANAL_PUSH_WORKERS": "1025"}, "KANAL_PUSH_WORKERS"},
		{map[string]string{"KANAL_SIGNUP_LIMIT": "0"}, "KANAL_SIGNUP_LIMIT"},
		{map[string]string{"KANAL_SIGNUP_CLIENT_LIMIT": "many"}, "KANAL_SIGNUP_CLIENT_LIMIT"},
		{map[string]string{"KANAL_PPROF_ADDR": "0.0.0.0:6060"}, "KANAL_PPROF_ADDR"},
		{map[string]string{"KANAL_LOG_WITNESSES": "witness.example/a+00000000+AAAA"}, "KANAL_LOG_WITNESSES"},
		{map[string]string{"KANAL_LOG_WITNESS_QUORUM": "1"}, "KANAL_LOG_WITNESS_QUORUM"},
		{map[string]string{"KANAL_LOG_WITNESS_QUORUM": "-1"}, "KANAL_LOG_WITNESS_QUORUM"},
		{map[string]string{"KANAL_PPROF_ADDR": "6060"}, "KANAL_PPROF_ADDR"},
		{map[string]string{"KANAL_DATA_DIR": ""}, ""},
		{map[string]string{"KANAL_EID_CLIENT_ID": "kanal"}, "KANAL_EID_ISSUER"},
		{map[string]string{"KANAL_EID_ISSUER": "http://eid.example", "KANAL_EID_CLIENT_ID": "kanal", "KANAL_EID_CLIENT_SECRET_FILE": "/dev/null",
			"KANAL_EID_REDIRECT_URL": "https://kanal.example/v1/eid/callback"}, "KANAL_EID_ISSUER"},
		{map[string]string{"KANAL_EID_ISSUER": "https://eid.example", "KANAL_EID_CLIENT_ID": "kanal",
			"KANAL_EID_REDIRECT_URL": "https://kanal.example/v1/eid/callback"}, "KANAL_EID_CLIENT_SECRET_FILE"},
		{map[string]string{"KANAL_EID_ISSUER": "https://eid.example", "KANAL_EID_CLIENT_ID": "kanal", "KANAL_EID_CLIENT_SECRET_FILE": "/nonexistent/secret",
			"KANAL_EID_REDIRECT_URL": "https://kanal.example/v1/eid/callback"}, "KANAL_EID_CLIENT_SECRET_FILE"},
		{map[string]string{"KANAL_EID_ISSUER": "https://eid.example", "KANAL_EID_CLIENT_ID": "kanal", "KANAL_EID_CLIENT_SECRET_FILE": "/etc/hostname",
			"KANAL_EID_REDIRECT_URL": "https://kanal.example/v1/eid/callback"}, "KANAL_EID_CLIENT_SECRET_FILE"},
	}
	for _, c := range cases {
		_, err := parseConfig(nil, envOf(c.env), io.Discard)
		if c.setting == "" {
			if err != nil {
				t.Errorf("%v: empty env should fall back to the default, got %v", c.env, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), c.setting+": ") {
			t.Errorf("%v: got %v, want an error starting with %s", c.env, err, c.setting)
		}
	}
	// Flags win over the environment.
	c, err := parseConfig([]string{"-addr", "127.0.0.1:9999"}, envOf(map[string]string{"KANAL_ADDR": "127.0.0.1:1"}), io.Discard)
	if err != nil || c.Addr != "127.0.0.1:9999" {
		t.Fatalf("flag did not win: %v %v", c, err)
	}
}

// TestRunBadInputs starts kanald in process with each bad setting: it must
// fail with one line naming the setting and the cause, and leave no data
// directory behind.
func TestRunBadInputs(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		env     map[string]string
		setting string
		cause   string
	}{
		{"address in use", map[string]string{"KANAL_ADDR": busy.Addr().String()}, "KANAL_ADDR", "address already in use"},
		{"unparseable database URL", map[string]string{"KANAL_DATABASE_URL": "postgres://u:pw@[::1"}, "KANAL_DATABASE_URL", "cannot parse"},
		{"unreachable PostgreSQL", map[string]string{"KANAL_DATABASE_URL": "postgres://kanal:hunter2@127.0.0.1:1/test?sslmode=disable"}, "KANAL_DATABASE_URL", "127.0.0.1:1"},
		{"unwritable data directory", map[string]string{"KANAL_DATA_DIR": filepath.Join(file, "data")}, "KANAL_DATA_DIR", "not a directory"},
		{"unreachable NATS", map[string]string{"KANAL_NATS_URL": "nats://127.0.0.1:1"}, "KANAL_NATS_URL", "127.0.0.1:1"},
		{"unparseable NATS URL", map[string]string{"KANAL_NATS_URL": "nats://[::1"}, "KANAL_NATS_URL", "cannot parse"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "kanal-data")
			env := map[string]string{"KANAL_ADDR": "127.0.0.1:0", "KANAL_DATA_DIR": dataDir}
			for k, v := range c.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, nil, envOf(env), io.Discard)
			if err == nil {
				t.Fatal("kanald started")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, c.setting+": ") || !strings.Contains(msg, c.cause) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q should be one line naming %s and %q", msg, c.setting, c.cause)
			}
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("error shows a password: %q", msg)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Fatalf("a failed first start left %s behind", dataDir)
			}
		})
	}
}

// node is a running kanald process.
type node struct{ *kanaldtest.Server }

// startNode runs the real binary and waits until it logs that it is ready.
func startNode(t *testing.T, env map[string]string) *node {
	t.Helper()
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	return &node{kanaldtest.Start(t, kanaldBin, kv...)}
}

func (n *node) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(n.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEmbeddedLifecycle is a new user's first run: ready on the embedded
// default, metrics served, SIGTERM exits 0, and a restart keeps the data.
func TestEmbeddedLifecycle(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kanal-data")
	n := startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
	if code, body := n.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "kanal.db")); err != nil {
		t.Fatalf("no database in the data directory: %v", err)
	}
	for i := 0; i < 3; i++ {
		n.get(t, "/healthz")
	}
	n.get(t, "/no-such-route")
	_, text := n.get(t, "/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	if got := counterValue(fams, "kanal_http_requests_total", map[string]string{"route": "GET /healthz", "status": "200"}); got != 3 {
		t.Fatalf("healthz counted %v times, want 3", got)
	}
	if got := counterValue(fams, "kanal_http_requests_total", map[string]string{"route": "/", "status": "404"}); got != 1 {
		t.Fatalf("404s counted %v times, want 1", got)
	}
	if _, ok := fams["kanal_nats_connected"]; !ok {
		t.Fatal("no NATS connection metric")
	}
	if _, ok := fams["kanal_db_open_connections"]; !ok {
		t.Fatal("no database pool metric")
	}
	for _, reason := range []string{"conflict", "error"} {
		if got := counterValue(fams, "kanal_group_commit_failures_total", map[string]string{"reason": reason}); got != 0 {
			t.Fatalf("kanal_group_commit_failures_total{reason=%q} = %v on a fresh node, want 0 (-1: missing)", reason, got)
		}
	}

	err, took := n.Stop(t)
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if took > 10*time.Second {
		t.Fatalf("shutdown took %v", took)
	}

	again := startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
	if again.Deployment != n.Deployment || n.Deployment == "" {
		t.Fatalf("deployment changed across restart: %q then %q", n.Deployment, again.Deployment)
	}
	if err, _ := again.Stop(t); err != nil {
		t.Fatalf("second exit: %v", err)
	}
}

func counterValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	for _, m := range f.GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match == len(labels) {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestTwoNodesSharePostgresAndNATS is production: two kanald processes on
// two ports against one PostgreSQL and one NATS. Both become ready, they
// agree on the deployment, and every migration ran exactly once.
func TestTwoNodesSharePostgresAndNATS(t *testing.T) {
	base := dbtest.PostgresURL(t)
	natsURL := kanaldtest.NATSURL(t)
	dbURL := dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))
	// The nodes share one CA directory, as a deployment's nodes share the
	// CA files (e.g. on a mounted secret); each has its own data directory.
	caDir := filepath.Join(t.TempDir(), "ca")
	env := func() map[string]string {
		return map[string]string{"KANAL_DATABASE_URL": dbURL, "KANAL_NATS_URL": natsURL, "KANAL_DATA_DIR": t.TempDir(), "KANAL_CA_DIR": caDir}
	}
	var a, b *node
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = startNode(t, env()) }()
	go func() { defer wg.Done(); b = startNode(t, env()) }()
	wg.Wait()
	if a == nil || b == nil {
		t.Fatal("a node did not start")
	}
	for _, n := range []*node{a, b} {
		if code, body := n.get(t, "/readyz"); code != 200 {
			t.Fatalf("%s /readyz = %d %s", n.URL, code, body)
		}
	}
	if a.URL == b.URL || a.Deployment != b.Deployment {
		t.Fatalf("nodes %s (%s) and %s (%s)", a.URL, a.Deployment, b.URL, b.Deployment)
	}
	// Exactly one node issued the operator token, into its own data
	// directory, and neither printed it.
	if n := strings.Count(a.Output()+b.Output(), `"msg":"operator token op1 written to `); n != 1 {
		t.Fatalf("operator token issued %d times", n)
	}
	if opTokenRE.MatchString(a.Output() + b.Output()) {
		t.Fatal("a node printed the operator token")
	}
	// Both serve the same CA.
	_, caA := a.get(t, "/v1/directory/ca")
	_, caB := b.get(t, "/v1/directory/ca")
	var da, db2 struct{ Certificate string }
	json.Unmarshal([]byte(caA), &da)
	json.Unmarshal([]byte(caB), &db2)
	if da.Certificate == "" || da.Certificate != db2.Certificate {
		t.Fatalf("nodes serve different CAs")
	}
	d, err := db.OpenPostgres(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var rows, distinct int
	if err := d.QueryRow(context.Background(), `SELECT COUNT(*), COUNT(DISTINCT domain || ':' || version) FROM kanal_migrations`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, m := range migrations() {
		entries, _ := fsReadDir(m)
		want += entries
	}
	if rows != want || distinct != want {
		t.Fatalf("version table has %d rows (%d distinct), want %d: migrations ran more than once or not at all", rows, distinct, want)
	}
	// Each node warns when PostgreSQL's autovacuum is off, and only then.
	var autovacuum string
	if err := d.QueryRow(context.Background(), `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		warned := strings.Contains(n.Output(), `"msg":"PostgreSQL's autovacuum is off`)
		if warned != (autovacuum == "off") {
			t.Fatalf("%s: autovacuum %s, warned %v", n.URL, autovacuum, warned)
		}
	}
	for _, n := range []*node{a, b} {
		if err, _ := n.Stop(t); err != nil {
			t.Fatalf("exit: %v", err)
		}
	}
}

// TestCAMismatchRefused: a node whose CA is not the one recorded at the
// deployment's first start refuses to start, with one line naming
// KANAL_CA_DIR, and the recorded CA keeps working.
func TestCAMismatchRefused(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kanal-data")
	n := startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
	if !strings.Contains(n.Output(), "operator token op1 written to") {
		t.Fatal("first start issued no operator token")
	}
	if err, _ := n.Stop(t); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := filepath.Join(t.TempDir(), "other-ca")
	err := run(ctx, nil, envOf(map[string]string{"KANAL_ADDR": "127.0.0.1:0", "KANAL_DATA_DIR": dataDir, "KANAL_CA_DIR": other}), io.Discard)
	if err == nil {
		t.Fatal("kanald started with a foreign CA")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "KANAL_CA_DIR: ") || !strings.Contains(msg, other) || strings.Contains(msg, "\n") {
		t.Fatalf("error %q should be one line naming KANAL_CA_DIR and %s", msg, other)
	}
	// The original CA still starts, and issues no second operator token.
	n = startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
	if strings.Contains(n.Output(), "operator token op") {
		t.Fatal("operator token issued again")
	}
}
