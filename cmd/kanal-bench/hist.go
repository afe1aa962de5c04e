package main

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Histogram counts durations in log-linear buckets, as HdrHistogram does:
// values below 2^subBits microseconds have a bucket each, and every power
// of two above is cut into 2^subBits equal buckets. Any recorded value is
// reported within 1/2^subBits (0.8 %) of itself, whatever its magnitude,
// in a fixed 35 KB — so a p99.9 over millions of samples costs nothing to
// keep, where a sorted slice of samples would cost 8 bytes each.
type Histogram struct {
	counts   [buckets]uint64
	n        uint64
	min, max int64 // µs
	sum      float64
}

const (
	subBits = 7
	maxBits = 40 // 2^40 µs is 12 days: anything longer is clamped
	buckets = (maxBits - subBits + 1) << subBits
)

func bucketOf(us int64) int {
	if us < 0 {
		us = 0
	}
	if us >= 1<<maxBits {
		us = 1<<maxBits - 1
	}
	if us < 1<<subBits {
		return int(us)
	}
	shift := bits.Len64(uint64(us)) - subBits - 1
	mant := us >> shift // in [2^subBits, 2^(subBits+1))
	return (shift+1)<<subBits + int(mant-1<<subBits)
}

// upperOf is the largest value that falls into bucket i.
func upperOf(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	shift := i>>subBits - 1
	mant := int64(i&(1<<subBits-1)) + 1<<subBits
	return (mant+1)<<shift - 1
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[bucketOf(us)]++
	if h.n == 0 || us < h.min {
		h.min = us
	}
	if us > h.max {
		h.max = us
	}
	h.n++
	h.sum += float64(us)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) * time.Microsecond }

// Mean is the average of the recorded values.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum/float64(h.n)) * time.Microsecond
}

// Quantile returns the value at quantile q (0.99 for p99): the upper bound
// of the bucket holding the ceil(q·n)-th smallest value, capped at the
// largest recorded value. Zero for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(upperOf(i), h.max)) * time.Microsecond
		}
	}
	return h.Max()
}

// Recorder is a Histogram safe for concurrent use, plus one histogram per
// interval for the latency-over-time plot.
type Recorder struct {
	mu        sync.Mutex
	start     time.Time
	interval  time.Duration
	total     Histogram
	window    Histogram // since the last Snapshot, for the progress line
	series    []*Histogram
	delivered uint64
}

// NewRecorder returns a Recorder whose series has one histogram per
// interval from start.
func NewRecorder(start time.Time, interval time.Duration) *Recorder {
	return &Recorder{start: start, interval: interval}
}

// Record counts one delivery, received at at, that took d.
func (r *Recorder) Record(at time.Time, d time.Duration) {
	i := int(at.Sub(r.start) / r.interval)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total.Record(d)
	r.window.Record(d)
	r.delivered++
	if i < 0 {
		return
	}
	for len(r.series) <= i {
		r.series = append(r.series, &Histogram{})
	}
	r.series[i].Record(d)
}

// Window returns the histogram since the previous call and starts a new one.
func (r *Recorder) Window() Histogram {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.window
	r.window = Histogram{}
	return w
}

// Total returns a copy of the histogram of every delivery.
func (r *Recorder) Total() Histogram {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// Series returns the per-interval percentiles.
func (r *Recorder) Series() []SeriesPoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]SeriesPoint, len(r.series))
	for i, h := range r.series {
		out[i] = SeriesPoint{T: float64(i+1) * r.interval.Seconds(), Count: h.Count(),
			P50: ms(h.Quantile(0.5)), P99: ms(h.Quantile(0.99)), Max: ms(h.Max())}
	}
	return out
}

// Split divides measured deliveries' latency in three: up to each
// envelope's server time, the moment kanald's group commit stamped it
// before its commit (milliseconds, as the envelope carries it); from there
// until the recipient's read loop had the frame; and from there until the
// envelope was decrypted. The first holds the sender's lag behind its
// schedule, its encryption and frame, and the wait for a group commit; the
// second the commit itself, the wake-up, kanald's frame and the socket;
// the third the device's queue and its decryption. Where a tail comes from
// is then read off them, not guessed. The server time is truncated to the
// millisecond, so the first part reads up to 1 ms short and the second up
// to 1 ms long.
//
// Of the first part, the sender's lag is also counted on its own (Late):
// from the intended send time to the moment the sender began to seal
// it, which is the load generator's own delay, not kanald's. In an open
// loop on shared cores it says how much of a tail the sending side made.
type Split struct {
	mu                      sync.Mutex
	toStore, toRead, toOpen Histogram
	late                    Histogram
}

// Late counts one send's lag: from its intended time until the sender
// began it.
func (s *Split) Late(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.late.Record(d)
}

// Record counts one delivery: intended to send, stamped by the server,
// read from the stream, decrypted.
func (s *Split) Record(intended, stored, read, decrypted time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.toStore.Record(stored.Sub(intended))
	s.toRead.Record(read.Sub(stored))
	s.toOpen.Record(decrypted.Sub(read))
}

// Stats returns the parts' percentiles, nil if nothing was recorded.
func (s *Split) Stats() *splitStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.toStore.Count() == 0 {
		return nil
	}
	st := &splitStats{ToStore: latencyOf(&s.toStore), ToRead: latencyOf(&s.toRead), ToDecrypted: latencyOf(&s.toOpen)}
	if s.late.Count() > 0 {
		l := latencyOf(&s.late)
		st.SenderLate = &l
	}
	return st
}

// splitStats is Split's result.
type splitStats struct {
	ToStore     latencyStats `json:"to_store"`     // intended send → server time
	ToRead      latencyStats `json:"to_read"`      // server time → the frame read by the recipient
	ToDecrypted latencyStats `json:"to_decrypted"` // frame read → envelope decrypted
	// SenderLate, of ToStore, is the sends' lag: intended send → the
	// sender began (per send, not per delivery).
	SenderLate *latencyStats `json:"sender_late,omitempty"`
}

// SeriesPoint is one interval of the latency-over-time series.
type SeriesPoint struct {
	T     float64 `json:"t_s"` // end of the interval, seconds from the start
	Count uint64  `json:"delivered"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
