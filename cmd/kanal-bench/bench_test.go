package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

var kanaldBin string

func TestMain(m *testing.M) {
	// The broadcast scenario's -stream-procs starts this test binary again
	// as a stream worker.
	if len(os.Args) > 1 && os.Args[1] == streamWorkerArg {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	kanaldtest.Main(m, &kanaldBin)
}

func runJSON(t *testing.T, args ...string) *result {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), append([]string{"-json", "-kanald", kanaldBin}, args...), &out, &errb); err != nil {
		t.Fatalf("kanal-bench %v: %v\n%s", args, err, errb.String())
	}
	var res result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("-json output: %v\n%s", err, out.String())
	}
	return &res
}

// Each scenario, tiny, against a kanald the bench starts itself: every
// measured envelope is delivered over the stream and decrypted by the
// SDK, without errors, and the server's figures come from its process.
func TestScenarios(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"direct", []string{"-scenario", "direct", "-devices", "4", "-rate", "20", "-duration", "1s"}},
		{"direct-ws", []string{"-scenario", "direct", "-transport", "ws", "-devices", "4", "-rate", "20", "-duration", "1s"}},
		{"office", []string{"-scenario", "office", "-devices", "3", "-agents", "2", "-rate", "10", "-duration", "1s"}},
		{"broadcast", []string{"-scenario", "broadcast", "-devices", "6", "-connected", "4"}},
		// The streams held by two child processes, as for more streams than
		// one process may open.
		{"broadcast-procs", []string{"-scenario", "broadcast", "-devices", "7", "-connected", "5", "-stream-procs", "2"}},
		{"group", []string{"-scenario", "group", "-devices", "6", "-group-size", "3", "-group-senders", "2", "-rate", "10", "-duration", "1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runJSON(t, tc.args...)
			if res.Sent == 0 || res.Delivered != res.Expected || res.Expected == 0 {
				t.Fatalf("sent %d, %d envelopes expected, %d delivered", res.Sent, res.Expected, res.Delivered)
			}
			if len(res.Errors) != 0 {
				t.Fatalf("errors: %v", res.Errors)
			}
			if res.Server == nil || res.Server.RSSMiB <= 0 || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 {
				t.Fatalf("figures: %+v %+v", res.Server, res.Latency)
			}
			// Outside broadcasts, the latency divided at the envelopes'
			// server time and their frames' reads: every part measured,
			// none longer than the whole but for the server time's
			// truncated millisecond.
			if sp := res.Split; !strings.HasPrefix(tc.name, "broadcast") &&
				(sp == nil || sp.ToRead.Max <= 0 || sp.ToDecrypted.Max <= 0 || sp.ToStore.Max > res.Latency.Max+1 ||
					sp.ToRead.Max > res.Latency.Max+1 || sp.ToDecrypted.Max > res.Latency.Max) {
				t.Fatalf("%s: latency %+v divided as %+v", tc.name, res.Latency, sp)
			}
			// These run open loops: each send's lag behind its schedule
			// is counted, and is part of the time to the server time.
			if sp := res.Split; sp != nil && (sp.SenderLate == nil || sp.SenderLate.Max > sp.ToStore.Max+1) {
				t.Fatalf("%s: sender lag %+v, time to the server time %+v", tc.name, sp.SenderLate, sp.ToStore)
			}
			if tc.name == "broadcast" && (res.BroadcastStored != 6 || res.Delivered != 4) {
				t.Fatalf("broadcast: stored for %d devices, %d delivered; want 6 and the 4 connected", res.BroadcastStored, res.Delivered)
			}
			if tc.name == "broadcast-procs" && (res.BroadcastStored != 7 || res.Delivered != 5 || res.Connections != 5 || res.StreamProcs != 2) {
				t.Fatalf("broadcast in child processes: stored for %d devices, %d delivered over %d streams in %d processes; want 7, 5, 5, 2",
					res.BroadcastStored, res.Delivered, res.Connections, res.StreamProcs)
			}
			// The children's streams speak binary frames, as the parent's do.
			if strings.HasPrefix(tc.name, "broadcast") && res.BinaryStreams != res.Connections {
				t.Fatalf("%s: %d of %d streams speak binary frames", tc.name, res.BinaryStreams, res.Connections)
			}
			if strings.HasPrefix(tc.name, "broadcast") {
				checkTails(t, tc.name, res)
			}
			if strings.HasPrefix(tc.name, "broadcast") && res.BroadcastCarried+res.BroadcastRead != int64(res.Delivered) {
				t.Fatalf("%s: the streams wrote %d from the fan-out and %d from mailboxes, %d delivered", tc.name, res.BroadcastCarried, res.BroadcastRead, res.Delivered)
			}
			if (tc.name == "office" || tc.name == "group") && res.Expected != res.Sent*2 {
				t.Fatalf("%s: %d envelopes for %d sends to 2 devices each", tc.name, res.Expected, res.Sent)
			}
		})
	}
	// overload: the maximum measured by a short closed loop, then twice
	// that in an open loop; every send answered "sent" is delivered once,
	// and the figures account for every send.
	t.Run("overload", func(t *testing.T) {
		res := runJSON(t, "-scenario", "overload", "-devices", "4", "-probe", "1500ms", "-duration", "1s", "-catch-up", "30s")
		o := res.Overload
		if o == nil || !o.MaxMeasured || o.MaxRate <= 0 || o.OfferedRate != 2*o.MaxRate {
			t.Fatalf("overload figures: %+v", o)
		}
		if o.Sent == 0 || o.Lost != 0 || !o.CaughtUp || o.DeliveredOK != o.Sent || o.Duplicates != 0 || o.Unknown != 0 || o.RefusedButIn != 0 {
			t.Fatalf("overload: %+v", o)
		}
		if o.Posted != o.Sent+o.Refused+o.Failed+o.Unanswered || o.RSSPeakMiB <= 0 || o.RSSEndMiB <= 0 {
			t.Fatalf("overload accounting: %+v", o)
		}
		if len(res.Errors) != 0 {
			t.Fatalf("errors: %v", res.Errors)
		}
		// -summarize prints overload results in the overload table's
		// columns, lost in bold.
		f := filepath.Join(t.TempDir(), "overload.json")
		b, _ := json.Marshal(res)
		os.WriteFile(f, b, 0o644)
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"-summarize", f}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 || !strings.Contains(lines[0], "| lost |") || !strings.HasPrefix(lines[2], "| SQLite (") ||
			!strings.Contains(lines[2], "| **0** |") || strings.Count(lines[0], "|") != strings.Count(lines[2], "|") {
			t.Fatalf("overload summary:\n%s", out.String())
		}
	})
	// tokens: every citizen gets its one token of every survey, verified
	// by the SDK, and each survey counts exactly the tokens its citizens
	// received (a mismatch is reported as an error).
	t.Run("tokens", func(t *testing.T) {
		res := runJSON(t, "-scenario", "tokens", "-devices", "5", "-surveys", "3", "-duration", "1m")
		if res.Surveys != 3 || res.Expected != 15 || res.Sent != 15 || res.Delivered != 15 || len(res.Errors) != 0 {
			t.Fatalf("tokens: %d surveys, %d wanted, %d requested, %d issued, errors %v", res.Surveys, res.Expected, res.Sent, res.Delivered, res.Errors)
		}
		if res.Server == nil || res.Server.CPUPerEnvelopeUS <= 0 || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 {
			t.Fatalf("figures: %+v %+v", res.Server, res.Latency)
		}
	})
	// ballots: every citizen's ballot in every survey is accepted with a
	// receipt, and every board passes the recount's check with each
	// receipt on it (anything else is reported as an error).
	// kanald's CPU comes from /proc in clock ticks (10 ms), so the phase
	// must cost it more than a tick on any machine for the figure to be
	// there: 100 ballots are 15 ms or more at the quickest hosts' cost
	// (15 took 4–8 ms, and read as 0 when no tick fell in them).
	t.Run("ballots", func(t *testing.T) {
		res := runJSON(t, "-scenario", "ballots", "-devices", "10", "-surveys", "10", "-duration", "1m")
		if res.Surveys != 10 || res.Expected != 100 || res.Sent != 100 || res.Delivered != 100 || len(res.Errors) != 0 {
			t.Fatalf("ballots: %d surveys, %d wanted, %d cast, %d accepted, errors %v", res.Surveys, res.Expected, res.Sent, res.Delivered, res.Errors)
		}
		if res.Server == nil || res.Server.CPUPerEnvelopeUS <= 0 || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 {
			t.Fatalf("figures: %+v %+v", res.Server, res.Latency)
		}
	})
	t.Run("connections", func(t *testing.T) {
		res := runJSON(t, "-scenario", "connections", "-devices", "5", "-duration", "100ms")
		if res.Connections != 5 || res.Server == nil || len(res.Errors) != 0 {
			t.Fatalf("connections: %+v %v", res, res.Errors)
		}
	})
}

