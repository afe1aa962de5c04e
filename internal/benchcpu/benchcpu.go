// Package benchcpu reports the CPU time a benchmark's process spends per
// operation next to Go's wall-clock ns/op. On a machine shared with other
// work, wall-clock time per operation grows with the load (the benchmark
// waits for a core); CPU time per operation grows much less, so it is the
// figure to compare when an A/B run cannot have the machine to itself.
package benchcpu

import "testing"

// Start begins measuring; the function it returns reports the process's
// CPU time since then divided by b.N as "cpu-ns/op". Call it after the
// loop, before anything the figure should not include. Everything the
// process runs meanwhile counts: the garbage collector, and the servers
// a benchmark runs in its own process (an in-process NATS, SQLite), but
// not a PostgreSQL server, which is another process.
func Start(b *testing.B) func() {
	start := Process()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(Process()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
