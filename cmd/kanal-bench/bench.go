package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// runner is one benchmark run.
type runner struct {
	o     *options
	cl    *cluster
	net   *netPool
	mail  *mailCodes
	runID string
	res   *result
	errs  *errCounter
	pids  []int

	rec           atomic.Pointer[Recorder] // set for the measured phase
	split         atomic.Pointer[Split]    // set with rec: the measured deliveries' latency, divided
	sent          atomic.Uint64            // measured sends accepted
	expected      atomic.Uint64            // envelopes those sends carry
	delivered     atomic.Uint64            // measured envelopes decrypted
	hellos        atomic.Uint64
	distributions atomic.Uint64          // sender keys received (group)
	lastDeliv     atomic.Int64           // unix nanos
	posted        atomic.Int64           // broadcast: when the announcement was posted (unix nanos)
	tails         *tails                 // broadcast: deliveries by node and stream process
	verified      verifiedAnnouncements  // broadcast: announcement JWS → signing device, checked once
	caPEM         atomic.Pointer[string] // the deployment CA, from the first enrolment
	kept          *kept                  // broadcast: what a -keep directory holds from an earlier run

	// overload scenario
	track       *overloadTracker
	reconnects  *errCounter   // streams the server closed, by close status
	redelivered atomic.Uint64 // envelope ids a device was sent again

	maxRSS atomic.Int64
	stop   chan struct{}
	stderr io.Writer

	// publish replaces the kanal send in the measured phase for a peer.
	publish func(ctx context.Context, s sender, pt []byte) error
}

// errCounter counts errors by kind.
type errCounter struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (e *errCounter) add(kind string) { e.addN(kind, 1) }

func (e *errCounter) addN(kind string, n uint64) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]uint64{}
	}
	e.m[kind] += n
	e.mu.Unlock()
}

func (e *errCounter) snapshot() map[string]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

func (e *errCounter) total() (n uint64) {
	for _, v := range e.snapshot() {
		n += v
	}
	return n
}

func bench(ctx context.Context, o *options, stderr io.Writer) (*result, error) {
	// The nodes, the stream worker processes and the runner all report
	// here, each from goroutines of its own.
	stderr = &lockedWriter{w: stderr}
	var b [4]byte
	rand.Read(b[:])
	var err error
	res := &result{Scenario: o.scenario, Peer: o.peer, Devices: o.devices, RatePerDevice: o.rate, SizeBytes: o.size,
		Nodes: o.nodes, LoadBefore: loadAvg(), Started: time.Now().UTC().Format(time.RFC3339)}
	res.BenchGCPercent, res.BenchMemoryLimitMiB = gcSettings()
	r := &runner{o: o, runID: hex.EncodeToString(b[:]), res: res, errs: &errCounter{}, reconnects: &errCounter{}, net: newNetPool(o.sources),
		stop: make(chan struct{}), stderr: stderr}
	switch o.peer {
	case "nats":
		res.Engine = "NATS core (no persistence, no encryption)"
		r.pids = pidList(o.pid)
		go r.sampleRSS()
		defer close(r.stop)
		return res, r.natsDirect(ctx)
	case "xmpp":
		res.Engine = "XMPP (" + o.xmppDomain + ")"
		r.pids = pidList(o.pid)
		go r.sampleRSS()
		defer close(r.stop)
		return res, r.xmppDirect(ctx)
	}
	res.Engine = "SQLite"
	if strings.HasPrefix(o.databaseURL, "postgres") {
		res.Engine = "PostgreSQL"
	}
	if o.natsURL != "" {
		res.Engine += " + NATS"
	}
	if o.url != "" {
		r.cl = &cluster{urls: []string{o.url}, mailDirs: []string{o.mailDir}, opToken: os.Getenv("KANAL_OPERATOR_TOKEN")}
		res.Engine = "running kanald at " + o.url
		r.pids = pidList(o.pid)
	} else {
		fmt.Fprintf(stderr, "kanal-bench: starting %d kanald node(s) (%s)\n", o.nodes, res.Engine)
		// The send limit (600 a minute per device by default) is a guard
		// against floods, not what is measured: a closed-loop device sends
		// far more than that, and one council device sends the whole
		// broadcast. The nodes are started with kanald's highest limit, as
		// an operator would configure a council's announcements.
		const limit = 100000
		if o.keep != "" {
			if r.kept, err = loadKept(o.keep); err != nil {
				return nil, err
			}
			data, _ := keepDirs(o.keep, 0)
			if _, serr := os.Stat(data); r.kept == nil && serr == nil {
				return nil, fmt.Errorf("-keep %s holds a data directory but no %s (an earlier run stopped while provisioning): remove the directory", o.keep, keepFile)
			}
			if r.kept != nil {
				if err := checkKeptEngine(r.kept, o.keep, o.databaseURL); err != nil {
					return nil, err
				}
			}
			if err := os.MkdirAll(o.keep, 0o700); err != nil {
				return nil, err
			}
		}
		var keptSchema string
		if r.kept != nil {
			keptSchema = r.kept.Schema
		}
		cl, err := startCluster(ctx, startOptions{nodes: o.nodes, databaseURL: o.databaseURL, natsURL: o.natsURL,
			bin: o.kanald, sendLimit: limit, keep: o.keep, keptSchema: keptSchema, stderr: stderr})
		if err != nil {
			return nil, err
		}
		defer cl.stop()
		r.cl = cl
		for _, n := range cl.nodes {
			r.pids = append(r.pids, n.Pid())
		}
	}
	r.mail = newMailCodes(r.cl.mailDirs)
	go r.sampleRSS()
	defer close(r.stop)
	switch o.scenario {
	case "direct":
		err = r.direct(ctx)
	case "office":
		err = r.office(ctx)
	case "connections":
		err = r.connections(ctx)
	case "broadcast":
		err = r.broadcast(ctx)
	case "group":
		err = r.group(ctx)
	case "overload":
		err = r.overload(ctx)
	case "tokens":
		err = r.tokens(ctx)
	case "ballots":
		err = r.ballots(ctx)
	}
	if err != nil {
		// What the nodes logged (warnings and errors) says why.
		for i, n := range r.cl.nodes {
			out := n.output()
			if len(out) > 4000 {
				out = "…" + out[len(out)-4000:]
			}
			if out != "" {
				fmt.Fprintf(stderr, "kanal-bench: node %d logged:\n%s", i, out)
			}
		}
	}
	return res, err
}

