package main

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
)

// TestPromHist: histogram lines of /metrics read into buckets, the
// difference of two readings, and the bucket its 99th percentile is in.
func TestPromHist(t *testing.T) {
	read := func(lines map[string]float64) promHist {
		var h promHist
		for name, v := range lines {
			if !h.add("x_seconds", name, v) {
				t.Fatalf("%s not taken", name)
			}
		}
		if h.add("x_seconds", "y_seconds_sum", 1) || h.add("x_seconds", `x_seconds_bucket{le="bad"}`, 1) {
			t.Fatal("a line of another metric or a bad bound taken")
		}
		return h
	}
	before := read(map[string]float64{`x_seconds_bucket{le="0.001"}`: 5, `x_seconds_bucket{le="0.002"}`: 5, `x_seconds_bucket{le="+Inf"}`: 5, "x_seconds_sum": 0.004, "x_seconds_count": 5})
	after := read(map[string]float64{`x_seconds_bucket{le="0.001"}`: 55, `x_seconds_bucket{le="0.002"}`: 104, `x_seconds_bucket{le="+Inf"}`: 105, "x_seconds_sum": 0.2, "x_seconds_count": 105})
	d := after.since(before)
	if d.count != 100 || math.Abs(d.sum-0.196) > 1e-9 {
		t.Fatalf("count %v sum %v, want 100 and 0.196", d.count, d.sum)
	}
	if q := d.quantile(0.5); q != 0.001 {
		t.Fatalf("p50 in the bucket up to %v, want 0.001", q)
	}
	if q := d.quantile(0.99); q != 0.002 {
		t.Fatalf("p99 in the bucket up to %v, want 0.002", q)
	}
	if q := d.quantile(1); !math.IsInf(q, 1) {
		t.Fatalf("p100 in the bucket up to %v, want +Inf", q)
	}
	if q := (promHist{}).quantile(0.99); q != 0 {
		t.Fatalf("an empty histogram's p99: %v", q)
	}
}

// parallel stops at the first error: with one worker and an error from
// the first item, no other item runs (a failed login among 50,000 kept
// sessions ended the run only after all the others had been renewed).
func TestParallelStopsAtError(t *testing.T) {
	ran := 0
	err := parallel(context.Background(), 1000, 1, func(i int) error {
		ran++
		return fmt.Errorf("item %d failed", i)
	})
	if err == nil || err.Error() != "item 0 failed" || ran != 1 {
		t.Fatalf("error %v after %d items, want item 0's after 1", err, ran)
	}
	var count atomic.Int64
	if err := parallel(context.Background(), 1000, 8, func(int) error { count.Add(1); return nil }); err != nil || count.Load() != 1000 {
		t.Fatalf("without errors: %v after %d items, want all 1000", err, count.Load())
	}
}

// TestStreamCounts: the stream counters read from /metrics lines, summed
// over nodes, and their difference across a run.
func TestStreamCounts(t *testing.T) {
	read := func(lines ...string) streamCounts {
		c := streamCounts{ping: map[string]float64{}, write: map[string]float64{}}
		for _, l := range lines {
			c.add(l)
		}
		return c
	}
	before := read(`kanal_stream_envelopes_total{source="wake"} 10`, `kanal_stream_envelopes_total{source="mailbox"} 2`,
		`kanal_stream_ping_timeouts_total{socket="unread"} 1`, `kanal_stream_ping_timeouts_total{socket="quiet"} 4`,
		`kanal_stream_write_timeouts_total{socket="unsent"} 2`)
	after := read(`kanal_stream_envelopes_total{source="wake"} 60`, `kanal_stream_envelopes_total{source="mailbox"} 5`,
		`kanal_stream_ping_timeouts_total{socket="unread"} 8`, `kanal_stream_ping_timeouts_total{socket="quiet"} 4`,
		`kanal_stream_write_timeouts_total{socket="unsent"} 5`,
		// A second node's lines add up; other metrics and bad values are not read.
		`kanal_stream_envelopes_total{source="wake"} 1`, `kanal_stream_ping_timeouts_total{socket="unread"} 2`,
		`kanal_stream_late_reads_total 99`, `kanal_stream_envelopes_total{source="wake"} x`, `# HELP kanal_stream_envelopes_total x`)
	d := after.since(before)
	if d.wake != 51 || d.mailbox != 3 {
		t.Fatalf("wake %v mailbox %v, want 51 and 3", d.wake, d.mailbox)
	}
	if len(d.ping) != 2 || d.ping["unread"] != 9 || d.ping["quiet"] != 0 {
		t.Fatalf("ping timeouts %v, want unread 9 and quiet 0", d.ping)
	}
	if len(d.write) != 1 || d.write["unsent"] != 3 {
		t.Fatalf("write timeouts %v, want unsent 3", d.write)
	}
	// Nodes without the counter: no causes at all, not zeros.
	if d := read(`kanal_stream_envelopes_total{source="wake"} 1`).since(read()); d.ping != nil || d.write != nil {
		t.Fatalf("timeouts %v, %v from nodes without the counters", d.ping, d.write)
	}
}
