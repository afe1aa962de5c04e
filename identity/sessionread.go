package identity

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// Every request with a session token reads its session and device rows
// (identify). Read one query per request, that lookup was a third of the
// server's work on a send over HTTP: the query, not the rows, costs. So
// the lookups of concurrent requests share queries: a request queues its
// token's hash, and one query reads the rows of every hash queued when it
// starts.
//
// One query at a time reads them: while it runs, the lookups that come
// wait for the next, which takes them all. Starting a query for each
// lookup that came while another ran (two at a time) had most queries
// read a single session: on PostgreSQL + NATS, sends over HTTP ran
// 0.17-0.20 queries per lookup; one at a time, 0.10, with 13 % less
// PostgreSQL CPU per send and 8 % more sends a second (docs/benchmarks.md,
// "HTTP sends on PostgreSQL: the session reads"). A query that takes
// unusually long (a stalled connection) must not hold every request of
// the node up to sessionReadTimeout, so a second one starts, for the
// lookups waiting and those that come, once a lookup arrives after the
// first has run sessionReadPatience.
//
// Nothing is kept between requests. A lookup is answered only by a query
// that started after the request was queued, so a session revoked (on any
// node: the revocation has committed in the database every node reads)
// before its request came is refused exactly as by a query of its own —
// there is no cache to invalidate, on this node or any other.

// Bounds of the shared session reads.
const (
	// maxSessionBatch is the most hashes one query reads.
	maxSessionBatch = 128
	// sessionReaders is how many queries may run at once: the second
	// only when the first has taken sessionReadPatience.
	sessionReaders = 2
	// sessionReadPatience is how long a query runs before a lookup that
	// comes starts another beside it: far longer than a query of the
	// sessions by their keys takes on a database that answers.
	sessionReadPatience = 20 * time.Millisecond
	// sessionReadTimeout bounds a query run on behalf of several requests,
	// whatever their own contexts say, on PostgreSQL (see query).
	sessionReadTimeout = 10 * time.Second
)

// sessionRow is what identify reads of a session and its device.
type sessionRow struct {
	hash, family, account, device string
	level, expires, devExpires    int64
	revoked                       bool
	devRevoked                    bool
}

// sessionLookup is one request's lookup, waiting for its query.
type sessionLookup struct {
	hash  string
	row   sessionRow
	found bool
	err   error
	done  chan struct{} // closed once row, found and err are set
	// lead gets the batch this request is to read for everyone in it,
	// itself first: a lookup is in one batch, so it gets at most one.
	lead chan []*sessionLookup
}

// sessionReads queues lookups and runs their queries on the goroutines of
// the requests that wait for them: no goroutine of its own to start or
// stop. The zero value is not ready; use newSessionReads.
type sessionReads struct {
	db *db.DB

	mu      sync.Mutex
	waiting []*sessionLookup // in no batch yet
	running int              // batches being read, or handed to a lookup to read
	started time.Time        // when the last batch was handed out
}

func newSessionReads(d *db.DB) *sessionReads { return &sessionReads{db: d} }

// read returns the session with token hash h, found false if there is
// none. ctx ends the wait, not a query other requests share.
func (q *sessionReads) read(ctx context.Context, h string) (sessionRow, bool, error) {
	l := &sessionLookup{hash: h, done: make(chan struct{}), lead: make(chan []*sessionLookup, 1)}
	q.mu.Lock()
	q.waiting = append(q.waiting, l)
	if q.running == 0 || q.running < sessionReaders && time.Since(q.started) >= sessionReadPatience {
		q.running++
		q.handOffLocked()
	}
	q.mu.Unlock()
	for {
		select {
		case <-l.done:
			return l.row, l.found, l.err
		case b := <-l.lead:
			q.runBatch(ctx, b)
		case <-ctx.Done():
			// Batches are handed out under mu, so under mu either one
			// was handed to this lookup (read it: the others in it wait
			// for it), or the lookup is still waiting (it leaves the
			// queue), or it is in a batch another request reads.
			q.mu.Lock()
			select {
			case b := <-l.lead:
				q.mu.Unlock()
				q.runBatch(ctx, b)
				continue
			default:
			}
			if i := slices.Index(q.waiting, l); i >= 0 {
				q.waiting = slices.Delete(q.waiting, i, i+1)
			}
			q.mu.Unlock()
			return sessionRow{}, false, ctx.Err()
		}
	}
}

