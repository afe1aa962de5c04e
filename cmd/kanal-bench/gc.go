package main

import (
	"math"
	"runtime/debug"
)

// The load generator's garbage collector. kanal-bench's devices stand for
// phones and browsers, each with a heap of its own; here hundreds of them
// share one process, and the two cores with kanald, so what their garbage
// collector costs is taken from the server being measured. With Go's
// default (GOGC=100) it was 14–16 % of kanal-bench's CPU in the direct
// scenario; at 400 kanal-bench spent 10–15 % less CPU per envelope and
// kanald delivered 5–6 % more on SQLite and 12–14 % more on PostgreSQL +
// NATS (docs/benchmarks.md, "The load generator's garbage collector, and
// every target on a faster machine"). The soft memory limit keeps the larger heap goal
// bounded where the devices' live heap is large (the broadcast scenario's
// tens of thousands of devices). Only kanal-bench is tuned: kanald runs
// with Go's defaults, or with the GOGC and GOMEMLIMIT of kanal-bench's
// environment, which pass through to it.
const (
	benchGCPercent   = 400
	benchMemoryLimit = 4 << 30
)

// tuneGC sets the load generator's GC percent and memory limit, each
// unless the environment (lookup) sets it already.
func tuneGC(lookup func(string) (string, bool)) {
	if _, ok := lookup("GOGC"); !ok {
		debug.SetGCPercent(benchGCPercent)
	}
	if _, ok := lookup("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(benchMemoryLimit)
	}
}

// gcSettings returns the GC percent (-1 for off) and the memory limit in
// force, in MiB (0 for none), as a result records them.
func gcSettings() (percent int, limitMiB int64) {
	percent = debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		limitMiB = l >> 20
	}
	return percent, limitMiB
}
