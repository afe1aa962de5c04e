package messaging

import (
	"sync"
	"time"
)

// sendLimiter counts sends per device in fixed windows, in this node's
// memory. Counting in the database held the limit exactly across nodes
// but cost one commit per send — more than the send itself once sends
// share a group commit. With n nodes behind a load balancer a device may
// reach up to n times the limit if its requests are spread over all of
// them; a device's stream and its sends usually stay on one node, and the
// limit is a guard against floods, not a quota.
type sendLimiter struct {
	limit  int
	window time.Duration

	mu     sync.Mutex
	start  int64 // unix seconds of the current window
	counts map[string]int
}

func newSendLimiter(limit int, window time.Duration) *sendLimiter {
	return &sendLimiter{limit: limit, window: window, counts: map[string]int{}}
}

// allow counts one send of device at now, and refuses it with a
// *RateLimitError once the device has used up its window.
func (l *sendLimiter) allow(device string, now time.Time) error {
	win := int64(l.window / time.Second)
	start := now.Unix() / win * win
	l.mu.Lock()
	defer l.mu.Unlock()
	if start != l.start {
		// A new window: forget the old one, which also bounds the map by
		// the devices that sent within one window.
		l.start, l.counts = start, map[string]int{}
	}
	l.counts[device]++
	if l.counts[device] > l.limit {
		return &RateLimitError{RetryAfter: time.Unix(start+win, 0).Sub(now), sends: l.limit}
	}
	return nil
}

// refund takes back one send allow counted for device in the window of
// now: a retry that was answered with its first send's result.
func (l *sendLimiter) refund(device string, now time.Time) {
	win := int64(l.window / time.Second)
	start := now.Unix() / win * win
	l.mu.Lock()
	defer l.mu.Unlock()
	if start == l.start && l.counts[device] > 0 {
		l.counts[device]--
	}
}