// handOffLocked takes the next batch out of the queue and hands it to its
// first lookup to read; with nothing waiting, one reader fewer runs.
func (q *sessionReads) handOffLocked() {
	if len(q.waiting) == 0 {
		q.running--
		return
	}
	n := min(len(q.waiting), maxSessionBatch)
	batch := slices.Clone(q.waiting[:n])
	q.waiting = slices.Delete(q.waiting, 0, n)
	q.started = time.Now()
	batch[0].lead <- batch
}

// runBatch reads the sessions of batch, answers them, and hands the next
// batch on, unless another reader runs.
func (q *sessionReads) runBatch(ctx context.Context, batch []*sessionLookup) {
	rows, err := q.query(context.WithoutCancel(ctx), batch)
	for _, l := range batch {
		l.row, l.found = rows[l.hash]
		l.err = err
		close(l.done)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running > 1 {
		// The second reader (started beside a slow one) stops once its
		// batch is read: the one left takes the queue.
		q.running--
		return
	}
	q.handOffLocked()
}

// query reads the sessions of batch in one statement. The statement's
// parameter count is rounded up to a power of two (the last hash
// repeated), so a handful of statements serve every batch size. ctx
// never ends (runBatch detaches it from the requests').
//
// On PostgreSQL the query may stall with its connection, so it ends at
// sessionReadTimeout. On SQLite it runs with no deadline: a read there
// waits for nothing but SQLite's own locks, which its busy timeout
// (10 s, as long) bounds, and a context that can end costs each query
// two goroutines that watch it, database/sql's and the driver's: 10 to
// 17 µs of CPU on a lookup whose query takes 13 to 14
// (BenchmarkSessionRead, "covering" against "covering-timeout").
func (q *sessionReads) query(ctx context.Context, batch []*sessionLookup) (map[string]sessionRow, error) {
	if q.db.Dialect() == db.Postgres {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, sessionReadTimeout)
		defer cancel()
	}
	n := 1
	for n < len(batch) {
		n *= 2
	}
	args := make([]any, n)
	for i := range args {
		args[i] = batch[min(i, len(batch)-1)].hash
	}
	rs, err := q.db.Query(ctx, sessionQuery(q.db.Dialect(), n), args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := make(map[string]sessionRow, len(batch))
	for rs.Next() {
		var r sessionRow
		var revoked int
		var devRevoked sql.NullInt64
		if err := rs.Scan(&r.hash, &r.family, &r.account, &r.device, &r.level, &r.expires, &revoked, &devRevoked, &r.devExpires); err != nil {
			return nil, err
		}
		r.revoked, r.devRevoked = revoked != 0, devRevoked.Valid
		out[r.hash] = r
	}
	return out, rs.Err()
}

// sessionsJoin is the FROM clause of the reads of a session with its
// device by the token's hash. On SQLite it names the covering indexes of
// migration 0007, which answer those reads without touching either
// table's rows; without statistics the planner would take the primary
// keys' unique indexes and then read each row.
func sessionsJoin(d db.Dialect) string {
	if d == db.SQLite {
		return `identity_sessions s INDEXED BY identity_sessions_read
			JOIN identity_devices d INDEXED BY identity_devices_read ON d.id = s.device_id`
	}
	return `identity_sessions s JOIN identity_devices d ON d.id = s.device_id`
}

// sessionQueryKey names a statement of sessionQuery.
type sessionQueryKey struct {
	dialect db.Dialect
	n       int
}

var sessionQueries sync.Map // sessionQueryKey → statement

// sessionQuery is the statement that reads n sessions by token hash.
func sessionQuery(d db.Dialect, n int) string {
	k := sessionQueryKey{d, n}
	if s, ok := sessionQueries.Load(k); ok {
		return s.(string)
	}
	var b strings.Builder
	b.WriteString(`SELECT s.token_hash, s.family, s.account_id, s.device_id, s.level, s.expires_at, s.revoked, d.revoked_at, d.expires_at
			FROM ` + sessionsJoin(d) + ` WHERE s.token_hash IN (`)
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i))
	}
	b.WriteString(")")
	s, _ := sessionQueries.LoadOrStore(k, b.String())
	return s.(string)
}
