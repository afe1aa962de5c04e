package main

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Where a broadcast's last deliveries came from. The figure is the last
// follower's delivery; when it comes well after the rest, these say
// whether one node's followers, or one stream process's, were the last.

// ShareTail is the deliveries of one node's devices, or of one stream
// process's, and when the last of them arrived.
type ShareTail struct {
	Of        string  `json:"of"` // "node0", "node1", …; "proc1", "proc2", …
	Delivered int     `json:"delivered"`
	LastS     float64 `json:"last_s"` // after the post began
}

// tails counts a broadcast's deliveries by the device's node (device n
// is on node n mod nodes, as devices are assigned) and by the stream
// process that held the device's stream (0: this process).
type tails struct {
	mu    sync.Mutex
	nodes []tailCount
	procs []tailCount // index 0: streams held by kanal-bench itself
}

type tailCount struct {
	n    int
	last time.Time
}

func newTails(nodes, procs int) *tails {
	return &tails{nodes: make([]tailCount, max(nodes, 1)), procs: make([]tailCount, procs+1)}
}

// add counts one delivery to device n, held by process proc.
func (t *tails) add(n, proc int, received time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[n%len(t.nodes)].see(received)
	t.procs[min(max(proc, 0), len(t.procs)-1)].see(received)
}

func (c *tailCount) see(received time.Time) {
	c.n++
	if received.After(c.last) {
		c.last = received
	}
}

// shares returns the nodes', then the processes' counts, with the last
// delivery's time after start; shares without deliveries are left out.
func (t *tails) shares(start time.Time) []ShareTail {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []ShareTail
	add := func(of string, c tailCount) {
		if c.n > 0 {
			out = append(out, ShareTail{Of: of, Delivered: c.n, LastS: c.last.Sub(start).Seconds()})
		}
	}
	for i, c := range t.nodes {
		add(fmt.Sprintf("node%d", i), c)
	}
	for i, c := range t.procs {
		if i == 0 {
			add("kanal-bench", c)
		} else {
			add(fmt.Sprintf("proc%d", i), c)
		}
	}
	return out
}

// tailRow is the text of shares: "node0 5.91s (16,667), …".
func tailRow(ss []ShareTail) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = fmt.Sprintf("%s %.2fs (%d)", s.Of, s.LastS, s.Delivered)
	}
	return strings.Join(parts, ", ")
}
