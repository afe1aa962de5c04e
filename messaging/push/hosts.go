package push

import (
	"sync"
	"time"
)

// hostSlots shares the workers among push service hosts. Most devices of a
// deployment sit on two or three services (FCM, Mozilla, Apple); when one of
// them hangs, its jobs must not hold every worker while the others' devices
// wait. Each host may hold at most limit workers, and a host whose request
// timed out gets a single worker until it has gone cooldown without another
// timeout — so the time a bad host can take is bounded, and a recovered host
// gets its share back by itself.
type hostSlots struct {
	limit    int
	cooldown time.Duration

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	busy      int
	slowUntil time.Time // one worker only until then
}

func newHostSlots(limit int, cooldown time.Duration) *hostSlots {
	return &hostSlots{limit: limit, cooldown: cooldown, hosts: map[string]*hostState{}}
}

// acquire takes a worker of host, if it has one free at now. The returned
// done gives it back, saying whether the request timed out.
func (h *hostSlots) acquire(host string, now time.Time) (done func(timedOut bool, at time.Time), ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.hosts[host]
	if st == nil {
		st = &hostState{}
		h.hosts[host] = st
	}
	limit := h.limit
	if now.Before(st.slowUntil) {
		limit = 1
	}
	if st.busy >= limit {
		return nil, false
	}
	st.busy++
	return func(timedOut bool, at time.Time) {
		h.mu.Lock()
		defer h.mu.Unlock()
		st.busy--
		if timedOut {
			st.slowUntil = at.Add(h.cooldown)
		}
		if st.busy == 0 && !at.Before(st.slowUntil) {
			delete(h.hosts, host) // nothing to remember: keep the map small
		}
	}, true
}