// checkTails: a broadcast's deliveries, counted by node and by the
// process that held the stream, add up to all of them in each count,
// and the last of them is the run's figure.
func checkTails(t *testing.T, name string, res *result) {
	t.Helper()
	var nodes, procs uint64
	var last float64
	var held []string
	for _, s := range res.BroadcastLast {
		if strings.HasPrefix(s.Of, "node") {
			nodes += uint64(s.Delivered)
			last = max(last, s.LastS)
		} else {
			procs += uint64(s.Delivered)
			held = append(held, fmt.Sprintf("%s:%d", s.Of, s.Delivered))
		}
	}
	want := "kanal-bench:4"
	if name == "broadcast-procs" {
		want = "proc1:3 proc2:2" // 5 streams in 2 processes: 3 and 2
	}
	if nodes != res.Delivered || procs != res.Delivered || strings.Join(held, " ") != want || math.Abs(last-res.BroadcastS) > 1e-6 {
		t.Fatalf("%s: last reached %+v; want %d by node and by process (%s), the last at %.6fs", name, res.BroadcastLast, res.Delivered, want, res.BroadcastS)
	}
}

// -keep: the first run provisions the broadcast into the directory and
// keeps it; a second run reuses it — no provisioning, the same followers,
// every connected one reached (one connected now was offline before: its
// first announcement waits in its mailbox and arrives with its backlog,
// before the measured post); kept sessions past their age are renewed; a
// run with another follower count is refused.
func TestBroadcastKeep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kept")
	first := runJSON(t, "-scenario", "broadcast", "-devices", "5", "-connected", "3", "-keep", dir)
	if len(first.Provisioning) == 0 || !strings.Contains(first.Kept, "provisioned") || first.BroadcastStored != 5 || first.Delivered != 3 || len(first.Errors) != 0 {
		t.Fatalf("first run: kept %q, provisioning %v, stored %d, delivered %d, errors %v", first.Kept, first.Provisioning, first.BroadcastStored, first.Delivered, first.Errors)
	}
	k, err := loadKept(dir)
	if err != nil || k == nil || len(k.Followers) != 5 {
		t.Fatalf("kept: %v %+v", err, k)
	}
	// Sessions older than keepRelogin are renewed before the streams open.
	for i := range k.Followers {
		k.Followers[i].Login = time.Now().Add(-2 * keepRelogin)
	}
	r := &runner{o: &options{keep: dir}}
	if err := r.writeKept(k); err != nil {
		t.Fatal(err)
	}
	second := runJSON(t, "-scenario", "broadcast", "-devices", "5", "-connected", "4", "-keep", dir)
	if len(second.Provisioning) != 0 || !strings.Contains(second.Kept, "reused") || second.BroadcastStored != 5 || second.Delivered != 4 || len(second.Errors) != 0 {
		t.Fatalf("second run: kept %q, provisioning %v, stored %d, delivered %d, errors %v", second.Kept, second.Provisioning, second.BroadcastStored, second.Delivered, second.Errors)
	}
	k2, err := loadKept(dir)
	if err != nil || k2.Followers[0].Token == k.Followers[0].Token || k2.Followers[4].Token != k.Followers[4].Token {
		t.Fatalf("sessions: the connected followers' renewed, the offline one's kept: %v", err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-kanald", kanaldBin, "-scenario", "broadcast", "-devices", "6", "-keep", dir}, &out, &errb); err == nil || !strings.Contains(err.Error(), "-devices 5") {
		t.Fatalf("another follower count: %v", err)
	}
}