func pidList(pid int) []int {
	if pid > 0 {
		return []int{pid}
	}
	return nil
}

// sampleRSS keeps the servers' peak resident memory.
func (r *runner) sampleRSS() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		var sum int64
		for _, p := range r.pids {
			if s, err := sampleProc(p); err == nil {
				sum += s.rss
			}
		}
		if sum > r.maxRSS.Load() {
			r.maxRSS.Store(sum)
		}
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

func (r *runner) serverSample() (cpu time.Duration, rss int64) {
	for _, p := range r.pids {
		if s, err := sampleProc(p); err == nil {
			cpu += s.cpu
			rss += s.rss
		}
	}
	return cpu, rss
}

// nodeCPU is each kanald node's CPU time so far, in the order of r.pids
// (a node whose /proc cannot be read counts 0). The measured phase takes
// the whole from the same samples, so that the nodes' shares add up to it.
func (r *runner) nodeCPU() []time.Duration {
	cpu := make([]time.Duration, len(r.pids))
	for i, p := range r.pids {
		if s, err := sampleProc(p); err == nil {
			cpu[i] = s.cpu
		}
	}
	return cpu
}

// progress prints line() to the terminal every second until the returned
// function is called.
func (r *runner) progress(line func() string) func() {
	if r.o.progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintf(r.o.progress, "\r\033[K%s\n", line())
				return
			case <-t.C:
				fmt.Fprintf(r.o.progress, "\r\033[K%s", line())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// parallel runs f for 0..n-1 on w goroutines and returns the first error;
// after an error no f starts (the others finish what they are doing).
func parallel(ctx context.Context, n, w int, f func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(w, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil || failed.Load() {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// onEnvelope is the handler of every bench device's stream.
func (r *runner) onEnvelope(d *device, sender string, kind byte, intended, received time.Time) {
	switch kind {
	case kindHello:
		r.hellos.Add(1)
		select {
		case d.hello <- sender:
		default:
		}
	case kindMeasured:
		if r.record(intended, received) && r.tails != nil {
			r.tails.add(d.n, 0, received)
		}
	}
}

// record counts a measured delivery, once the measurement has begun, and
// says whether it did.
func (r *runner) record(intended, received time.Time) bool {
	rec := r.rec.Load()
	if rec == nil {
		return false
	}
	rec.Record(received, received.Sub(intended))
	r.delivered.Add(1)
	r.deliveredAt(received)
	return true
}

// deliveredAt keeps t as the last delivery if none later was kept: the
// devices record from many goroutines, and a delivery stored after a
// later one must not hide it.
func (r *runner) deliveredAt(t time.Time) {
	n := t.UnixNano()
	for {
		last := r.lastDeliv.Load()
		if n <= last || r.lastDeliv.CompareAndSwap(last, n) {
			return
		}
	}
}

// connectAll opens every device's stream and waits until each is synced.
func (r *runner) connectAll(ctx context.Context, ds []*device) error {
	return r.connectAllWith(ctx, ds, r.onEnvelope)
}

// connectAllWith is connectAll with h told of every envelope.
func (r *runner) connectAllWith(ctx context.Context, ds []*device, h envelopeHandler) error {
	return parallel(ctx, len(ds), 32, func(i int) error {
		if err := r.connect(ctx, ds[i], h); err != nil {
			return err
		}
		select {
		case <-ds[i].synced:
			return nil
		case <-time.After(30 * time.Second):
			return fmt.Errorf("stream of %s: not synced after 30s", ds[i].id)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// waitHellos waits until n handshake messages have arrived in total.
func (r *runner) waitHellos(ctx context.Context, n uint64) error {
	deadline := time.Now().Add(60 * time.Second)
	for r.hellos.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("handshake: %d of %d first messages arrived in 60s (errors: %v)", r.hellos.Load(), n, r.errs.snapshot())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// startBenchProfile starts -bench-cpu-profile, a CPU profile of this
// process, if it is set; stop ends it.
func (r *runner) startBenchProfile() (stop func(), err error) {
	stop, err = startProfile(r.o.benchProfile)
	if err != nil {
		return nil, fmt.Errorf("-bench-cpu-profile: %w", err)
	}
	return stop, nil
}

// startProfile writes a CPU profile of this process to path until stop is
// called; with no path it does nothing. A stream child profiles itself
// with it too.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// sender is one device's part of the measured phase.
type sender struct {
	d      *device
	to     messaging.SendTo
	recips []string
	skey   *keys.SenderKey // group: encrypt once with this
}

// measure runs the senders for the duration, open loop at o.rate sends per
// second each (latency counts from the intended send time, so a sender
// that falls behind shows as latency, not as a lower rate), then waits for
// the deliveries still in flight.
func (r *runner) measure(ctx context.Context, senders []sender) error {
	stopProfile, err := r.startBenchProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	mark := r.markCPU(ctx)
	db0, dbOK := r.dbCounters(ctx)
	profiled := r.startCPUProfile(ctx)
	start := time.Now()
	r.split.Store(&Split{})
	r.rec.Store(NewRecorder(start, time.Second))
	end := start.Add(r.o.duration)
	stopProgress := r.progress(r.liveLine(start))
	var wg sync.WaitGroup
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sendLoop(ctx, s, start, end, i, len(senders))
		}()
	}
	wg.Wait()
	sendEnd := time.Now()
	deadline := time.Now().Add(r.o.drain)
	for r.delivered.Load() < r.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	stopProgress()
	db1, dbOK1 := r.dbCounters(ctx)
	r.endPhase(ctx, start, sendEnd, mark, profiled)
	if s := r.res.Server; s != nil && dbOK && dbOK1 && r.res.Delivered > 0 {
		s.GroupCommits = db1.batches - db0.batches
		s.RoundTripsPerEnvelope = (db1.roundTrips - db0.roundTrips) / float64(r.res.Delivered)
		if db0.acksSeen && db1.acksSeen {
			s.AckFramesPerEnvelope = (db1.ackFrames - db0.ackFrames) / float64(r.res.Delivered)
		}
		if db0.failuresSeen && db1.failuresSeen {
			c := db1.conflicts - db0.conflicts
			f := c + db1.commitErrors - db0.commitErrors
			s.CommitFailures, s.CommitConflicts = &f, &c
		}
		if s.GroupCommits > 0 {
			s.WritesPerCommit = (db1.writes - db0.writes) / s.GroupCommits
			s.RoundTripsPerCommit = (db1.roundTrips - db0.roundTrips) / s.GroupCommits
		}
		if c, w := db1.commit.since(db0.commit), db1.wait.since(db0.wait); c.count > 0 && w.count > 0 {
			s.CommitMeanMS, s.CommitP99MS = 1000*c.sum/c.count, 1000*c.quantile(0.99)
			s.WaitMeanMS, s.WaitP99MS = 1000*w.sum/w.count, 1000*w.quantile(0.99)
		}
	}
	return ctx.Err()
}

// cpuMark is where a measured phase's CPU counts from: each kanald
// node's, PostgreSQL's backends' and kanal-bench's own.
type cpuMark struct {
	nodes []time.Duration
	pg    map[int]time.Duration
	self  time.Duration
}

func (r *runner) markCPU(ctx context.Context) cpuMark {
	return cpuMark{nodes: r.nodeCPU(), pg: r.cl.postgresCPU(ctx), self: selfCPU()}
}

// endPhase closes a measured phase that ran from start (its sends until
// sendEnd) with the CPU counted from mark: the latency and rates
// (finish), kanald's, its nodes' and PostgreSQL's CPU, and kanal-bench's
// own. It waits for the kanald profile started with the phase.
func (r *runner) endPhase(ctx context.Context, start, sendEnd time.Time, mark cpuMark, profiled <-chan error) {
	nodes1 := r.nodeCPU()
	pg1 := r.cl.postgresCPU(ctx)
	self := selfCPU() - mark.self
	if err := <-profiled; err != nil {
		fmt.Fprintf(r.stderr, "kanal-bench: cpu profile: %v\n", err)
	}
	var cpu time.Duration
	for i := range nodes1 {
		cpu += nodes1[i] - mark.nodes[i]
	}
	r.finish(start, sendEnd, cpu)
	r.shares(mark.nodes, nodes1, mark.pg, pg1)
	r.res.BenchCPUCores = self.Seconds() / r.res.DurationS
	if r.res.Delivered > 0 {
		r.res.BenchCPUPerEnvelopeUS = float64(self.Microseconds()) / float64(r.res.Delivered)
	}
}

// selfCPU is the CPU time kanal-bench itself has used: the load generator
// shares the machine with the server, and this says how much it took.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *runner) sendLoop(ctx context.Context, s sender, start, end time.Time, i, n int) {
	var interval time.Duration
	if r.o.rate > 0 {
		interval = time.Duration(float64(time.Second) / r.o.rate)
	}
	// Spread the senders' first sends over one interval.
	next := start
	if interval > 0 {
		next = start.Add(interval * time.Duration(i) / time.Duration(n))
	}
	for {
		now := time.Now()
		if interval > 0 && next.After(now) {
			if next.After(end) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(next.Sub(now)):
			}
		} else if interval == 0 {
			next = now
		}
		if next.After(end) || ctx.Err() != nil {
			return
		}
		if sp := r.split.Load(); sp != nil && interval > 0 {
			sp.Late(time.Since(next))
		}
		var err error
		switch {
		case r.publish != nil:
			err = r.publish(ctx, s, payload(kindMeasured, next, r.o.size))
		case s.skey != nil:
			var o *outgoing
			if o, err = s.d.sealGroup(s, payload(kindMeasured, next, r.o.size)); err == nil {
				err = r.postRetry(ctx, s.d, o)
			}
		default:
			err = r.sendOnce(ctx, s.d, s.to, s.recips, payload(kindMeasured, next, r.o.size))
		}
		if err != nil {
			if ctx.Err() == nil {
				r.errs.add(errKind(err))
			}
		} else {
			r.sent.Add(1)
			r.expected.Add(uint64(len(s.recips)))
		}
		next = next.Add(interval)
	}
}

func errKind(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\n"); i > 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func (r *runner) liveLine(start time.Time) func() string {
	var lastN uint64
	last := start
	return func() string {
		now := time.Now()
		n := r.delivered.Load()
		rate := float64(n-lastN) / now.Sub(last).Seconds()
		lastN, last = n, now
		w := r.rec.Load().Window()
		_, rss := r.serverSample()
		return fmt.Sprintf("%5.1fs  sent %d  delivered %d (%.0f/s)  p50 %.1fms  p99 %.1fms  errors %d  server rss %.0f MiB",
			now.Sub(start).Seconds(), r.sent.Load(), n, rate, ms(w.Quantile(0.5)), ms(w.Quantile(0.99)),
			r.errs.total(), float64(rss)/(1<<20))
	}
}

// finish fills the result from the measured phase.
func (r *runner) finish(start, sendEnd time.Time, cpu time.Duration) {
	res := r.res
	rec := r.rec.Load()
	h := rec.Total()
	last := time.Unix(0, r.lastDeliv.Load())
	span := max(last.Sub(start), sendEnd.Sub(start))
	res.DurationS = span.Seconds()
	res.Sent = r.sent.Load()
	res.Expected = r.expected.Load()
	res.Delivered = r.delivered.Load()
	res.EnvelopesPerS = float64(res.Delivered) / span.Seconds()
	res.SendsPerS = float64(res.Sent) / sendEnd.Sub(start).Seconds()
	res.Latency = latencyOf(&h)
	res.Series = rec.Series()
	if s := r.split.Load(); s != nil {
		res.Split = s.Stats()
	}
	res.Errors = r.errs.snapshot()
	if len(r.pids) > 0 {
		_, rss := r.serverSample()
		res.Server = &serverStats{RSSMiB: float64(rss) / (1 << 20), PeakRSSMiB: float64(r.maxRSS.Load()) / (1 << 20),
			CPUSeconds: cpu.Seconds(), CPUCores: cpu.Seconds() / span.Seconds()}
		if res.Delivered > 0 {
			res.Server.CPUPerEnvelopeUS = float64(cpu.Microseconds()) / float64(res.Delivered)
		}
	}
	res.LoadAfter = loadAvg()
}

// shares adds each node's CPU and the PostgreSQL backends' per delivered
// envelope, from samples at the start and the end of the measured phase.
func (r *runner) shares(nodes0, nodes1 []time.Duration, pg0, pg1 map[int]time.Duration) {
	if s := r.res.Server; s != nil && len(nodes1) > 1 && r.res.Delivered > 0 {
		for i := range nodes1 {
			s.NodeCPUPerEnvelopeUS = append(s.NodeCPUPerEnvelopeUS, float64((nodes1[i]-nodes0[i]).Microseconds())/float64(r.res.Delivered))
		}
	}
	if s := r.res.Server; s != nil && len(pg1) > 0 && r.res.Delivered > 0 {
		var pg time.Duration
		for pid, c := range pg1 {
			pg += c - pg0[pid] // a backend opened since counts from 0
		}
		s.PostgresBackends = len(pg1)
		s.PostgresCPUPerEnvelopeUS = float64(pg.Microseconds()) / float64(r.res.Delivered)
	}
}

func latencyOf(h *Histogram) latencyStats {
	return latencyStats{P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()), Mean: ms(h.Mean())}
}

// loadAvg is the machine's load average, as uptime prints it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// direct: pairs of devices chatting, each sending to the other.
func (r *runner) direct(ctx context.Context) error {
	senders, err := r.pairs(ctx)
	if err != nil {
		return err
	}
	return r.measure(ctx, senders)
}

// pairs provisions the devices in pairs, connects their streams and
// starts a session in each pair; each device is a sender to its peer.
func (r *runner) pairs(ctx context.Context) ([]sender, error) {
	ds, err := r.provision(ctx, r.o.devices, "direct", true)
	if err != nil {
		return nil, err
	}
	if err := r.connectAll(ctx, ds); err != nil {
		return nil, err
	}
	pairs := len(ds) / 2
	// The first of each pair claims the second's bundle and starts the
	// session; a message each way completes it, so that measured
	// messages are ordinary ratchet messages.
	err = parallel(ctx, pairs, 16, func(i int) error {
		a, b := ds[2*i], ds[2*i+1]
		claim, err := a.sdk.ClaimAccount(ctx, b.account)
		if err != nil {
			return err
		}
		if len(claim.Bundles) != 1 {
			return fmt.Errorf("claim %s: %d bundles, %d refused", b.account, len(claim.Bundles), len(claim.Refused))
		}
		if err := a.sdk.StartSession(claim.Bundles[0]); err != nil {
			return err
		}
		if err := r.sendOnce(ctx, a, messaging.SendTo{AccountID: b.account}, []string{b.id}, payload(kindHello, time.Now(), r.o.size)); err != nil {
			return fmt.Errorf("first message: %w", err)
		}
		if err := waitHello(ctx, b, a.id); err != nil {
			return err
		}
		if err := r.sendOnce(ctx, b, messaging.SendTo{AccountID: a.account}, []string{a.id}, payload(kindHello, time.Now(), r.o.size)); err != nil {
			return fmt.Errorf("answer: %w", err)
		}
		return waitHello(ctx, a, b.id)
	})
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	var senders []sender
	for i := range pairs {
		a, b := ds[2*i], ds[2*i+1]
		senders = append(senders, sender{d: a, to: messaging.SendTo{AccountID: b.account}, recips: []string{b.id}},
			sender{d: b, to: messaging.SendTo{AccountID: a.account}, recips: []string{a.id}})
	}
	return senders, nil
}

func waitHello(ctx context.Context, d *device, from string) error {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case s := <-d.hello:
			if s == from {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("device %s: no first message from %s in 30s", d.id, from)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// operatorToken is the token kanald printed at its first start.
func (r *runner) operatorToken() (string, error) {
	if r.cl.opToken == "" {
		return "", errors.New("no operator token: set KANAL_OPERATOR_TOKEN (kanald writes it to <data-dir>/operator-token)")
	}
	return r.cl.opToken, nil
}

// office: citizens writing to one organisation with o.agents agents; each
// send carries one envelope per agent device.
func (r *runner) office(ctx context.Context) error {
	tok, err := r.operatorToken()
	if err != nil {
		return err
	}
	agents, err := r.provision(ctx, r.o.agents, "agent", true)
	if err != nil {
		return err
	}
	citizens, err := r.provision(ctx, r.o.devices, "citizen", true)
	if err != nil {
		return err
	}
	op := agents[0].ident.WithToken(tok)
	org, err := op.CreateOrg(ctx, "Bürgeramt "+r.runID, "office")
	if err != nil {
		return fmt.Errorf("create organisation: %w", err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		return fmt.Errorf("verify organisation: %w", err)
	}
	var agentIDs []string
	for _, a := range agents {
		if _, err := op.AddMember(ctx, org.OrgID, a.account, "agent"); err != nil {
			return fmt.Errorf("add agent: %w", err)
		}
		agentIDs = append(agentIDs, a.id)
	}
	sort.Strings(agentIDs)
	if err := r.connectAll(ctx, append(append([]*device{}, agents...), citizens...)); err != nil {
		return err
	}
	// Each citizen claims the agents' bundles and writes first. The agents
	// do not answer (an answer would go to every other agent too, which
	// needs agent-to-agent sessions), so citizens' messages keep carrying
	// the PQXDH initial message, as a citizen's first messages do.
	err = parallel(ctx, len(citizens), 16, func(i int) error {
		c := citizens[i]
		claim, err := c.sdk.ClaimOrg(ctx, org.OrgID)
		if err != nil {
			return err
		}
		if len(claim.Bundles) != len(agents) {
			return fmt.Errorf("claim organisation: %d bundles, %d refused, want %d", len(claim.Bundles), len(claim.Refused), len(agents))
		}
		for _, b := range claim.Bundles {
			if err := c.sdk.StartSession(b); err != nil {
				return err
			}
		}
		return r.sendOnce(ctx, c, messaging.SendTo{OrgID: org.OrgID}, agentIDs, payload(kindHello, time.Now(), r.o.size))
	})
	if err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	if err := r.waitHellos(ctx, uint64(len(citizens)*len(agents))); err != nil {
		return err
	}
	var senders []sender
	for _, c := range citizens {
		senders = append(senders, sender{d: c, to: messaging.SendTo{OrgID: org.OrgID}, recips: agentIDs})
	}
	return r.measure(ctx, senders)
}

// broadcast: a council agent posts one announcement to the council's
// broadcast (POST /v1/broadcasts/{org}/posts), which -devices citizen
// devices follow; -connected of them hold a stream (the rest are offline
// followers whose mailboxes get the reference). The figure is the time
// from the post to the last connected device's verified announcement,
// and the server CPU per delivered device.
func (r *runner) broadcast(ctx context.Context) error {
	var org string
	var cd *device
	var citizens []*device
	var err error
	if r.kept != nil {
		r.res.Kept = r.o.keep + ": reused (provisioned by an earlier run)"
		if cd, citizens, err = r.restoreKept(ctx, r.kept, r.o.connected); err != nil {
			return err
		}
		org = r.kept.Org
	} else if org, cd, citizens, err = r.provisionBroadcast(ctx); err != nil {
		return err
	}
	connected := citizens[:min(len(citizens), r.o.connected)]
	r.tails = newTails(len(r.cl.urls), r.o.streamProcs)
	var procs []*streamProc
	if r.o.streamProcs > 0 {
		// The children report each delivery; they check and acknowledge
		// the announcement as the devices in this process do.
		fmt.Fprintf(r.stderr, "kanal-bench: %d streams in %d child processes\n", len(connected), r.o.streamProcs)
		procs, err = r.startStreamProcs(ctx, connected, r.o.streamProcs, func(proc, n int, received time.Time) {
			if r.record(time.Unix(0, r.posted.Load()), received) {
				r.tails.add(n, proc, received)
			}
		})
		defer func() {
			if procs != nil {
				stopStreamProcs(procs)
			}
		}()
		if err != nil {
			return err
		}
	} else if err := r.connectAll(ctx, connected); err != nil {
		return err
	}
	r.res.Connections = len(connected)
	for _, p := range procs {
		r.res.BinaryStreams += p.binary
	}
	if procs == nil {
		for _, d := range connected {
			if d.bin {
				r.res.BinaryStreams++
			}
		}
	}
	counts0 := r.streamedCounts(ctx)
	nodes0, pg0 := r.nodeCPU(), r.cl.postgresCPU(ctx)
	self0 := selfCPU() + procsCPU(procs)
	profiled := r.startCPUProfile(ctx)
	stopProfile, err := r.startBenchProfile()
	if err != nil {
		return err
	}
	start := time.Now()
	r.posted.Store(start.UnixNano())
	r.rec.Store(NewRecorder(start, time.Second))
	r.expected.Store(uint64(len(connected)))
	stopProgress := r.progress(r.liveLine(start))
	resp, err := cd.sdk.Announce(ctx, org, "a-"+hex.EncodeToString(r.nonce()), "Bekanntmachung des Rates: Die Marktbrücke ist ab Montag gesperrt.")
	sendEnd := time.Now()
	if err != nil {
		r.errs.add("announce: " + errKind(err))
	} else {
		r.sent.Add(1)
		r.res.BroadcastStored = resp.Devices
		r.res.BroadcastPostS = sendEnd.Sub(start).Seconds()
	}
	deadline := time.Now().Add(r.o.drain)
	for r.delivered.Load() < r.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stopProgress()
	stopProfile()
	nodes1, pg1 := r.nodeCPU(), r.cl.postgresCPU(ctx)
	self1 := selfCPU() + procsCPU(procs)
	counts := r.streamedCounts(ctx).since(counts0)
	r.res.BroadcastCarried, r.res.BroadcastRead = int64(counts.wake), int64(counts.mailbox)
	r.res.PingTimeouts, r.res.WriteTimeouts = causeCounts(counts.ping), causeCounts(counts.write)
	if err := <-profiled; err != nil {
		fmt.Fprintf(r.stderr, "kanal-bench: cpu profile: %v\n", err)
	}
	if procs != nil {
		errs, recon := stopStreamProcs(procs)
		for k, v := range errs {
			r.errs.addN(k, v)
		}
		for k, v := range recon {
			r.reconnects.addN(k, v)
		}
		procs = nil
	}
	var cpu time.Duration
	for i := range nodes1 {
		cpu += nodes1[i] - nodes0[i]
	}
	r.finish(start, sendEnd, cpu)
	r.shares(nodes0, nodes1, pg0, pg1)
	r.res.BroadcastS = time.Unix(0, r.lastDeliv.Load()).Sub(start).Seconds()
	r.res.BroadcastLast = r.tails.shares(start)
	if rc := r.reconnects.snapshot(); len(rc) > 0 {
		r.res.Reconnects = rc
	}
	r.res.BenchCPUCores = (self1 - self0).Seconds() / r.res.DurationS
	r.res.StreamProcs = r.o.streamProcs
	return ctx.Err()
}

// provisionBroadcast signs up the council's agent, creates and verifies
// the organisation, and signs up -devices followers that follow it; with
// -keep it keeps them for later runs.
func (r *runner) provisionBroadcast(ctx context.Context) (org string, cd *device, citizens []*device, err error) {
	tok, err := r.operatorToken()
	if err != nil {
		return "", nil, nil, err
	}
	start := time.Now() // no session issued below is older
	council, err := r.provision(ctx, 1, "council", false)
	if err != nil {
		return "", nil, nil, err
	}
	cd = council[0]
	op := cd.ident.WithToken(tok)
	o, err := op.CreateOrg(ctx, "Rat der Stadt "+r.runID, "council")
	if err != nil {
		return "", nil, nil, fmt.Errorf("create organisation: %w", err)
	}
	if _, err := op.VerifyOrg(ctx, o.OrgID); err != nil {
		return "", nil, nil, fmt.Errorf("verify organisation: %w", err)
	}
	if _, err := op.AddMember(ctx, o.OrgID, cd.account, "agent"); err != nil {
		return "", nil, nil, fmt.Errorf("add agent: %w", err)
	}
	// A first announcement to nobody fetches and checks the agent's
	// membership proof, which the SDK then keeps. (A run on a kept
	// directory has followers already: its post fetches the proof, one
	// directory read and its log proof, which the post's time includes.)
	if _, err := cd.sdk.Announce(ctx, o.OrgID, "warmup", "warm-up"); err != nil {
		return "", nil, nil, fmt.Errorf("warm-up announcement: %w", err)
	}
	// Followers need no prekeys: announcements are signed, not encrypted.
	// Each follows as soon as it is signed up, while its session is new:
	// provisioning 50,000 on a loaded machine can take longer than the
	// first sessions live.
	citizens, err = r.provisionThen(ctx, r.o.devices, "citizen", false, func(d *device) error {
		if _, err := d.sdk.Follow(ctx, o.OrgID); err != nil {
			return fmt.Errorf("follow: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", nil, nil, err
	}
	if r.o.keep != "" {
		if err := r.saveKept(o.OrgID, cd, citizens, start); err != nil {
			return "", nil, nil, fmt.Errorf("-keep: %w", err)
		}
		r.res.Kept = r.o.keep + ": provisioned by this run and kept"
	}
	return o.OrgID, cd, citizens, nil
}

// nonce is 4 random bytes: announcement ids unique across runs on one
// kept directory.
func (r *runner) nonce() []byte {
	var b [4]byte
	rand.Read(b[:])
	return b[:]
}

// startCPUProfile has the first kanald node profile its CPU for
// -cpu-profile-for (through KANAL_PPROF_ADDR, which kanal-bench passes to
// it) and writes the profile to -cpu-profile; the channel gets the
// outcome once the profile is written. Without -cpu-profile it does
// nothing.
func (r *runner) startCPUProfile(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	addr := os.Getenv("KANAL_PPROF_ADDR")
	switch {
	case r.o.cpuProfile == "":
		done <- nil
		return done
	case addr == "":
		done <- errors.New("-cpu-profile needs KANAL_PPROF_ADDR")
		return done
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(int(r.o.cpuProfileFor.Seconds()), 1)), nil)
	if err != nil {
		done <- err
		return done
	}
	started := make(chan struct{})
	go func() {
		close(started)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("pprof answered %s", resp.Status)
			return
		}
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(r.o.cpuProfile, b, 0o644)
		}
		done <- err
	}()
	<-started
	time.Sleep(100 * time.Millisecond) // the profile starts when kanald reads the request
	return done
}

// announcement checks a broadcast envelope as a follower's client does
// (messaging.VerifyAnnouncement against the deployment CA). Every
// follower would check the same JWS on its own phone; the bench, which
// plays all of them on the two cores it shares with kanald, checks each
// distinct announcement once and compares the others with it.
func (r *runner) announcement(d *device, e *mailbox.Envelope) error {
	if signer, ok := r.verified.load(e.Ciphertext); ok {
		if signer != e.Sender {
			return errors.New("announcement from another device")
		}
		return nil
	}
	v, err := messaging.VerifyAnnouncement(string(e.Ciphertext), d.roots)
	if err != nil {
		return err
	}
	if v.Signer.DeviceID != e.Sender || messaging.BroadcastConversation(v.Org) != e.Conversation {
		return errors.New("announcement out of place")
	}
	r.verified.store(string(e.Ciphertext), e.Sender)
	return nil
}

// verifiedAnnouncements maps an announcement's JWS to the device that
// signed it. A lookup by the envelope's bytes copies nothing (a sync.Map
// keyed by string made each follower copy the 3.2 KB JWS to look it up).
type verifiedAnnouncements struct {
	mu sync.RWMutex
	m  map[string]string
}

func (v *verifiedAnnouncements) load(jws []byte) (signer string, ok bool) {
	v.mu.RLock()
	signer, ok = v.m[string(jws)]
	v.mu.RUnlock()
	return signer, ok
}

func (v *verifiedAnnouncements) store(jws, signer string) {
	v.mu.Lock()
	if v.m == nil {
		v.m = map[string]string{}
	}
	v.m[jws] = signer
	v.mu.Unlock()
}

// connections: devices that connect their stream and stay idle (the
// server pings each every mailbox.PingInterval); the server's memory per
// connection is the figure.
func (r *runner) connections(ctx context.Context) error {
	ds, err := r.provision(ctx, r.o.devices, "idle", false)
	if err != nil {
		return err
	}
	_, before := r.serverSample()
	start := time.Now()
	var connected atomic.Int64
	stopProgress := r.progress(func() string {
		_, rss := r.serverSample()
		return fmt.Sprintf("connected %d/%d  server rss %.0f MiB  errors %d", connected.Load(), len(ds), float64(rss)/(1<<20), r.errs.total())
	})
	cpu0, _ := r.serverSample()
	// A connection that fails stops the ramp-up; the figures are then for
	// the connections that were made, and the error says what stopped it
	// (typically the open-files limit of one of the two processes).
	err = parallel(ctx, len(ds), 64, func(i int) error {
		if err := r.connect(ctx, ds[i], r.onEnvelope); err != nil {
			r.errs.add("connect: " + errKind(err))
			return err
		}
		select {
		case <-ds[i].synced:
		case <-time.After(60 * time.Second):
			r.errs.add("not synced in 60s")
			return fmt.Errorf("stream of %s: not synced", ds[i].id)
		}
		connected.Add(1)
		return nil
	})
	connectTook := time.Since(start)
	if err != nil && ctx.Err() == nil && connected.Load() > 0 {
		fmt.Fprintf(r.stderr, "kanal-bench: stopped at %d connections: %v\n", connected.Load(), err)
		err = nil
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case <-time.After(r.o.duration):
		}
	}
	stopProgress()
	if err != nil {
		return err
	}
	cpu1, after := r.serverSample()
	res := r.res
	res.Connections = int(connected.Load())
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		res.OpenFilesLimit = int64(lim.Cur)
	}
	res.ConnectS = connectTook.Seconds()
	res.DurationS = time.Since(start).Seconds()
	res.Errors = r.errs.snapshot()
	res.Server = &serverStats{RSSMiB: float64(after) / (1 << 20), PeakRSSMiB: float64(r.maxRSS.Load()) / (1 << 20),
		BaseRSSMiB: float64(before) / (1 << 20), CPUSeconds: (cpu1 - cpu0).Seconds(),
		CPUCores: (cpu1 - cpu0).Seconds() / res.DurationS}
	if res.Connections > 0 {
		res.Server.KiBPerConn = float64(after-before) / 1024 / float64(res.Connections)
	}
	res.LoadAfter = loadAvg()
	return ctx.Err()
}

// lockedWriter lets several goroutines write to w, one Write at a time.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
