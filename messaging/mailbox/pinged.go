package mailbox

import (
	"context"
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
func (h *Hub) pingedStream(c *conn) {
	h.pingMu.Lock()
	first := len(h.pinged) == 0
	h.pinged = append(h.pinged, c)
	h.pingMu.Unlock()
	if first {
		time.AfterFunc(pingedDelay, h.lookAtHeads)
	}
}

// lookAtHeads has the pinged streams whose devices' mailboxes hold more
// than they have sent read them.
func (h *Hub) lookAtHeads() {
	h.pingMu.Lock()
	cs := h.pinged
	h.pinged = nil
	h.pingMu.Unlock()
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
