package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// streamCounts are kanald's stream counters, summed over the nodes.
type streamCounts struct {
	// wake and mailbox are kanal_stream_envelopes_total by source: "wake"
	// (the envelope came with its wake-up or fan-out and was written
	// without a database read) and "mailbox" (the stream read it from the
	// mailbox). For a broadcast the difference across the post says how
	// many connected followers' streams could not take the fan-out's copy
	// and read their mailboxes instead — a share that, if it grows with
	// the streams, makes each device dearer.
	wake, mailbox float64
	// ping is kanal_stream_ping_timeouts_total by socket: the streams a
	// node closed with 4008 for an unanswered ping, by which side was
	// slow ("unread": the node; "unsent", "quiet": the device). write is
	// kanal_stream_write_timeouts_total: the streams dropped for a write
	// that did not finish ("unsent": the device; "unread", "quiet": the
	// node).
	ping, write map[string]float64
}

// since is c less an earlier reading. ping and write hold every cause the
// nodes count, zero included, and are nil when none does (a kanald from
// before the counters).
func (c streamCounts) since(o streamCounts) streamCounts {
	return streamCounts{wake: c.wake - o.wake, mailbox: c.mailbox - o.mailbox,
		ping: causesSince(c.ping, o.ping), write: causesSince(c.write, o.write)}
}

func causesSince(now, then map[string]float64) map[string]float64 {
	var d map[string]float64
	for k, v := range now {
		if d == nil {
			d = map[string]float64{}
		}
		d[k] = v - then[k]
	}
	return d
}

// causeCounts is a map of causes as the result reports it (nil stays
// nil).
func causeCounts(c map[string]float64) map[string]int64 {
	if c == nil {
		return nil
	}
	m := make(map[string]int64, len(c))
	for k, v := range c {
		m[k] = int64(v)
	}
	return m
}

func (r *runner) streamedCounts(ctx context.Context) streamCounts {
	c := streamCounts{ping: map[string]float64{}, write: map[string]float64{}}
	if r.cl == nil {
		return c // a server kanal-bench did not start
	}
	for _, u := range r.cl.urls {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
		if err != nil {
			cancel()
			continue
		}
		resp, err := r.net.client().Do(req)
		if err != nil {
			cancel()
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			c.add(sc.Text())
		}
		resp.Body.Close()
		cancel()
	}
	return c
}

// add folds one line of /metrics into c if it is one of its counters.
func (c *streamCounts) add(line string) {
	name, rest, ok := strings.Cut(line, "{")
	if !ok || (name != "kanal_stream_envelopes_total" && name != "kanal_stream_ping_timeouts_total" && name != "kanal_stream_write_timeouts_total") {
		return
	}
	labels, value, ok := strings.Cut(rest, "} ")
	if !ok {
		return
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil {
		return
	}
	key, label, ok := strings.Cut(labels, "=")
	if !ok {
		return
	}
	label = strings.Trim(label, `"`)
	switch {
	case name == "kanal_stream_ping_timeouts_total" && key == "socket":
		c.ping[label] += v
	case name == "kanal_stream_write_timeouts_total" && key == "socket":
		c.write[label] += v
	case key != "source":
	case label == "wake":
		c.wake += v
	case label == "mailbox":
		c.mailbox += v
	}
}
