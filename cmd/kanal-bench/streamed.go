package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// streamedCounts sums, over the nodes, kanald's
// kanal_stream_envelopes_total by source: "wake" (the envelope came with
// its wake-up or fan-out and was written without a database read) and
// "mailbox" (the stream read it from the mailbox). For a broadcast the
// difference across the post says how many connected followers' streams
// could not take the fan-out's copy and read their mailboxes instead — a
// share that, if it grows with the streams, makes each device dearer.
func (r *runner) streamedCounts(ctx context.Context) (wake, mailbox float64) {
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
			line := sc.Text()
			rest, ok := strings.CutPrefix(line, "kanal_stream_envelopes_total{")
			if !ok {
				continue
			}
			labels, value, ok := strings.Cut(rest, "} ")
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				continue
			}
			switch {
			case strings.Contains(labels, `source="wake"`):
				wake += v
			case strings.Contains(labels, `source="mailbox"`):
				mailbox += v
			}
		}
		resp.Body.Close()
		cancel()
	}
	return wake, mailbox
}