// -keep on PostgreSQL + NATS with two nodes: the first run provisions and
// leaves its schema in the database (keep.json names it); the second run
// starts both nodes on it and on their kept data directories, and reaches
// every follower without provisioning; a run without -database-url, or
// naming another database, is refused and changes nothing.
func TestBroadcastKeepPostgres(t *testing.T) {
	pg := os.Getenv("KANAL_TEST_POSTGRES")
	if pg == "" {
		t.Skip("KANAL_TEST_POSTGRES not set")
	}
	nats := kanaldtest.NATSURL(t)
	dir := filepath.Join(t.TempDir(), "kept")
	args := []string{"-scenario", "broadcast", "-devices", "4", "-nodes", "2", "-database-url", pg, "-nats-url", nats, "-keep", dir}
	first := runJSON(t, args...)
	if len(first.Provisioning) == 0 || first.BroadcastStored != 4 || first.Delivered != 4 || len(first.Errors) != 0 {
		t.Fatalf("first run: provisioning %v, stored %d, delivered %d, errors %v", first.Provisioning, first.BroadcastStored, first.Delivered, first.Errors)
	}
	k, err := loadKept(dir)
	if err != nil || k == nil || k.Schema == "" || k.Database != databaseName(pg) {
		t.Fatalf("kept: %v %+v", err, k)
	}
	d, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	// The kept schema is the test's to drop, before its connection
	// closes (a deferred Close would run before any cleanup).
	t.Cleanup(func() {
		if _, err := d.Exec("DROP SCHEMA " + k.Schema + " CASCADE"); err != nil {
			t.Errorf("drop the kept schema: %v", err)
		}
		d.Close()
	})
	var followers int
	if err := d.QueryRow("SELECT count(*) FROM " + k.Schema + ".identity_devices").Scan(&followers); err != nil || followers < 5 {
		t.Fatalf("the kept schema after the first run: %d devices, %v", followers, err)
	}
	for i := range 2 {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("node%d", i))); err != nil {
			t.Fatalf("node %d's data directory: %v", i, err)
		}
	}
	second := runJSON(t, args...)
	if len(second.Provisioning) != 0 || !strings.Contains(second.Kept, "reused") || second.BroadcastStored != 4 || second.Delivered != 4 || len(second.Errors) != 0 {
		t.Fatalf("second run: kept %q, provisioning %v, stored %d, delivered %d, errors %v", second.Kept, second.Provisioning, second.BroadcastStored, second.Delivered, second.Errors)
	}
	// The second run vacuumed the kept schema before it started: runs on
	// a kept deployment do not meet the dead rows of the runs before them.
	var unvacuumed int
	if err := d.QueryRow(`SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = $1 AND relname LIKE 'mailbox%' AND last_vacuum IS NULL`,
		k.Schema).Scan(&unvacuumed); err != nil || unvacuumed != 0 {
		t.Fatalf("mailbox tables of the kept schema not vacuumed: %d, %v", unvacuumed, err)
	}
	// Each node's share of the CPU per delivered follower, as in the
	// measured phase of the other scenarios.
	if s := second.Server; s == nil || len(s.NodeCPUPerEnvelopeUS) != 2 {
		t.Fatalf("server figures: %+v", s)
	}
	// The followers reached, by node: both nodes held some.
	byNode := map[string]int{}
	for _, s := range second.BroadcastLast {
		if strings.HasPrefix(s.Of, "node") {
			byNode[s.Of] = s.Delivered
		}
	}
	if byNode["node0"] == 0 || byNode["node1"] == 0 || byNode["node0"]+byNode["node1"] != 4 {
		t.Fatalf("followers reached by node: %+v", second.BroadcastLast)
	}
	for _, bad := range [][]string{
		{"-scenario", "broadcast", "-devices", "4", "-keep", dir},
		{"-scenario", "broadcast", "-devices", "4", "-nodes", "2", "-database-url", strings.Replace(pg, "/"+k.Database, "/other", 1), "-nats-url", nats, "-keep", dir},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), append([]string{"-kanald", kanaldBin}, bad...), &out, &errb); err == nil || !strings.Contains(err.Error(), "-keep") {
			t.Fatalf("%v: %v", bad, err)
		}
	}
	k2, err := loadKept(dir)
	if err != nil || k2.Schema != k.Schema {
		t.Fatalf("kept after the refused runs: %v %+v", err, k2)
	}
}

