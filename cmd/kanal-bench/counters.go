package main

import (
	"bufio"
	"context"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// dbCounters are the nodes' counters of database work, summed: round
// trips to PostgreSQL and the group commits with the writes they carried
// (kanald's /metrics). Per delivered envelope they do not depend on how
// much of a shared machine the server got.
type dbCounters struct {
	roundTrips, batches, writes float64
	// conflicts and commitErrors are the group commit's failed attempts
	// by reason; failuresSeen is false if a node lacks
	// kanal_group_commit_failures_total.
	conflicts, commitErrors float64
	failuresSeen            bool
	// ackFrames are the ack frames the nodes read; acksSeen is false if
	// a node lacks kanal_stream_ack_frames_total.
	ackFrames float64
	acksSeen  bool
	// commit and wait are the group commit's durations and the writes'
	// waits for one (kanald's histograms, absent before they existed).
	commit, wait promHist
}

// promHist is a Prometheus histogram as /metrics shows it: cumulative
// counts by upper bound, and the sum.
type promHist struct {
	buckets    map[float64]float64
	sum, count float64
}

// add folds one line of /metrics (name with labels, value) into h if it is
// one of the histogram base's.
func (h *promHist) add(base, name string, v float64) bool {
	switch {
	case name == base+"_sum":
		h.sum += v
	case name == base+"_count":
		h.count += v
	case strings.HasPrefix(name, base+`_bucket{le="`):
		le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(name, base+`_bucket{le="`), `"}`), 64)
		if err != nil {
			return false
		}
		if h.buckets == nil {
			h.buckets = map[float64]float64{}
		}
		h.buckets[le] += v
	default:
		return false
	}
	return true
}

// since is h less an earlier reading of the same histogram.
func (h promHist) since(o promHist) promHist {
	d := promHist{buckets: map[float64]float64{}, sum: h.sum - o.sum, count: h.count - o.count}
	for le, n := range h.buckets {
		d.buckets[le] = n - o.buckets[le]
	}
	return d
}

// quantile is the upper bound of the bucket the q-quantile falls in
// (+Inf past the last bound), 0 for an empty histogram.
func (h promHist) quantile(q float64) float64 {
	if h.count <= 0 {
		return 0
	}
	les := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	for _, le := range les {
		if h.buckets[le] >= q*h.count {
			return le
		}
	}
	return math.Inf(1)
}

// dbCounters reads the counters from every node; ok is false if a node
// did not answer or lacks them (a kanald from before they existed).
func (r *runner) dbCounters(ctx context.Context) (c dbCounters, ok bool) {
	if r.cl == nil || len(r.cl.urls) == 0 {
		return c, false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c.failuresSeen, c.acksSeen = true, true
	for _, u := range r.cl.urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
		if err != nil {
			return c, false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return c, false
		}
		found, failuresFound, acksFound := 0, 0, 0
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			if v, err := strconv.ParseFloat(val, 64); err == nil &&
				(c.commit.add("kanal_group_commit_seconds", name, v) || c.wait.add("kanal_group_commit_wait_seconds", name, v)) {
				continue
			}
			var dst *float64
			count := &found
			switch name {
			case `kanal_group_commit_failures_total{reason="conflict"}`:
				dst, count = &c.conflicts, &failuresFound
			case `kanal_group_commit_failures_total{reason="error"}`:
				dst, count = &c.commitErrors, &failuresFound
			case "kanal_db_round_trips_total":
				dst = &c.roundTrips
			case "kanal_group_commit_batches_total":
				dst = &c.batches
			case "kanal_group_commit_writes_total":
				dst = &c.writes
			case "kanal_stream_ack_frames_total":
				dst, count = &c.ackFrames, &acksFound
			default:
				continue
			}
			if v, err := strconv.ParseFloat(val, 64); err == nil {
				*dst += v
				*count++
			}
		}
		resp.Body.Close()
		if found < 3 {
			return c, false
		}
		c.failuresSeen = c.failuresSeen && failuresFound == 2
		c.acksSeen = c.acksSeen && acksFound == 1
	}
	return c, true
}
