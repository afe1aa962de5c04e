package main

import (
	"bufio"
	"context"
	"net/http"
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
}

// dbCounters reads the counters from every node; ok is false if a node
// did not answer or lacks them (a kanald from before they existed).
func (r *runner) dbCounters(ctx context.Context) (c dbCounters, ok bool) {
	if r.cl == nil || len(r.cl.urls) == 0 {
		return c, false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, u := range r.cl.urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
		if err != nil {
			return c, false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return c, false
		}
		found := 0
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			var dst *float64
			switch name {
			case "kanal_db_round_trips_total":
				dst = &c.roundTrips
			case "kanal_group_commit_batches_total":
				dst = &c.batches
			case "kanal_group_commit_writes_total":
				dst = &c.writes
			default:
				continue
			}
			if v, err := strconv.ParseFloat(val, 64); err == nil {
				*dst += v
				found++
			}
		}
		resp.Body.Close()
		if found < 3 {
			return c, false
		}
	}
	return c, true
}
