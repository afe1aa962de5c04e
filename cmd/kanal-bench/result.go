package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one run's figures; -json prints it as is.
type result struct {
	Scenario      string  `json:"scenario"`
	Peer          string  `json:"peer"`
	Engine        string  `json:"engine"`
	Nodes         int     `json:"nodes"`
	Devices       int     `json:"devices"`
	RatePerDevice float64 `json:"rate_per_device"`
	SizeBytes     int     `json:"size_bytes"`
	Started       string  `json:"started"`
	LoadBefore    string  `json:"load_before"`
	LoadAfter     string  `json:"load_after"`

	DurationS     float64      `json:"duration_s"`
	Sent          uint64       `json:"sent"`
	Expected      uint64       `json:"expected"`
	Delivered     uint64       `json:"delivered"`
	EnvelopesPerS float64      `json:"delivered_per_s"`
	SendsPerS     float64      `json:"sends_per_s"`
	Latency       latencyStats `json:"latency_ms"`
	// Split is Latency divided at each envelope's server time (Split);
	// only where the envelopes carry one (kanal, not the peers).
	Split         *splitStats       `json:"latency_split_ms,omitempty"`
	Errors        map[string]uint64 `json:"errors"`
	Server        *serverStats      `json:"server,omitempty"`
	BenchCPUCores float64           `json:"bench_cpu_cores"` // the load generator's own CPU
	// BenchGCPercent and BenchMemoryLimitMiB are the load generator's
	// garbage collector settings (gc.go): -1 is GOGC=off, 0 no limit.
	BenchGCPercent      int   `json:"bench_gc_percent"`
	BenchMemoryLimitMiB int64 `json:"bench_memory_limit_mib,omitempty"`
	// BenchCPUPerEnvelopeUS is the load generator's CPU time per
	// delivered envelope (direct, office, group): the sender's encryption
	// and the receiver's decryption of it, and both sides' frames — what
	// the devices pay.
	BenchCPUPerEnvelopeUS float64 `json:"bench_cpu_per_envelope_us,omitempty"`

	Connections    int     `json:"connections,omitempty"`
	OpenFilesLimit int64   `json:"open_files_limit,omitempty"` // of kanal-bench and its kanald children
	StreamProcs    int     `json:"stream_procs,omitempty"`     // child processes that held the streams
	BinaryStreams  int     `json:"binary_streams,omitempty"`   // broadcast: streams that speak binary frames (kanal.bin.v1)
	Kept           string  `json:"kept,omitempty"`             // broadcast: the -keep directory, and whether this run provisioned it or reused it
	ConnectS       float64 `json:"connect_s,omitempty"`
	BroadcastS     float64 `json:"broadcast_s,omitempty"`
	// BroadcastStored is the follower devices the announcement was
	// stored for (connected or not), BroadcastPostS how long the post
	// took to be answered (every reference committed).
	BroadcastStored int     `json:"broadcast_stored,omitempty"`
	BroadcastPostS  float64 `json:"broadcast_post_s,omitempty"`
	// BroadcastCarried and BroadcastRead are the envelopes the nodes'
	// streams wrote from the post on: taken from the fan-out, or read
	// from the mailbox (kanal_stream_envelopes_total by source).
	BroadcastCarried int64 `json:"broadcast_carried,omitempty"`
	BroadcastRead    int64 `json:"broadcast_read,omitempty"`
	// BroadcastLast is, per node and per stream process, how many
	// followers were reached and when the last of them was.
	BroadcastLast []ShareTail `json:"broadcast_last,omitempty"`
	// Reconnects is the broadcast's streams the server closed and the
	// device opened again (as a client does), by close status; a device
	// reconnected reads the announcement from its mailbox.
	Reconnects map[string]uint64 `json:"reconnects,omitempty"`
	// PingTimeouts is the streams the nodes closed with 4008 during a
	// broadcast or an overload run for a ping not answered, by what the
	// node's socket held then (kanal_stream_ping_timeouts_total):
	// "unread" (the device's bytes waited on the node: the node was
	// slow), "unsent" (the device did not take the node's bytes), "quiet"
	// (neither), "unknown" (not asked); every cause, zeros included.
	// Absent when the nodes do not count them.
	PingTimeouts map[string]int64 `json:"ping_timeouts,omitempty"`
	// WriteTimeouts is the streams the nodes dropped in those runs for a
	// write that did not finish in time (kanal_stream_write_timeouts_total):
	// "unsent" (the device was not taking the node's bytes), "unread" or
	// "quiet" (the send queue was empty: the node's write did not reach
	// the socket), "unknown"; every cause, zeros included.
	WriteTimeouts map[string]int64 `json:"write_timeouts,omitempty"`

	// Surveys is the tokens and ballots scenarios' surveys. In tokens a
	// "send" is a token request, a "delivered" one a token issued and
	// verified, and the latency that of the SDK's Token call; in ballots
	// a "send" is a ballot cast, a "delivered" one accepted with its
	// receipt, and the latency that of the SDK's Cast call.
	Surveys int `json:"surveys,omitempty"`

	Overload     *overloadStats   `json:"overload,omitempty"`
	Provisioning []provisionStats `json:"provisioning,omitempty"`
	Series       []SeriesPoint    `json:"series,omitempty"`
}

