package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Streams in child processes. One process may hold 20,000 open files on
// the project's machine (a hard limit that only CAP_SYS_RESOURCE raises),
// so a broadcast to more connected followers than that cannot hold their
// streams in kanal-bench alone. With -stream-procs N the parent still
// provisions every device and posts the announcement, and N children —
// kanal-bench started again as "kanal-bench -stream-worker" — each open a
// share of the streams, check the announcement as the in-process devices
// do, acknowledge it, and report each delivery's time to the parent over
// a pipe. Every process runs on the same machine, so their wall clocks are
// one clock.
//
// The protocol, one JSON object on the child's standard input, then lines
// on its standard output:
//
//	stdin   {"sources":3,"frames":"binary","ca":"-----BEGIN CERTIFICATE-----…","devices":[{"n":0,"id":"…","token":"…","base":"http://127.0.0.1:…"}]}
//	stdout  synced <count> <retried> <bin> every stream is open and has its backlog; dials tried again; streams with binary frames
//	        d <unix nanoseconds>           one device took and checked the announcement
//	        errors <JSON object>           the child's error counts, when its stdin closes
//	        fail <message>                 it could not open its streams
//
// The child closes its streams and exits when its standard input closes.

// streamWorkerArg is the first argument that makes kanal-bench a child.
const streamWorkerArg = "-stream-worker"

// streamsPerProc is how many streams one process is given: under the
// 20,000 open files, with room for its HTTP connections.
const streamsPerProc = 18000

type workerDevice struct {
	N     int    `json:"n"`
	ID    string `json:"id"`
	Token string `json:"token"`
	Base  string `json:"base"`
}

type workerJob struct {
	Sources int            `json:"sources"`
	Frames  string         `json:"frames,omitempty"` // the parent's -frames; empty: binary
	CA      string         `json:"ca"`
	Devices []workerDevice `json:"devices"`
	// Profile, if set, is where the child writes a CPU profile of itself
	// from the moment its streams are synced until it ends (-bench-cpu-profile).
	Profile string `json:"profile,omitempty"`
}

// deliveryFlush is how often a child writes the deliveries it reported.
const deliveryFlush = 10 * time.Millisecond