// The table, the plot and the NATS peer.
func TestTablePlotAndNATS(t *testing.T) {
	plot := filepath.Join(t.TempDir(), "latency.svg")
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"-kanald", kanaldBin, "-devices", "2", "-rate", "20", "-duration", "1s", "-plot", plot}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	for _, want := range []string{"delivered", "send→deliver", "to server time", "to read", "to decrypted", "p99.9", "server rss", "server cpu", "errors"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
	svg, err := os.ReadFile(plot)
	if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("<path d=\"M")) {
		t.Fatalf("plot: %v\n%s", err, svg)
	}

	natsURL := kanaldtest.NATSURL(t)
	res := runJSON(t, "-peer", "nats", "-peer-url", natsURL, "-devices", "4", "-rate", "20", "-duration", "1s")
	if res.Delivered == 0 || res.Delivered != res.Expected || len(res.Errors) != 0 || res.Split != nil {
		t.Fatalf("nats: %+v", res)
	}

	// -summarize puts -json results side by side.
	f := filepath.Join(t.TempDir(), "nats.json")
	b, _ := json.Marshal(res)
	os.WriteFile(f, b, 0o644)
	out.Reset()
	if err := run(context.Background(), []string{"-summarize", f}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], "| NATS core | ") {
		t.Fatalf("summary:\n%s", out.String())
	}
	// -summarize -docs: docs/benchmarks.md's columns, as many in each row
	// as in the header, and no guarantees.
	out.Reset()
	if err := run(context.Background(), []string{"-summarize", "-docs", f}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[2], "| NATS core | ") || strings.Contains(out.String(), "guarantees") ||
		!strings.Contains(lines[0], "load generator CPU per message") || strings.Count(lines[0], "|") != strings.Count(lines[2], "|") {
		t.Fatalf("summary -docs:\n%s", out.String())
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 13308.4: "13,308", 1234567: "1,234,567", -2500: "-2,500"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{6.14: "6.1 ms", 99.94: "99.9 ms", 2637.6: "2,638 ms"} {
		if got := msText(v); got != want {
			t.Errorf("msText(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "nope"},
		{"-devices", "1"},
		{"-devices", "1000000"},
		{"-duration", "2h"},
		{"-url", "http://10.0.0.1:8080", "-mail-dir", "/tmp"},
		{"-peer", "nats", "-peer-url", "nats://192.0.2.1:4222"},
		{"-peer", "nats", "-scenario", "office"},
		{"-url", "http://127.0.0.1:8080"},
		{"-nodes", "2"},
		{"-scenario", "overload", "-overload", "0"},
		{"-scenario", "overload", "-size", "10"},
		{"-scenario", "overload", "-max-in-flight", "0"},
		{"-scenario", "overload", "-catch-up", "2h"},
		{"-scenario", "broadcast", "-stream-procs", "65"},
		{"-scenario", "tokens", "-surveys", "0"},
		{"-scenario", "direct", "-keep", "/tmp/x"},
		{"-scenario", "broadcast", "-keep", "/tmp/x", "-url", "http://127.0.0.1:8080", "-mail-dir", "/tmp"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// Two nodes on PostgreSQL + NATS: every envelope crosses from one node to
// the other (devices alternate between the nodes, pairs are neighbours),
// and the server's CPU per envelope is reported per node as well, the
// nodes' shares adding up to the whole.
func TestTwoNodes(t *testing.T) {
	pg := os.Getenv("KANAL_TEST_POSTGRES")
	if pg == "" {
		t.Skip("KANAL_TEST_POSTGRES not set")
	}
	res := runJSON(t, "-scenario", "direct", "-transport", "ws", "-devices", "4", "-rate", "20", "-duration", "1s",
		"-nodes", "2", "-database-url", pg, "-nats-url", kanaldtest.NATSURL(t))
	if res.Nodes != 2 || res.Sent == 0 || res.Delivered != res.Expected || len(res.Errors) != 0 {
		t.Fatalf("%d nodes: sent %d, %d expected, %d delivered, errors %v", res.Nodes, res.Sent, res.Expected, res.Delivered, res.Errors)
	}
	s := res.Server
	if s == nil || len(s.NodeCPUPerEnvelopeUS) != 2 {
		t.Fatalf("server figures: %+v", s)
	}
	// Two nodes' group commits lock the mailbox heads in one order: no
	// deadlock between them, none rolled back and run again.
	if s.CommitConflicts == nil || s.CommitFailures == nil {
		t.Fatal("the group commit's failures not read from both nodes' /metrics")
	}
	if *s.CommitConflicts != 0 || *s.CommitFailures != 0 {
		t.Fatalf("%v group commits failed, %v of them conflicts; want none", *s.CommitFailures, *s.CommitConflicts)
	}
	var sum float64
	for i, us := range s.NodeCPUPerEnvelopeUS {
		if us <= 0 {
			t.Fatalf("node %d: %v µs per envelope", i+1, us)
		}
		sum += us
	}
	// The shares and the whole come from the same samples of /proc.
	if d := sum - s.CPUPerEnvelopeUS; d > 0.01 || d < -0.01 {
		t.Fatalf("nodes' shares %v add up to %.1f µs, the whole is %.1f", s.NodeCPUPerEnvelopeUS, sum, s.CPUPerEnvelopeUS)
	}
	// With PostgreSQL on this machine, the nodes' backends are found by
	// their application_name and their CPU read from /proc.
	d, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var pid int
	if err := d.QueryRow("SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.HasPrefix(string(comm), "postgres") {
		if s.PostgresBackends < 2 || s.PostgresCPUPerEnvelopeUS < 0 {
			t.Fatalf("PostgreSQL on this machine: %d backends of the two nodes found, %.1f µs per envelope", s.PostgresBackends, s.PostgresCPUPerEnvelopeUS)
		}
	}
}
