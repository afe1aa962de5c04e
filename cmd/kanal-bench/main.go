// Command kanal-bench is kanal's load generator: it drives a kanald — one
// it starts itself (embedded SQLite, or PostgreSQL and NATS, one node or
// several) or one already running — with simulated devices that speak the
// real protocol through the SDK: sign-up, enrolment, prekeys, PQXDH and
// Double Ratchet encryption, POST /v1/messages and the /v1/stream
// websocket. It reports delivered envelopes per second, send→deliver
// latency percentiles from a log-bucketed histogram, errors, and the
// server's RSS and CPU from /proc, as a table, JSON, and an SVG plot.
//
// For comparison it can drive the same direct workload against raw NATS
// core pub/sub (-peer nats) and an XMPP server such as Prosody (-peer xmpp);
// bench/compare.sh runs all three side by side.
//
// Traffic goes to loopback addresses only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	tuneGC(os.LookupEnv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kanal-bench: %v\n", err)
		os.Exit(1)
	}
}

// options are kanal-bench's flags.
type options struct {
	scenario     string
	peer         string
	transport    string
	frames       string
	devices      int
	rate         float64
	duration     time.Duration
	size         int
	nodes        int
	agents       int
	groupSize    int
	groupSenders int
	surveys      int

	url              string
	mailDir          string
	pid              int
	kanald           string
	databaseURL      string
	natsURL          string
	peerURL          string
	xmppDomain       string
	sources          int
	connected        int
	provisionWorkers int
	streamProcs      int
	keep             string
	jsonOut          bool
	benchProfile     string
	plot             string
	drain            time.Duration
	cpuProfile       string
	cpuProfileFor    time.Duration
	// overload scenario
	maxRate     float64
	factor      float64
	probe       time.Duration
	catchUp     time.Duration
	maxInFlight int

	progress io.Writer // nil: no progress line
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("kanal-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.scenario, "scenario", "direct", "direct, office, connections, broadcast, group, overload, tokens or ballots")
	fs.StringVar(&o.peer, "peer", "kanal", "system under test: kanal, nats (raw NATS core pub/sub) or xmpp (an XMPP server); the peers run the direct scenario")
	fs.StringVar(&o.transport, "transport", "http", "how devices send: http (POST /v1/messages) or ws (send frames on the stream they read)")
	fs.StringVar(&o.frames, "frames", "binary", "the stream's frames and HTTP send bodies: binary (offer kanal.bin.v1 on the stream and post sends as application/vnd.kanal.bin.v1, JSON where the server does not speak them) or json")
	fs.IntVar(&o.devices, "devices", 0, "simulated devices (default: direct 200, office 200 citizens, connections 1000, broadcast 500, group 200, tokens and ballots 500 citizens)")
	fs.Float64Var(&o.rate, "rate", 5, "sends per second per sending device; 0: as fast as each device can (closed loop). a kanald that kanal-bench starts allows 100000 sends/min per device (KANAL_SEND_LIMIT); one started apart allows 600 unless configured otherwise")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of the measured phase")
	fs.IntVar(&o.size, "size", 256, "plaintext bytes per message (before encryption)")
	fs.IntVar(&o.nodes, "nodes", 1, "kanald nodes to start (more than one needs -database-url and -nats-url)")
	fs.IntVar(&o.agents, "agents", 10, "office scenario: agents of the organisation")
	fs.IntVar(&o.streamProcs, "stream-procs", -1, "broadcast scenario: child processes that hold the connected followers' streams (default: none up to 18,000 streams, else one per 18,000: one process may hold 20,000 open files here)")
	fs.StringVar(&o.keep, "keep", "", "broadcast scenario: provision into this directory and keep it (the nodes' data directories, the CA, every device's key and session; on PostgreSQL the run's schema stays in the database and keep.json names it); a later run with the same -keep, -devices and -database-url reuses it instead of provisioning again")
	fs.IntVar(&o.connected, "connected", 0, "broadcast scenario: followers that hold a stream (default: all; each stream is an open file in kanal-bench and in kanald)")
	fs.IntVar(&o.groupSize, "group-size", 50, "group scenario: members per group")
	fs.IntVar(&o.surveys, "surveys", 4, "tokens and ballots scenarios: open anonymous surveys; every citizen asks for its token of each (and casts its ballot in each)")
	fs.IntVar(&o.groupSenders, "group-senders", 5, "group scenario: members of each group who send (each distributes a sender key)")
	fs.StringVar(&o.url, "url", "", "drive a running kanald at this http://127.0.0.x:port instead of starting one (needs -mail-dir)")
	fs.StringVar(&o.mailDir, "mail-dir", "", "with -url: the running kanald's <data-dir>/mail, where sign-up codes are read")
	fs.IntVar(&o.pid, "pid", 0, "with -url or a peer: the server's process id, for RSS and CPU")
	fs.StringVar(&o.kanald, "kanald", "", "kanald binary to start (default: go build ./cmd/kanald, else kanald on PATH)")
	fs.StringVar(&o.databaseURL, "database-url", "", "start kanald on this postgres:// URL (a fresh schema per run) instead of SQLite")
	fs.StringVar(&o.natsURL, "nats-url", "", "start kanald with this external NATS instead of the in-process one")
	fs.StringVar(&o.peerURL, "peer-url", "", "peer address: nats://127.0.0.1:4222 for nats, 127.0.0.1:5222 for xmpp")
	fs.StringVar(&o.xmppDomain, "xmpp-domain", "localhost", "xmpp: the server's domain")
	fs.IntVar(&o.sources, "sources", 0, "loopback source addresses 127.0.0.1..N to spread connections over (default: one per 20,000 devices)")
	fs.IntVar(&o.provisionWorkers, "provision-workers", 8, "concurrent device sign-ups")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.StringVar(&o.plot, "plot", "", "write an SVG of latency over time to this file")
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the first kanald node to this file (needs KANAL_PPROF_ADDR in the environment): broadcast from the post on, direct, office, group, tokens and ballots from the start of the measured phase")
	fs.DurationVar(&o.cpuProfileFor, "cpu-profile-for", 10*time.Second, "with -cpu-profile: how long the profile runs")
	fs.StringVar(&o.benchProfile, "bench-cpu-profile", "", "write a CPU profile of kanal-bench itself (the simulated devices: encryption, decryption, frames) during the measured phase of direct, office, group, tokens and ballots, and from a broadcast's post until it is delivered (the devices of this process; each -stream-procs child writes its own to FILE.child1, FILE.child2, … from its streams' sync to its end), to this file, for go tool pprof (-cpu-profile profiles kanald)")
	fs.DurationVar(&o.drain, "drain", 15*time.Second, "how long to wait for in-flight deliveries after the measured phase")
	fs.Float64Var(&o.maxRate, "max-rate", 0, "overload: the server's maximum in envelopes/s (0: find it with a closed-loop phase of -probe first)")
	fs.Float64Var(&o.factor, "overload", 2, "overload: drive the open loop at this multiple of the maximum")
	fs.DurationVar(&o.probe, "probe", 15*time.Second, "overload: length of the closed-loop phase that finds the maximum")
	fs.DurationVar(&o.catchUp, "catch-up", 5*time.Minute, "overload: how long to wait after the last send for every acknowledged envelope to arrive")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 2000, "overload: sends awaiting their answer at once, across all devices (each holds a connection)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if o.scenario == "overload" && !durationSet {
		o.duration = 30 * time.Second
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch o.scenario {
	case "direct", "office", "connections", "broadcast", "group", "overload", "tokens", "ballots":
	default:
		return nil, fmt.Errorf("-scenario %q: want direct, office, connections, broadcast, group, overload, tokens or ballots", o.scenario)
	}
	if o.frames != "binary" && o.frames != "json" {
		return nil, fmt.Errorf("-frames %q: want binary or json", o.frames)
	}
	if o.transport != "http" && o.transport != "ws" {
		return nil, fmt.Errorf("-transport %q: want http or ws", o.transport)
	}
	switch o.peer {
	case "kanal":
	case "nats", "xmpp":
		if o.scenario != "direct" {
			return nil, fmt.Errorf("-peer %s runs the direct scenario only", o.peer)
		}
	default:
		return nil, fmt.Errorf("-peer %q: want kanal, nats or xmpp", o.peer)
	}
	if o.devices == 0 {
		o.devices = map[string]int{"direct": 200, "office": 200, "connections": 1000, "broadcast": 500, "group": 200, "overload": 200, "tokens": 500, "ballots": 500}[o.scenario]
	}
	if o.connected <= 0 || o.connected > o.devices {
		o.connected = o.devices
	}
	// Bounded in count and time, whatever the flags say.
	switch {
	case o.devices < 2 || o.devices > 200000:
		return nil, errors.New("-devices: 2..200000")
	case o.duration <= 0 || o.duration > time.Hour:
		return nil, errors.New("-duration: up to 1h")
	case o.rate < 0 || o.rate > 10000:
		return nil, errors.New("-rate: 0..10000 per device")
	case o.size < payloadHead || o.size > 32<<10:
		return nil, fmt.Errorf("-size: %d..%d bytes", payloadHead, 32<<10)
	case o.nodes < 1 || o.nodes > 8:
		return nil, errors.New("-nodes: 1..8")
	case o.agents < 1 || o.agents > 100:
		return nil, errors.New("-agents: 1..100")
	case o.groupSize < 2 || o.groupSize > 100:
		return nil, errors.New("-group-size: 2..100 (kanal's MaxGroupMembers)")
	case o.groupSenders < 1 || o.groupSenders > o.groupSize || o.groupSenders > 25:
		return nil, errors.New("-group-senders: 1..25 and at most -group-size")
	case o.surveys < 1 || o.surveys > 100:
		return nil, errors.New("-surveys: 1..100")
	case o.scenario == "group" && o.devices < o.groupSize:
		return nil, errors.New("-devices: at least -group-size for the group scenario")
	case o.sources < 0 || o.sources > 250:
		return nil, errors.New("-sources: 0..250")
	case o.maxRate < 0 || o.maxRate > 1e6:
		return nil, errors.New("-max-rate: 0..1000000 envelopes/s")
	case o.factor <= 0 || o.factor > 100:
		return nil, errors.New("-overload: above 0, at most 100")
	case o.probe <= 0 || o.probe > 10*time.Minute:
		return nil, errors.New("-probe: up to 10m")
	case o.catchUp <= 0 || o.catchUp > time.Hour:
		return nil, errors.New("-catch-up: up to 1h")
	case o.maxInFlight < 1 || o.maxInFlight > 10000:
		return nil, errors.New("-max-in-flight: 1..10000")
	case o.scenario == "overload" && o.size < overloadHead:
		return nil, fmt.Errorf("-size: at least %d bytes for the overload scenario", overloadHead)
	}
	if (o.scenario == "direct" || o.scenario == "overload") && o.devices%2 == 1 {
		o.devices++ // pairs
	}
	if o.streamProcs < 0 {
		o.streamProcs = 0
		if o.scenario == "broadcast" && o.connected > streamsPerProc {
			o.streamProcs = (o.connected + streamsPerProc - 1) / streamsPerProc
		}
	}
	if o.streamProcs > 64 {
		return nil, errors.New("-stream-procs: 0..64")
	}
	if o.sources == 0 {
		o.sources = 1 + o.devices/20000
	}
	for _, u := range []string{o.url, o.peerURL} {
		if u != "" && !loopback(u) {
			return nil, fmt.Errorf("%s: kanal-bench sends traffic to loopback addresses only", u)
		}
	}
	if o.nodes > 1 && (o.databaseURL == "" || o.natsURL == "") {
		return nil, errors.New("-nodes > 1 needs -database-url and -nats-url (nodes share the database and the bus)")
	}
	if o.keep != "" && (o.scenario != "broadcast" || o.url != "") {
		return nil, errors.New("-keep: the broadcast scenario on nodes started by kanal-bench")
	}
	if o.url != "" && o.mailDir == "" && o.peer == "kanal" {
		return nil, errors.New("-url needs -mail-dir (the running kanald's <data-dir>/mail, for sign-up codes)")
	}
	return o, nil
}

// loopback reports whether an address (URL or host:port) names 127.0.0.0/8
// or localhost.
func loopback(addr string) bool {
	host := addr
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		host = u.Hostname()
	} else if i := strings.LastIndexByte(addr, ':'); i > 0 {
		host = addr[:i]
	}
	return host == "localhost" || strings.HasPrefix(host, "127.")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "-summarize" {
		return summarize(stdout, args[1:])
	}
	if len(args) > 0 && args[0] == streamWorkerArg {
		raiseFileLimit(stderr)
		return streamWorker(ctx, os.Stdin, stdout)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			o.progress = stderr
		}
	}
	raiseFileLimit(stderr)
	res, err := bench(ctx, o, stderr)
	if err != nil {
		return err
	}
	if o.plot != "" {
		if err := os.WriteFile(o.plot, plotSVG(res), 0o644); err != nil {
			return fmt.Errorf("-plot: %w", err)
		}
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	writeTable(stdout, res)
	return nil
}

// raiseFileLimit lifts the soft limit on open files to the hard one (and
// the hard one too when allowed): every simulated device holds a socket,
// and a kanald child inherits the limit for its side of each.
func raiseFileLimit(stderr io.Writer) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	want := syscall.Rlimit{Cur: max(l.Max, 1<<20), Max: max(l.Max, 1<<20)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			fmt.Fprintf(stderr, "kanal-bench: raise the open-files limit: %v\n", err)
		}
	}
}