// streamWorker is the child's side: it reads the job, holds the streams
// and reports until its standard input closes.
func streamWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	var job workerJob
	dec := json.NewDecoder(in)
	if err := dec.Decode(&job); err != nil {
		return fmt.Errorf("stream worker: job: %w", err)
	}
	blk, _ := pem.Decode([]byte(job.CA))
	if blk == nil {
		return errors.New("stream worker: no CA certificate")
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	// The children's streams speak what the parent's would: without it
	// they spoke JSON (the zero -frames), so that a broadcast past 18,000
	// streams cost kanald JSON acknowledgements to decode and base64
	// envelopes to encode that one under it did not.
	o := &options{scenario: "broadcast", sources: job.Sources, frames: job.Frames}
	if o.frames == "" {
		o.frames = "binary"
	}
	r := &runner{o: o, errs: &errCounter{}, reconnects: &errCounter{}, net: newNetPool(job.Sources), stop: make(chan struct{})}
	var mu sync.Mutex
	out := bufio.NewWriter(stdout)
	line := func(format string, a ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", a...)
		out.Flush()
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A delivery's line carries the time it was received, so it need not
	// be written at once: the lines are flushed every deliveryFlush, not a
	// write(2) each (and a read of the parent's each) for every follower.
	go func() {
		t := time.NewTicker(deliveryFlush)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				mu.Lock()
				out.Flush()
				mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	ds := make([]*device, len(job.Devices))
	for i, wd := range job.Devices {
		d := &device{n: wd.N, id: wd.ID, token: wd.Token, base: wd.Base, roots: roots,
			hc: r.net.clients[wd.N%len(r.net.clients)], synced: make(chan struct{}), hello: make(chan string, 1), seen: r.seenMap()}
		d.markSynced = sync.OnceFunc(func() { close(d.synced) })
		ds[i] = d
	}
	delivered := func(d *device, _ string, _ byte, _, received time.Time) {
		mu.Lock()
		out.WriteString("d ")
		var b [20]byte
		out.Write(strconv.AppendInt(b[:0], received.UnixNano(), 10))
		out.WriteByte(' ')
		out.Write(strconv.AppendInt(b[:0], int64(d.n), 10))
		out.WriteByte('\n')
		mu.Unlock()
	}
	// A dial that fails is tried again, as a client would, a few times:
	// with tens of thousands of streams opening on a loaded machine, one
	// upgrade that waits past the dial's 30 s must not end the run.
	var retried atomic.Int64
	err = parallel(ctx, len(ds), 32, func(i int) error {
		var err error
		for try := range 5 {
			if try > 0 {
				retried.Add(1)
				time.Sleep(time.Duration(try) * time.Second)
			}
			if err = r.connect(ctx, ds[i], delivered); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		select {
		case <-ds[i].synced:
			return nil
		case <-time.After(60 * time.Second):
			return fmt.Errorf("stream of %s: not synced after 60s", ds[i].id)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		line("fail %s", strings.ReplaceAll(err.Error(), "\n", " "))
		return err
	}
	binary := 0
	for _, d := range ds {
		if d.bin {
			binary++
		}
	}
	stopProfile, err := startProfile(job.Profile)
	if err != nil {
		line("fail profile: %s", strings.ReplaceAll(err.Error(), "\n", " "))
		return err
	}
	defer stopProfile()
	line("synced %d %d %d", len(ds), retried.Load(), binary)
	// Hold the streams until the parent closes the pipe.
	_, _ = io.Copy(io.Discard, in)
	cancel()
	b, _ := json.Marshal(r.errs.snapshot())
	line("errors %s", b)
	b, _ = json.Marshal(r.reconnects.snapshot())
	line("reconnects %s", b)
	return nil
}

// streamProc is one child as the parent sees it.
type streamProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	synced chan error // one value: nil once its streams are synced
	done   chan struct{}
	errs   map[string]uint64
	recon  map[string]uint64 // streams the server closed and the child opened again, by reason
	binary int               // of its streams, those that speak binary frames
	stderr io.Writer
}

// startStreamProcs starts one child per share of ds and waits until each
// has its streams synced. onDelivery is called for every delivery a child
// reports, with the child's number (from 1) and the device's.
func (r *runner) startStreamProcs(ctx context.Context, ds []*device, procs int, onDelivery func(proc, n int, received time.Time)) ([]*streamProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, errors.New("no devices")
	}
	ca := r.caPEM.Load()
	if ca == nil {
		return nil, errors.New("no CA certificate from the enrolments")
	}
	var ps []*streamProc
	per := (len(ds) + procs - 1) / procs
	for start := 0; start < len(ds); start += per {
		part := ds[start:min(start+per, len(ds))]
		job := workerJob{Sources: r.o.sources, Frames: r.o.frames, CA: *ca}
		if r.o.benchProfile != "" {
			job.Profile = fmt.Sprintf("%s.child%d", r.o.benchProfile, len(ps)+1)
		}
		for _, d := range part {
			job.Devices = append(job.Devices, workerDevice{N: d.n, ID: d.id, Token: d.token, Base: d.base})
		}
		cmd := exec.CommandContext(ctx, exe, streamWorkerArg)
		cmd.Stderr = r.stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			return ps, err
		}
		outp, err := cmd.StdoutPipe()
		if err != nil {
			return ps, err
		}
		if err := cmd.Start(); err != nil {
			return ps, fmt.Errorf("start a stream worker: %w", err)
		}
		p := &streamProc{cmd: cmd, in: in, synced: make(chan error, 1), done: make(chan struct{}), stderr: r.stderr}
		ps = append(ps, p)
		proc := len(ps)
		go p.read(outp, func(n int, received time.Time) { onDelivery(proc, n, received) })
		b, err := json.Marshal(job)
		if err != nil {
			return ps, err
		}
		if _, err := in.Write(append(b, '\n')); err != nil {
			return ps, fmt.Errorf("stream worker: %w", err)
		}
	}
	for _, p := range ps {
		select {
		case err := <-p.synced:
			if err != nil {
				return ps, err
			}
		case <-ctx.Done():
			return ps, ctx.Err()
		}
	}
	return ps, nil
}

func (p *streamProc) read(out io.Reader, onDelivery func(n int, received time.Time)) {
	defer close(p.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	told := false
	tell := func(err error) {
		if !told {
			told = true
			p.synced <- err
		}
	}
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "d": // "d <received, unix nanos> <device n>"
			at, dev, _ := strings.Cut(rest, " ")
			ns, err1 := strconv.ParseInt(at, 10, 64)
			n, err2 := strconv.Atoi(dev)
			if err1 == nil && err2 == nil {
				onDelivery(n, time.Unix(0, ns))
			}
		case "synced":
			f := strings.Fields(rest)
			if len(f) > 1 && f[1] != "0" {
				fmt.Fprintf(p.stderr, "kanal-bench: a stream worker tried %s stream dials again\n", f[1])
			}
			if len(f) > 2 {
				p.binary, _ = strconv.Atoi(f[2])
			}
			tell(nil)
		case "fail":
			tell(errors.New("stream worker: " + rest))
		case "errors":
			_ = json.Unmarshal([]byte(rest), &p.errs)
		case "reconnects":
			_ = json.Unmarshal([]byte(rest), &p.recon)
		}
	}
	tell(errors.New("stream worker ended before its streams were synced"))
}

// stopStreamProcs closes the children's input, which ends them, and
// returns their error counts and their reconnections by reason.
func stopStreamProcs(ps []*streamProc) (errs, recon map[string]uint64) {
	errs, recon = map[string]uint64{}, map[string]uint64{}
	for _, p := range ps {
		p.in.Close()
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		p.cmd.Wait()
		for k, v := range p.errs {
			errs[k] += v
		}
		for k, v := range p.recon {
			recon[k] += v
		}
	}
	return errs, recon
}

// procsCPU is the CPU the children have used so far.
func procsCPU(ps []*streamProc) (cpu time.Duration) {
	for _, p := range ps {
		if s, err := sampleProc(p.cmd.Process.Pid); err == nil {
			cpu += s.cpu
		}
	}
	return cpu
}