type latencyStats struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type serverStats struct {
	RSSMiB     float64 `json:"rss_mib"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	BaseRSSMiB float64 `json:"base_rss_mib,omitempty"` // connections: before connecting
	KiBPerConn float64 `json:"kib_per_connection,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	CPUCores   float64 `json:"cpu_cores"` // CPU seconds per second of the measured phase
	// CPUPerEnvelope is server CPU time per delivered envelope: unlike
	// envelopes per second, it does not depend on how much of the shared
	// machine the server got.
	CPUPerEnvelopeUS float64 `json:"cpu_per_envelope_us,omitempty"`
	// NodeCPUPerEnvelopeUS is each node's share of it, in the order the
	// nodes were started (direct, office and group with several nodes):
	// whether the work spreads over the nodes or one of them does more.
	NodeCPUPerEnvelopeUS []float64 `json:"node_cpu_per_envelope_us,omitempty"`
	// PostgresCPUPerEnvelopeUS is the CPU time of the nodes' PostgreSQL
	// backends per delivered envelope (direct, office and group, when
	// PostgreSQL runs on this machine): the database's own share, less its
	// shared background processes (WAL writer, checkpointer).
	PostgresCPUPerEnvelopeUS float64 `json:"postgres_cpu_per_envelope_us,omitempty"`
	PostgresBackends         int     `json:"postgres_backends,omitempty"`
	// From the nodes' /metrics (direct and group scenarios): the group
	// commits of the measured phase, the writes (sends, acknowledgements)
	// each carried, and the round trips to PostgreSQL per commit and per
	// delivered envelope (all of them, not only the commits').
	GroupCommits          float64 `json:"group_commits,omitempty"`
	WritesPerCommit       float64 `json:"writes_per_commit,omitempty"`
	RoundTripsPerCommit   float64 `json:"round_trips_per_commit,omitempty"`
	RoundTripsPerEnvelope float64 `json:"round_trips_per_envelope,omitempty"`
	// The ack frames the nodes read per delivered envelope (absent from
	// a kanald without kanal_stream_ack_frames_total).
	AckFramesPerEnvelope float64 `json:"ack_frames_per_envelope,omitempty"`
	// The measured phase's group commits whose shared transaction failed
	// and ran again in smaller commits, and of them the conflicts
	// (deadlocks, serialization failures, SQLite busy); nil from a kanald
	// without kanal_group_commit_failures_total.
	CommitFailures  *float64 `json:"group_commit_failures,omitempty"`
	CommitConflicts *float64 `json:"group_commit_conflicts,omitempty"`
	// The group commit's durations and the writes' waits for one in the
	// measured phase, in ms: means, and the upper bound of the bucket of
	// the 99th percentile (kanald's histograms).
	CommitMeanMS float64 `json:"commit_mean_ms,omitempty"`
	CommitP99MS  float64 `json:"commit_p99_ms,omitempty"`
	WaitMeanMS   float64 `json:"commit_wait_mean_ms,omitempty"`
	WaitP99MS    float64 `json:"commit_wait_p99_ms,omitempty"`
}

