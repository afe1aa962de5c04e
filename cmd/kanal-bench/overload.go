package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The overload scenario: find kanald's maximum with a closed loop (or take
// it from -max-rate), drive an open loop at -overload times that rate for
// -duration, then stop sending and wait until every device has every
// envelope whose send was answered "sent". Each measured message carries
// its sender's sequence number, so every send is followed from its answer
// to its delivery: a send the server refused (429, 503) is not a loss — the
// sender was told — but one it acknowledged and never delivered is.
//
// Devices reconnect when the server closes their stream (a socket that
// stalls under the load is closed with 4008 or dropped), as clients do, and
// catch up from their mailbox.

const (
	kindOverload = 3
	// overloadHead: kind, intended time, the sender's sequence number.
	overloadHead = payloadHead + 8
)

// Answers a tracked send can get.
const (
	sendPending    = iota // posted, no answer yet
	sendSent              // 201: stored
	sendRefused           // 429 or 503: the sender was told to come back
	sendFailed            // another error answer
	sendUnanswered        // no answer: timeout or connection error; may or may not be stored
)

type overloadKey struct {
	from string
	seq  uint64
}

type overloadSend struct {
	status     uint8
	deliveries uint32
}

// overloadTracker follows every send of the overload phase.
type overloadTracker struct {
	rec *Recorder

	mu      sync.Mutex
	sends   map[overloadKey]*overloadSend
	unknown uint64 // deliveries of a (sender, seq) never sent: must stay 0
	// lastSent is when the last envelope whose send was answered "sent"
	// arrived.
	lastSent time.Time
}

// overloadStats is what the overload scenario reports.
type overloadStats struct {
	MaxRate      float64 `json:"max_rate"`       // envelopes/s the closed loop delivered (or -max-rate)
	MaxMeasured  bool    `json:"max_measured"`   // the maximum was measured, not given
	Factor       float64 `json:"factor"`         // the open loop ran at this multiple of it
	OfferedRate  float64 `json:"offered_rate"`   // envelopes/s scheduled
	PostedRate   float64 `json:"posted_rate"`    // envelopes/s actually posted (the in-flight cap may hold sends back)
	MaxInFlight  int     `json:"max_in_flight"`  // sends awaiting an answer at most
	Posted       uint64  `json:"posted"`         // sends made
	Sent         uint64  `json:"sent"`           // answered 201
	Refused      uint64  `json:"refused"`        // answered 429 or 503
	Failed       uint64  `json:"failed"`         // answered with another error
	Unanswered   uint64  `json:"unanswered"`     // no answer (timeout, connection error)
	Delivered    uint64  `json:"delivered"`      // distinct sends delivered (of any answer)
	DeliveredOK  uint64  `json:"delivered_sent"` // of the sent ones
	Lost         uint64  `json:"lost"`           // sent and never delivered: must be 0
	Duplicates   uint64  `json:"duplicates"`     // a send decrypted more than once
	Redelivered  uint64  `json:"redelivered"`    // envelope ids sent to a device again (after a reconnect), taken once
	RefusedButIn uint64  `json:"refused_delivered"`
	Unknown      uint64  `json:"unknown"`
	// SendS is how long the sending took, from the first send to the last
	// answer; CatchUpS from then until the last sent envelope arrived
	// (negative: it did not, within -catch-up).
	SendS       float64           `json:"send_s"`
	CatchUpS    float64           `json:"catch_up_s"`
	CaughtUp    bool              `json:"caught_up"`
	Reconnects  map[string]uint64 `json:"reconnects,omitempty"`
	RSSStartMiB float64           `json:"rss_start_mib"`    // kanald before the open loop
	RSSPeakMiB  float64           `json:"rss_peak_mib"`     // its peak while sending
	RSSSendMiB  float64           `json:"rss_send_end_mib"` // when the last send was answered
	RSSCatchMiB float64           `json:"rss_catch_up_peak_mib"`
	RSSEndMiB   float64           `json:"rss_end_mib"` // once every device caught up
}

func newOverloadTracker(rec *Recorder) *overloadTracker {
	return &overloadTracker{rec: rec, sends: map[overloadKey]*overloadSend{}}
}

func (t *overloadTracker) add(from string, seq uint64) {
	t.mu.Lock()
	t.sends[overloadKey{from, seq}] = &overloadSend{}
	t.mu.Unlock()
}

func (t *overloadTracker) answer(from string, seq uint64, status uint8) {
	t.mu.Lock()
	t.sends[overloadKey{from, seq}].status = status
	t.mu.Unlock()
}

