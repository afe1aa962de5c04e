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
// plus this and the wake-up's grace (below).
const pingedDelay = 250 * time.Millisecond

// A head past what a stream has sent is not yet a lost wake-up: the look
// can fall between an append's commit and its wake-up's arrival, which
// under a broadcast's load takes a second or more. Read at once, the
// stream fetched what the wake-up was bringing — 300 to 4,200 of 50,000
// followers did in a broadcast — and the carried envelope was dropped.
// Such a stream waits wakeGrace instead and reads only if its pump has
// neither sent nor been offered the envelopes up to the head it was seen
// behind. maxWakeGrace is the grace at the default PingInterval; shorter
// intervals (tests) get a tenth of theirs.
const maxWakeGrace = 3 * time.Second

// pingedStream queues c for the next look at the heads.
func (h *Hub) pingedStream(c *conn) { h.pinged.add(c, pingedDelay, h.lookAtHeads) }

// behindStream is a stream found behind its device's head.
type behindStream struct {
	c    *conn
	head int64
}

// lookAtHeads has the pinged streams whose devices' mailboxes hold more
// than they have sent, and were not woken for it within the grace, read
// them.
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
	var late []behindStream
	for _, c := range cs {
		if err != nil {
			c.readUpTo(0)
			continue
		}
		c.mu.Lock()
		ahead := c.hasOrWillSend(last[c.device])
		c.mu.Unlock()
		if !ahead {
			late = append(late, behindStream{c, last[c.device]})
		}
	}
	if len(late) > 0 {
		time.AfterFunc(h.o.wakeGrace, func() {
			for _, b := range late {
				b.c.mu.Lock()
				ahead := b.c.stopped || b.c.hasOrWillSend(b.head)
				b.c.mu.Unlock()
				if !ahead {
					h.lateReads.Add(1)
					b.c.readUpTo(b.head)
				}
			}
		})
	}
}

// hasOrWillSend says whether the stream has sent its device's envelopes
// up to head, or holds wake-ups that carry them to its pump, or reads its
// mailbox already. c.mu is held.
func (c *conn) hasOrWillSend(head int64) bool {
	if c.cursor >= head || c.fetch {
		return true
	}
	for _, w := range c.carried {
		for _, e := range w.envs {
			if e.Recipient == c.device && e.Seq >= head {
				return true
			}
		}
	}
	return false
}

// readUpTo has the pump read the mailbox, which holds envelopes up to
// head at least (0 when unknown).
func (c *conn) readUpTo(head int64) {
	c.mu.Lock()
	c.fetch, c.carried = true, nil
	// Read before the fetch this asks for: if that fetch drains the
	// mailbox, the cursor moves up to it (conn.head).
	c.head = max(c.head, head)
	c.mu.Unlock()
	c.signal()
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