func writeJSON(w io.Writer, res *result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func writeTable(w io.Writer, res *result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("scenario", "%s (%s, %s)", res.Scenario, res.Peer, res.Engine)
	switch res.Scenario {
	case "connections":
		row("devices", "%d, %d node(s), idle", res.Devices, max(res.Nodes, 1))
	case "broadcast":
		row("devices", "%d followers, %d with a stream, %d node(s), one announcement posted once", res.Devices, res.Connections, max(res.Nodes, 1))
		if res.StreamProcs > 0 {
			row("streams", "held by %d child processes of kanal-bench (their CPU is in kanal-bench's)", res.StreamProcs)
		}
		if res.Kept != "" {
			row("kept", "%s", res.Kept)
		}
	case "overload":
		row("devices", "%d in pairs, %d node(s), %d-byte messages", res.Devices, max(res.Nodes, 1), res.SizeBytes)
	case "tokens":
		row("citizens", "%d at once, each asking for its token of %d anonymous surveys, %d node(s)", res.Devices, res.Surveys, max(res.Nodes, 1))
	case "ballots":
		row("citizens", "%d at once, each casting its ballot in %d anonymous surveys with its token, %d node(s)", res.Devices, res.Surveys, max(res.Nodes, 1))
	default:
		row("devices", "%d, %d node(s), %d-byte messages, rate %s", res.Devices, max(res.Nodes, 1), res.SizeBytes, rateText(res.RatePerDevice))
	}
	for _, p := range res.Provisioning {
		row("provisioning", "%d devices in %.1fs (%.0f/s), %.2f ms of server CPU each", p.Devices, p.TookS, p.PerSecond, p.ServerCPUms)
	}
	switch res.Scenario {
	case "tokens":
		row("requested", "%d token requests (%.0f/s), %d wanted", res.Sent, res.SendsPerS, res.Expected)
		row("issued", "%d tokens issued and verified, %.0f/s over %.1fs", res.Delivered, res.EnvelopesPerS, res.DurationS)
		l := res.Latency
		row("token", "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms (blind, request, unblind, verify)", l.P50, l.P90, l.P99, l.P999, l.Max)
	case "ballots":
		row("cast", "%d ballots cast (%.0f/s), %d wanted", res.Sent, res.SendsPerS, res.Expected)
		row("accepted", "%d ballots accepted with their receipts, %.0f/s over %.1fs; every board checked whole", res.Delivered, res.EnvelopesPerS, res.DurationS)
		l := res.Latency
		row("ballot", "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms (encrypt, connect, request)", l.P50, l.P90, l.P99, l.P999, l.Max)
	case "connections":
		row("connections", "%d open and synced in %.1fs, held %.0fs (open-files limit %d)", res.Connections, res.ConnectS, res.DurationS, res.OpenFilesLimit)
	default:
		row("sent", "%d sends (%.0f/s), %d envelopes", res.Sent, res.SendsPerS, res.Expected)
		what := "envelopes received and decrypted"
		if res.Peer != "kanal" {
			what = "messages received"
		}
		row("delivered", "%d %s, %.0f/s over %.1fs", res.Delivered, what, res.EnvelopesPerS, res.DurationS)
		l := res.Latency
		row("send→deliver", "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms", l.P50, l.P90, l.P99, l.P999, l.Max)
		if sp := res.Split; sp != nil {
			for _, p := range []struct {
				name string
				l    latencyStats
			}{{"  to server time", sp.ToStore}, {"  to read", sp.ToRead}, {"  to decrypted", sp.ToDecrypted}} {
				row(p.name, "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms", p.l.P50, p.l.P90, p.l.P99, p.l.P999, p.l.Max)
			}
			if l := sp.SenderLate; l != nil {
				row("  sender late", "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms (of the time to the server time)", l.P50, l.P90, l.P99, l.P999, l.Max)
			}
		}
	}
	if o := res.Overload; o != nil {
		how := "given with -max-rate"
		if o.MaxMeasured {
			how = "measured in a closed loop"
		}
		row("maximum", "%.0f envelopes/s (%s)", o.MaxRate, how)
		row("open loop", "%.0f envelopes/s offered (%g×), %.0f/s posted, at most %d sends awaiting an answer", o.OfferedRate, o.Factor, o.PostedRate, o.MaxInFlight)
		row("sends", "%d posted: %d sent, %d refused (429/503), %d failed, %d unanswered; last answer after %.1fs", o.Posted, o.Sent, o.Refused, o.Failed, o.Unanswered, o.SendS)
		row("delivered", "%d of the sent, %d in all; lost %d; duplicates %d; refused yet delivered %d; unknown %d; ids sent again after a reconnect %d",
			o.DeliveredOK, o.Delivered, o.Lost, o.Duplicates, o.RefusedButIn, o.Unknown, o.Redelivered)
		if o.CaughtUp {
			row("catch-up", "every device had every sent envelope %.1fs after the last answer", o.CatchUpS)
		} else {
			row("catch-up", "NOT caught up: %d sent envelopes missing", o.Lost)
		}
		for k, v := range o.Reconnects {
			row("reconnects", "%d  %s", v, k)
		}
		row("server memory", "RSS %.0f MiB before, peak %.0f MiB while sending, %.0f MiB at the last answer, peak %.0f MiB catching up, %.0f MiB after",
			o.RSSStartMiB, o.RSSPeakMiB, o.RSSSendMiB, o.RSSCatchMiB, o.RSSEndMiB)
	}
	if res.BroadcastS > 0 {
		row("broadcast", "stored for %d devices, post answered in %.2fs; %d connected devices reached in %.2fs", res.BroadcastStored, res.BroadcastPostS, res.Delivered, res.BroadcastS)
		if res.BroadcastCarried+res.BroadcastRead > 0 {
			row("streams wrote", "%d envelopes from the fan-out, %d read from the mailbox", res.BroadcastCarried, res.BroadcastRead)
		}
		if len(res.BroadcastLast) > 0 {
			row("last reached", "%s", tailRow(res.BroadcastLast))
		}
		for _, k := range slices.Sorted(maps.Keys(res.Reconnects)) {
			row("reconnects", "%d  %s", res.Reconnects[k], k)
		}
	}
	causesRow := func(name string, m map[string]int64, what string) {
		if m == nil {
			return
		}
		var causes []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if n := m[k]; n != 0 {
				causes = append(causes, fmt.Sprintf("%d %s", n, k))
			}
		}
		if causes == nil {
			causes = []string{"0"}
		}
		row(name, "%s (%s, by what the socket held)", strings.Join(causes, ", "), what)
	}
	causesRow("ping timeouts", res.PingTimeouts, "streams the nodes closed with 4008")
	causesRow("write timeouts", res.WriteTimeouts, "streams the nodes dropped")
	if len(res.Errors) == 0 {
		row("errors", "0")
	} else {
		keys := make([]string, 0, len(res.Errors))
		for k := range res.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("errors", "%d  %s", res.Errors[k], k)
		}
	}
	if s := res.Server; s != nil {
		row("server rss", "%.0f MiB (peak %.0f MiB)", s.RSSMiB, s.PeakRSSMiB)
		if s.KiBPerConn > 0 {
			row("per connection", "%.1f KiB (from %.0f MiB before connecting)", s.KiBPerConn, s.BaseRSSMiB)
		}
		row("server cpu", "%.1f s, %.2f cores", s.CPUSeconds, s.CPUCores)
		if s.CPUPerEnvelopeUS > 0 {
			switch res.Scenario {
			case "tokens":
				row("cpu per token", "%.0f µs of server CPU per token issued", s.CPUPerEnvelopeUS)
			case "ballots":
				row("cpu per ballot", "%.0f µs of server CPU per ballot accepted", s.CPUPerEnvelopeUS)
			default:
				row("cpu per envelope", "%.0f µs of server CPU per delivered envelope", s.CPUPerEnvelopeUS)
			}
		}
		if len(s.NodeCPUPerEnvelopeUS) > 0 {
			parts := make([]string, len(s.NodeCPUPerEnvelopeUS))
			for i, us := range s.NodeCPUPerEnvelopeUS {
				parts[i] = fmt.Sprintf("node %d %.0f µs", i+1, us)
			}
			row("cpu per node", "%s (each node's CPU over every delivered envelope)", strings.Join(parts, ", "))
		}
		if s.PostgresCPUPerEnvelopeUS > 0 {
			row("postgres cpu", "%.0f µs per delivered envelope in the nodes' %d PostgreSQL backends (its background processes not counted)", s.PostgresCPUPerEnvelopeUS, s.PostgresBackends)
		}
		if s.GroupCommits > 0 {
			failed := ""
			if s.CommitFailures != nil && s.CommitConflicts != nil {
				failed = fmt.Sprintf("; %.0f failed and ran again in smaller commits, %.0f of them conflicts (deadlocks)", *s.CommitFailures, *s.CommitConflicts)
			}
			row("group commits", "%.0f, %.1f writes each%s", s.GroupCommits, s.WritesPerCommit, failed)
		}
		if s.CommitMeanMS > 0 {
			row("commit time", "mean %.2f ms, p99 ≤ %g ms; a write's wait for its commit: mean %.2f ms, p99 ≤ %g ms", s.CommitMeanMS, s.CommitP99MS, s.WaitMeanMS, s.WaitP99MS)
		}
		if s.AckFramesPerEnvelope > 0 {
			row("ack frames", "%.2f per delivered envelope", s.AckFramesPerEnvelope)
		}
		if s.RoundTripsPerEnvelope > 0 {
			row("round trips", "%.2f to PostgreSQL per delivered envelope, %.1f per group commit", s.RoundTripsPerEnvelope, s.RoundTripsPerCommit)
		}
	}
	if res.BenchCPUCores > 0 {
		row("kanal-bench cpu", "%.2f cores (the load generator itself)", res.BenchCPUCores)
		switch {
		case res.BenchCPUPerEnvelopeUS <= 0:
		case res.Scenario == "tokens":
			row("bench cpu per token", "%.0f µs of kanal-bench CPU per token issued (the citizen's part: blind, request, unblind, verify)", res.BenchCPUPerEnvelopeUS)
		case res.Scenario == "ballots":
			row("bench cpu per ballot", "%.0f µs of kanal-bench CPU per ballot accepted (the voter's part: encrypt, connect, request)", res.BenchCPUPerEnvelopeUS)
		default:
			row("bench cpu per envelope", "%.0f µs of kanal-bench CPU per delivered envelope (both devices' part: encrypt, send, decrypt, ack)", res.BenchCPUPerEnvelopeUS)
		}
	}
	if res.BenchGCPercent != 0 {
		row("kanal-bench gc", "GOGC=%d, memory limit %d MiB (the load generator's; kanald's are Go's defaults unless set)", res.BenchGCPercent, res.BenchMemoryLimitMiB)
	}
	row("load average", "%s before, %s after (2 cores, shared with the load generator)", res.LoadBefore, res.LoadAfter)
	tw.Flush()
}