// delivered records a decrypted overload payload.
func (t *overloadTracker) delivered(from string, pt []byte, intended, received time.Time) {
	if len(pt) < overloadHead {
		t.mu.Lock()
		t.unknown++
		t.mu.Unlock()
		return
	}
	seq := binary.BigEndian.Uint64(pt[payloadHead:])
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sends[overloadKey{from, seq}]
	if s == nil {
		t.unknown++
		return
	}
	s.deliveries++
	if s.deliveries == 1 {
		t.rec.Record(received, received.Sub(intended))
	}
	if s.status == sendSent || s.status == sendPending {
		// A delivery can come before its send's answer.
		if received.After(t.lastSent) {
			t.lastSent = received
		}
	}
}

// missing counts the sends answered "sent" that have not arrived yet.
func (t *overloadTracker) missing() (n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.sends {
		if s.status == sendSent && s.deliveries == 0 {
			n++
		}
	}
	return n
}

func (t *overloadTracker) tally(st *overloadStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st.Posted = uint64(len(t.sends))
	for _, s := range t.sends {
		switch s.status {
		case sendSent:
			st.Sent++
			if s.deliveries == 0 {
				st.Lost++
			} else {
				st.DeliveredOK++
			}
		case sendRefused:
			st.Refused++
			if s.deliveries > 0 {
				st.RefusedButIn++
			}
		case sendFailed:
			st.Failed++
		default:
			st.Unanswered++
		}
		if s.deliveries > 0 {
			st.Delivered++
			st.Duplicates += uint64(s.deliveries - 1)
		}
	}
	st.Unknown = t.unknown
}

// answerOf classifies a send's outcome.
func answerOf(err error) uint8 {
	var rl *errRateLimited
	var se *errSendStatus
	switch {
	case err == nil:
		return sendSent
	case errors.As(err, &rl):
		return sendRefused
	case errors.As(err, &se) && se.status == http.StatusServiceUnavailable:
		return sendRefused
	case errors.As(err, &se):
		return sendFailed
	}
	return sendUnanswered
}

func overloadPayload(seq uint64, intended time.Time, size int) []byte {
	b := payload(kindOverload, intended, size)
	binary.BigEndian.PutUint64(b[payloadHead:], seq)
	return b
}

