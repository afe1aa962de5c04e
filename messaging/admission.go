package messaging

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
)

// Admission control for sends. The group commit refuses a send when its
// own queue is deep (db.Batcher.TryDoMerged), but under overload a send
// waits before it gets there too: for the CPU, for a database connection
// to check the session, for its body to be decoded. What bounds a send's
// latency is the number of sends in flight, from the request's arrival
// to its answer: by Little's law, sends in flight are throughput times
// latency. sendGate admits a send while fewer are in flight than the
// sends answered per second (measured) times Options.Admission.MaxDelay,
// and never refuses while fewer than MinQueue are in flight; so a send
// is refused only when the ones in flight will take longer than MaxDelay
// to answer. A refusal costs no database work at all.
type sendGate struct {
	a        db.Admission
	inflight atomic.Int64
	refused  atomic.Uint64

	mu    sync.Mutex
	start time.Time // of the current measuring window
	n     int       // sends answered in it
	rate  float64   // sends answered per second, over the last windows
}

// gateWindow is how often the measured throughput is updated; each
// window weighs 30 %, so the figure follows the last few seconds.
const gateWindow = 500 * time.Millisecond

func newSendGate(a db.Admission) *sendGate {
	if a.MaxDelay <= 0 && a.MaxQueue <= 0 {
		return nil
	}
	if a.MinQueue < 1 {
		a.MinQueue = DefaultMinSendsInFlight
	}
	return &sendGate{a: a}
}

// enter admits one send, or refuses it with a *db.OverloadError; leave
// must be called once it is answered.
func (g *sendGate) enter() (leave func(), err error) {
	if g == nil {
		return func() {}, nil
	}
	n := int(g.inflight.Add(1)) - 1 // the others
	if err := g.refuse(n); err != nil {
		g.inflight.Add(-1)
		return nil, err
	}
	return func() {
		g.inflight.Add(-1)
		g.mu.Lock()
		g.n++
		g.roll(time.Now())
		g.mu.Unlock()
	}, nil
}

// check refuses a send that would be refused if it entered now, without
// taking a place: it lets a request be turned away before any work is
// done for it (its session, its body), while the place itself is taken
// by enter only once the body is in.
func (g *sendGate) check() error {
	if g == nil {
		return nil
	}
	return g.refuse(int(g.inflight.Load()))
}

// refuse returns the *db.OverloadError for a send that finds n others in
// flight, or nil when it may go on.
func (g *sendGate) refuse(n int) error {
	rate := g.throughput(time.Now())
	bound := g.a.MaxQueue
	if bound <= 0 {
		bound = max(g.a.MinQueue, int(rate*g.a.MaxDelay.Seconds()))
	}
	if n < bound {
		return nil
	}
	g.refused.Add(1)
	wait := time.Second
	if rate > 0 {
		wait = max(wait, time.Duration(float64(n)/rate*float64(time.Second)))
	}
	return &db.OverloadError{Queued: n, Bound: bound, RetryAfter: min(wait, time.Minute)}
}

// throughput returns the measured sends answered per second; a window
// in which none was answered (idle, or stalled) brings it down.
func (g *sendGate) throughput(now time.Time) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(now)
	return g.rate
}

func (g *sendGate) roll(now time.Time) {
	if g.start.IsZero() {
		g.start = now
		return
	}
	if el := now.Sub(g.start); el >= gateWindow {
		r := float64(g.n) / el.Seconds()
		g.rate = 0.7*g.rate + 0.3*r
		g.start, g.n = now, 0
	}
}

// SendStats is what the send path reports about admission control.
type SendStats struct {
	InFlight   int     // sends between arrival and answer now
	Throughput float64 // sends answered per second, measured
	Refused    uint64  // sends refused as overloaded by the sends in flight
}

// SendStats returns the send path's admission figures.
func (s *Service) SendStats() SendStats {
	if s.gate == nil {
		return SendStats{}
	}
	return SendStats{InFlight: int(s.gate.inflight.Load()), Throughput: s.gate.throughput(time.Now()), Refused: s.gate.refused.Load()}
}

// admitSends puts the send gate's check in front of h: while sends are
// over the bound, a send is answered 503 overloaded with Retry-After
// before its session is checked or its body read. The place in flight is
// taken later, in handleSend, once the body is in: a client that sends its
// body slowly (up to the server's read timeout), with or without a valid
// session, holds no place that an honest send then finds taken.
func (s *Service) admitSends(h http.Handler) http.Handler {
	if s.gate == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.gate.check(); err != nil {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(err.(*db.OverloadError).RetryAfter)))
			web.WriteProblem(w, r, problem(err))
			return
		}
		h.ServeHTTP(w, r)
	})
}