func rateText(r float64) string {
	if r == 0 {
		return "unlimited (closed loop)"
	}
	return fmt.Sprintf("%g/s per sending device", r)
}

// plotSVG draws p50, p99 and max latency per second of the measured phase,
// on a log scale, as a self-contained SVG.
func plotSVG(res *result) []byte {
	const W, H, left, right, top, bottom = 800, 400, 70, 20, 40, 50
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">kanal-bench %s (%s, %s): send→deliver latency per second</text>`+"\n",
		left, esc(res.Scenario), esc(res.Peer), esc(res.Engine))
	pts := res.Series
	lo, hi := 0.1, 1.0
	tmax := 1.0
	for _, p := range pts {
		hi = math.Max(hi, p.Max)
		tmax = math.Max(tmax, p.T)
	}
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	y := func(v float64) float64 {
		v = math.Max(v, lo)
		return float64(top) + ph*(1-(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))
	}
	x := func(t float64) float64 { return float64(left) + pw*t/tmax }
	for v := lo; v <= hi*1.001; v *= 10 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g ms</text>`+"\n",
			left, W-right, y(v), y(v), left-5, y(v)+4, v)
	}
	for t := 0.0; t <= tmax; t += math.Max(1, math.Ceil(tmax/10)) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%gs</text>`+"\n", x(t), H-bottom+18, t)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	line := func(color, name string, f func(SeriesPoint) float64, row int) {
		var path strings.Builder
		for _, p := range pts {
			if p.Count == 0 {
				continue
			}
			if path.Len() == 0 {
				path.WriteString("M")
			} else {
				path.WriteString(" L")
			}
			fmt.Fprintf(&path, "%.1f %.1f", x(p.T), y(f(p)))
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", path.String(), color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", left+10+row*80, H-12, color, name)
	}
	line("#1f77b4", "p50", func(p SeriesPoint) float64 { return p.P50 }, 0)
	line("#d62728", "p99", func(p SeriesPoint) float64 { return p.P99 }, 1)
	line("#999999", "max", func(p SeriesPoint) float64 { return p.Max }, 2)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.0f envelopes/s, p99 %.1f ms</text>`+"\n", W-right, H-12, res.EnvelopesPerS, res.Latency.P99)
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// guarantees says what each system under test promises for a message.
func guarantees(peer string) string {
	switch peer {
	case "kanal":
		return "stored durably before the send is answered (fsync on SQLite, commit on PostgreSQL); end-to-end encrypted (PQXDH + Double Ratchet); devices hold CA certificates"
	case "nats":
		return "none: no persistence (a message to a disconnected device is lost), no encryption, no device identity"
	case "xmpp":
		return "archived (mod_mam) and stored for offline users in files, without fsync; no end-to-end encryption; password login"
	}
	return ""
}

// summarize prints -json results side by side as a Markdown table
// (-summarize FILE...), for bench/compare.sh and docs/benchmarks.md. With
// -docs first it prints the columns of docs/benchmarks.md's side-by-side
// tables instead: no guarantees (the page has them in a table of their
// own), the load generator's CPU per message added, thousands separated.
func summarize(w io.Writer, args []string) error {
	docs := len(args) > 0 && args[0] == "-docs"
	if docs {
		args = args[1:]
	}
	if len(args) == 0 {
		return fmt.Errorf("-summarize: name the -json result files")
	}
	results := make([]result, len(args))
	overload := true
	for i, f := range args {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &results[i]); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		overload = overload && results[i].Overload != nil
	}
	if overload {
		summarizeOverload(w, results)
		return nil
	}
	if docs {
		fmt.Fprintln(w, "| system | delivered/s | p50 | p90 | p99 | p99.9 | errors | server CPU (cores) | CPU per message | load generator CPU per message | server RSS | load before → after |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	} else {
		fmt.Fprintln(w, "| system | delivered/s | p50 | p90 | p99 | p99.9 | errors | server CPU (cores) | CPU per message | server RSS | load before → after | guarantees |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
	}
	for _, r := range results {
		var errs uint64
		for _, n := range r.Errors {
			errs += n
		}
		cpu, per, rss := "–", "–", "–"
		if r.Server != nil && r.Server.PeakRSSMiB > 0 {
			cpu = fmt.Sprintf("%.2f", r.Server.CPUCores)
			per = thousands(r.Server.CPUPerEnvelopeUS) + " µs"
			if n := r.Server.NodeCPUPerEnvelopeUS; docs && len(n) > 1 {
				parts := make([]string, len(n))
				for i, us := range n {
					parts[i] = thousands(us)
				}
				per += " (" + strings.Join(parts, " + ") + " by node)"
			}
			if docs && r.Server.PostgresCPUPerEnvelopeUS > 0 {
				per += " + " + thousands(r.Server.PostgresCPUPerEnvelopeUS) + " µs in PostgreSQL"
			}
			rss = fmt.Sprintf("%.0f MiB", r.Server.PeakRSSMiB)
		}
		name := r.Peer
		switch r.Peer {
		case "kanal":
			name = "kanal (" + engineText(&r) + ")"
		case "xmpp":
			name = "Prosody (XMPP)"
		case "nats":
			name = "NATS core"
		}
		l := r.Latency
		if docs {
			bench := "–"
			if r.BenchCPUPerEnvelopeUS > 0 {
				bench = thousands(r.BenchCPUPerEnvelopeUS) + " µs"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s → %s |\n",
				name, thousands(r.EnvelopesPerS), msText(l.P50), msText(l.P90), msText(l.P99), msText(l.P999),
				errs, cpu, per, bench, rss, r.LoadBefore, r.LoadAfter)
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %d | %s | %s | %s | %s → %s | %s |\n",
			name, r.EnvelopesPerS, l.P50, l.P90, l.P99, l.P999, errs, cpu, per, rss, r.LoadBefore, r.LoadAfter, guarantees(r.Peer))
	}
	return nil
}

// engineText names a kanal run's engine and, past one, its nodes.
func engineText(r *result) string {
	if r.Nodes > 1 {
		return fmt.Sprintf("%s, %d nodes", r.Engine, r.Nodes)
	}
	return r.Engine
}

// summarizeOverload prints overload results in the columns of
// docs/benchmarks.md's "overload: twice the maximum for 30 s" tables.
func summarizeOverload(w io.Writer, results []result) {
	fmt.Fprintln(w, "| run | maximum (closed loop) | offered | posted | sent (201) | refused (429/503) | failed | unanswered | lost | duplicates | ids sent again | catch-up after the last answer | last answer after | send→deliver p50 / p99 | kanald CPU (cores), per envelope | load generator CPU (cores) | kanald RSS before → peak → after | load average before → after |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- | --- |")
	for _, r := range results {
		o := r.Overload
		started := r.Started
		if t, err := time.Parse(time.RFC3339, r.Started); err == nil {
			started = t.UTC().Format("15:04 UTC")
		}
		catchUp := fmt.Sprintf("%.2f s", o.CatchUpS)
		if !o.CaughtUp {
			catchUp = "**not caught up**"
		}
		cpu := "–"
		if s := r.Server; s != nil {
			cpu = fmt.Sprintf("%.2f, %s µs", s.CPUCores, thousands(s.CPUPerEnvelopeUS))
		}
		fmt.Fprintf(w, "| %s (%s) | %s/s | %s/s (%g×) | %s (%s/s) | %s | %s | %s | %s | **%s** | %s | %s | %s | %.1f s | %s / %s | %s | %.2f | %.0f → %.0f → %.0f MiB | %s → %s |\n",
			engineText(&r), started, thousands(o.MaxRate), thousands(o.OfferedRate), o.Factor, thousands(float64(o.Posted)), thousands(o.PostedRate),
			thousands(float64(o.Sent)), thousands(float64(o.Refused)), thousands(float64(o.Failed)), thousands(float64(o.Unanswered)),
			thousands(float64(o.Lost)), thousands(float64(o.Duplicates)), thousands(float64(o.Redelivered)), catchUp, o.SendS,
			durText(r.Latency.P50), durText(r.Latency.P99), cpu, r.BenchCPUCores, o.RSSStartMiB, o.RSSPeakMiB, o.RSSEndMiB, r.LoadBefore, r.LoadAfter)
	}
}

// durText prints a latency in milliseconds below a second, in seconds
// above.
func durText(ms float64) string {
	if ms < 1000 {
		return msText(ms)
	}
	return fmt.Sprintf("%.1f s", ms/1000)
}

// thousands rounds v and separates its thousands with commas: 13308.4 →
// "13,308".
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// msText prints a latency as the docs do: one decimal below 100 ms,
// whole milliseconds with separators above.
func msText(ms float64) string {
	if ms < 100 {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return thousands(ms) + " ms"
}
