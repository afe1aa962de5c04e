package mailbox

import (
	"context"
	"sync"
	"time"
)

// After each answered ping a stream makes sure no envelope waits in its
// mailbox unsent — one whose wake-up was lost. It used to read its
// mailbox: one query per stream per PingInterval, nearly always empty,
// and on a fresh goroutine whose stack grew through the database driver's
// each time. At 20,000 streams on a node that is 667 reads a second. Now
// the node gathers the streams pinged within pingedDelay and reads their
// devices' heads, one statement per 256 devices; only a stream whose
// device's last sequence number is past what the stream has sent reads
// its mailbox. A look that fails makes every stream of it read, as
// before.

// pingedDelay is how long the pinged streams are gathered before their
// heads are read: a lost wake-up's envelope waits at most PingInterval
// plus this.
const pingedDelay = 250 * time.Millisecond

// pingedStream queues c for the next look at the heads.
func (h *Hub) pingedStream(c *conn) { h.pinged.add(c, pingedDelay, h.lookAtHeads) }

// lookAtHeads has the pinged streams whose devices' mailboxes hold more
// than they have sent read them.
func (h *Hub) lookAtHeads() {
	cs := h.pinged.take()
	seen := make(map[string]bool, len(cs))
	devices := make([]string, 0, len(cs))
	for _, c := range cs {
		if !seen[c.device] {
			seen[c.device] = true
			devices = append(devices, c.device)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.o.WriteTimeout)
	last, err := h.o.Store.LastSeqs(ctx, devices)
	cancel()
	if err != nil {
		h.o.Logger.Warn("mailbox: heads of pinged streams not read; the streams read their mailboxes", "streams", len(cs), "err", err)
	}
	h.headLooks.Add(uint64(len(cs)))
	for _, c := range cs {
		c.mu.Lock()
		behind := err != nil || last[c.device] > c.cursor
		if behind {
			c.fetch, c.carried = true, nil
			// Read before the fetch this asks for: if that fetch drains
			// the mailbox, the cursor moves up to it (conn.head).
			c.head = max(c.head, last[c.device])
		}
		c.mu.Unlock()
		if behind {
			c.signal()
		}
	}
}

// gathered holds what comes within a delay of the first item, to be
// handled together: the pinged streams' look at their heads, the
// streams' session rechecks.
type gathered[T any] struct {
	mu    sync.Mutex
	items []T
}

// add appends x; the first item since the last take schedules handle
// after delay, which takes them all.
func (g *gathered[T]) add(x T, delay time.Duration, handle func()) {
	g.mu.Lock()
	first := len(g.items) == 0
	g.items = append(g.items, x)
	g.mu.Unlock()
	if first {
		time.AfterFunc(delay, handle)
	}
}

// take returns what was added and empties g.
func (g *gathered[T]) take() []T {
	g.mu.Lock()
	defer g.mu.Unlock()
	items := g.items
	g.items = nil
	return items
}
