package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// The load generator tunes its own garbage collector, unless GOGC or
// GOMEMLIMIT says otherwise: an operator's setting wins.
func TestTuneGCLeavesTheEnvironmentsSettings(t *testing.T) {
	percent0, limit0 := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(percent0); debug.SetMemoryLimit(limit0) })
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}

	tuneGC(env(nil))
	if p, l := gcSettings(); p != benchGCPercent || l != benchMemoryLimit>>20 {
		t.Errorf("no GOGC, no GOMEMLIMIT: GC percent %d, limit %d MiB; want %d, %d", p, l, benchGCPercent, benchMemoryLimit>>20)
	}

	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC(env(map[string]string{"GOGC": "100", "GOMEMLIMIT": "off"}))
	if p, l := gcSettings(); p != 100 || l != 0 {
		t.Errorf("GOGC and GOMEMLIMIT set: GC percent %d, limit %d MiB; want the runtime's 100 and none", p, l)
	}

	debug.SetGCPercent(-1)
	tuneGC(env(map[string]string{"GOGC": "off"}))
	if p, l := gcSettings(); p != -1 || l != benchMemoryLimit>>20 {
		t.Errorf("GOGC=off only: GC percent %d, limit %d MiB; want -1, %d", p, l, benchMemoryLimit>>20)
	}
}