// overload: see the top of this file.
func (r *runner) overload(ctx context.Context) error {
	senders, err := r.pairs(ctx)
	if err != nil {
		return err
	}
	st := &overloadStats{MaxRate: r.o.maxRate, Factor: r.o.factor, MaxInFlight: r.o.maxInFlight}
	r.res.Overload = st
	if st.MaxRate == 0 {
		fmt.Fprintf(r.stderr, "kanal-bench: finding the maximum: closed loop for %s\n", r.o.probe)
		if st.MaxRate, err = r.findMax(ctx, senders); err != nil {
			return err
		}
		st.MaxMeasured = true
	}
	st.OfferedRate = st.Factor * st.MaxRate
	perSender := st.OfferedRate / float64(len(senders))
	fmt.Fprintf(r.stderr, "kanal-bench: maximum %.0f envelopes/s; open loop at %.0f/s (%.2f/s per device) for %s\n",
		st.MaxRate, st.OfferedRate, perSender, r.o.duration)

	_, rss0 := r.serverSample()
	st.RSSStartMiB = mib(rss0)
	r.maxRSS.Store(0)
	cpu0, _ := r.serverSample()
	counts0 := r.streamedCounts(ctx)
	self0 := selfCPU()
	start := time.Now()
	rec := NewRecorder(start, time.Second)
	r.rec.Store(rec)
	r.track = newOverloadTracker(rec)
	end := start.Add(r.o.duration)
	interval := max(time.Duration(float64(time.Second)/perSender), time.Microsecond)
	var answered, sentOK atomic.Uint64
	stopProgress := r.progress(func() string {
		_, rss := r.serverSample()
		return fmt.Sprintf("%5.1fs  posted %d  answered %d (sent %d)  missing %d  server rss %.0f MiB",
			time.Since(start).Seconds(), r.track.posted(), answered.Load(), sentOK.Load(), r.track.missing(), mib(rss))
	})
	sem := make(chan struct{}, r.o.maxInFlight)
	var posts, loops sync.WaitGroup
	for i, s := range senders {
		loops.Add(1)
		go func() {
			defer loops.Done()
			next := start.Add(interval * time.Duration(i) / time.Duration(len(senders)))
			for seq := uint64(1); next.Before(end); seq++ {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				// Sealed in order, posted without waiting for the
				// previous answer: the ratchet takes messages out of order.
				o, err := s.d.seal(s.to, s.recips, overloadPayload(seq, next, r.o.size))
				next = next.Add(interval)
				if err != nil {
					r.errs.add("seal: " + errKind(err))
					continue
				}
				r.track.add(s.d.id, seq)
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				posts.Add(1)
				go func() {
					defer posts.Done()
					err := s.d.post(ctx, o)
					<-sem
					a := answerOf(err)
					if a == sendFailed || a == sendUnanswered {
						r.errs.add(errKind(err))
					}
					r.track.answer(s.d.id, seq, a)
					answered.Add(1)
					if a == sendSent {
						sentOK.Add(1)
					}
				}()
			}
		}()
	}
	loops.Wait()
	postEnd := time.Now()
	posts.Wait()
	sendEnd := time.Now()
	st.SendS = sendEnd.Sub(start).Seconds()
	st.PostedRate = float64(r.track.posted()) / postEnd.Sub(start).Seconds()
	_, rss := r.serverSample()
	st.RSSSendMiB, st.RSSPeakMiB = mib(rss), mib(r.maxRSS.Load())
	r.maxRSS.Store(0)

	deadline := sendEnd.Add(r.o.catchUp)
	for r.track.missing() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	stopProgress()
	caught := time.Now()
	cpu1, rssEnd := r.serverSample()
	st.RSSCatchMiB, st.RSSEndMiB = mib(max(r.maxRSS.Load(), rssEnd)), mib(rssEnd)
	r.track.tally(st)
	st.Redelivered = r.redelivered.Load()
	st.Reconnects = r.reconnects.snapshot()
	counts := r.streamedCounts(ctx).since(counts0)
	r.res.PingTimeouts, r.res.WriteTimeouts = causeCounts(counts.ping), causeCounts(counts.write)
	st.CaughtUp = st.Lost == 0
	r.track.mu.Lock()
	last := r.track.lastSent
	r.track.mu.Unlock()
	if st.CaughtUp {
		st.CatchUpS = max(last.Sub(sendEnd), 0).Seconds()
	} else {
		st.CatchUpS = -1
	}

	res := r.res
	h := rec.Total()
	span := max(last.Sub(start), sendEnd.Sub(start))
	res.DurationS = span.Seconds()
	res.Sent, res.Expected, res.Delivered = st.Sent, st.Sent, st.DeliveredOK
	res.SendsPerS = float64(st.Posted) / postEnd.Sub(start).Seconds()
	res.EnvelopesPerS = float64(st.Delivered) / span.Seconds()
	res.Latency = latencyOf(&h)
	res.Series = rec.Series()
	res.Errors = r.errs.snapshot()
	if len(r.pids) > 0 {
		cpu := cpu1 - cpu0
		res.Server = &serverStats{RSSMiB: st.RSSEndMiB, PeakRSSMiB: max(st.RSSPeakMiB, st.RSSCatchMiB),
			CPUSeconds: cpu.Seconds(), CPUCores: cpu.Seconds() / caught.Sub(start).Seconds()}
		if st.Delivered > 0 {
			res.Server.CPUPerEnvelopeUS = float64(cpu.Microseconds()) / float64(st.Delivered)
		}
	}
	res.BenchCPUCores = (selfCPU() - self0).Seconds() / caught.Sub(start).Seconds()
	res.LoadAfter = loadAvg()
	return ctx.Err()
}

func (t *overloadTracker) posted() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sends)
}

// findMax runs the senders in a closed loop for -probe and returns the
// envelopes per second delivered over its last two thirds (the first third
// warms up), then waits for the probe's envelopes to arrive.
func (r *runner) findMax(ctx context.Context, senders []sender) (float64, error) {
	start := time.Now()
	r.rec.Store(NewRecorder(start, time.Second))
	end := start.Add(r.o.probe)
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := r.sendOnce(ctx, s.d, s.to, s.recips, payload(kindMeasured, time.Now(), r.o.size)); err != nil {
					if ctx.Err() == nil {
						r.errs.add("probe: " + errKind(err))
					}
					continue
				}
				r.expected.Add(uint64(len(s.recips)))
			}
		}()
	}
	third := start.Add(r.o.probe / 3)
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Until(third)):
	}
	d0, t0 := r.delivered.Load(), time.Now()
	wg.Wait()
	d1, t1 := r.delivered.Load(), time.Now()
	rate := float64(d1-d0) / t1.Sub(t0).Seconds()
	deadline := time.Now().Add(r.o.drain)
	for r.delivered.Load() < r.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if rate <= 0 {
		return 0, fmt.Errorf("finding the maximum: nothing delivered in %s (errors: %v)", r.o.probe, r.errs.snapshot())
	}
	return rate, ctx.Err()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
