package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Batcher is group commit: concurrent callers' transaction bodies run
// together in one database transaction, so they share one commit and one
// fsync. A body that fails does not fail the others: see run.
//
// This is what makes durable sends cheap: with one fsync per send, a disk
// sets the ceiling on sends per second; with one per batch, the ceiling
// rises with the number of senders waiting.
type Batcher struct {
	d       *DB
	reqs    chan *batchReq
	max     int
	wg      sync.WaitGroup
	closeMu sync.RWMutex
	closed  bool

	admit Admission
	// queued counts the bodies queued and not yet answered, the one
	// being committed included.
	queued atomic.Int64
	// rate is the measured commit capacity in bodies per second
	// (float64 bits; 0 until the first batch), see measure.
	rate atomic.Uint64
	// refused counts TryDoMerged's refusals.
	refused atomic.Uint64
	// batches and bodies count the transactions run and the bodies
	// they carried (a batch run again body by body counts once).
	batches, bodies atomic.Uint64
	// obs, if set, is told of every batch (see Observe).
	obs atomic.Pointer[BatchObserver]
	// interval is the least time between the starts of two batches
	// while writers are concurrent (see SetInterval), in nanoseconds.
	interval atomic.Int64
}

// SetInterval makes batches at least d apart while writers are concurrent:
// when the last batch carried more than one body and started less than d
// ago, the next waits for the rest of d, taking what arrives meanwhile,
// unless it fills first. A lone writer, whose batches carry one body, is
// never held; nor is a busy batcher, whose commits take longer than d.
//
// Between those, under a moderate load, it trades a little latency for
// much less work: a commit costs about the same whatever it carries (its
// pages, its sync, its statements), so back-to-back commits of a few
// bodies each cost several times more per body than the closed loop's
// full ones (docs/benchmarks.md, "Group commits at least 2 ms apart").
// Zero, the default, waits never.
func (b *Batcher) SetInterval(d time.Duration) { b.interval.Store(int64(max(d, 0))) }

// A BatchObserver is told how long each group commit took and how long
// its bodies waited for it: where a send's time before its answer goes.
// Its functions run on the batch worker, after the batch's callers have
// their answers, and must be quick.
type BatchObserver struct {
	// Batch is called once per batch: its bodies and the time from its
	// start to its commit (or to the last body's own transaction, if it
	// ran body by body).
	Batch func(bodies int, commit time.Duration)
	// Waited is called once per body: the time from its queueing to the
	// start of the batch that carried it, which is the wait behind the
	// commits before it.
	Waited func(d time.Duration)
	// Failed is called with the error of each attempt of a batch's
	// shared transaction (or pipeline) that failed, before its bodies run
	// again: a body's refusal, or a deadlock that should not happen.
	Failed func(err error)
}

// Observe has o told of every batch from now on.
func (b *Batcher) Observe(o BatchObserver) { b.obs.Store(&o) }

// Admission is how TryDoMerged decides that the queue is too deep to take
// more. The bound on queued bodies is the measured commit capacity times
// MaxDelay — the queue a body admitted now waits behind takes about
// MaxDelay to commit — but never below MinQueue, so that a few full
// batches are always taken while the capacity is measured; MaxQueue, if
// set, replaces the measured bound. Do and DoMerged are never refused:
// what they queue (acknowledgements, which drain mailboxes) counts
// toward the depth all the same.
type Admission struct {
	MaxDelay time.Duration // zero: TryDoMerged refuses nothing
	MinQueue int           // zero: four batches
	MaxQueue int           // > 0: a fixed bound instead of the measured one
}

// OverloadError is TryDoMerged's refusal; it wraps ErrOverloaded. Nothing
// of the refused body ran. RetryAfter is about how long the bodies
// queued now take to commit.
type OverloadError struct {
	Queued     int           // bodies queued when the body was refused
	Bound      int           // the bound they reached
	RetryAfter time.Duration // at least a second
}

func (e *OverloadError) Error() string {
	return fmt.Sprintf("db: group commit overloaded: %d bodies queued, bound %d", e.Queued, e.Bound)
}
func (e *OverloadError) Unwrap() error { return ErrOverloaded }

// ErrOverloaded is what an *OverloadError wraps.
var ErrOverloaded = errors.New("db: group commit overloaded")

type batchReq struct {
	ctx  context.Context
	at   time.Time // when it was queued
	fn   func(tx *sql.Tx) error
	done chan error
	// merge and item, for DoMerged: the batch hands every item of one
	// Merger to it at once.
	merge Merger
	item  any
	// locks, for DoLocked: the rows fn writes (see Locks).
	locks func(*Locks)
}

// A Merger writes the work of many callers of one kind in a few
// statements rather than a few per caller: on PostgreSQL every statement
// is a round trip from the one batch worker, and on SQLite each has its
// own setup cost. DoMerged queues an item for it.
type Merger interface {
	// MergeTx writes items (in the order they were queued) in tx. If it
	// fails, the batch's transaction is rolled back and the batch runs
	// again in halves, MergeTx writing fewer items each time, down to each
	// item alone through the fn it was queued with; so MergeTx must have
	// no effects outside tx either.
	MergeTx(ctx context.Context, tx *sql.Tx, items []any) error
}

// ErrBatcherClosed is returned by Do after Close.
var ErrBatcherClosed = errors.New("db: batcher closed")

// NewBatcher starts group commit on d with at most maxBatch bodies per
// transaction, one batch at a time. On PostgreSQL each batch first locks
// the rows all its bodies write in one ordered pass (see Locks), so that
// the batches of several kanald nodes on one database wait for one
// another rather than deadlock. One worker per node is still deliberate:
// measured, one worker commits several times more than four.
func (d *DB) NewBatcher(maxBatch int) *Batcher {
	return d.NewAdmittingBatcher(maxBatch, Admission{})
}

// NewAdmittingBatcher is NewBatcher with admission control for
// TryDoMerged (see Admission).
func (d *DB) NewAdmittingBatcher(maxBatch int, a Admission) *Batcher {
	if maxBatch < 1 {
		maxBatch = 1
	}
	if a.MinQueue < 1 {
		a.MinQueue = 4 * maxBatch
	}
	const workers = 1
	b := &Batcher{d: d, reqs: make(chan *batchReq, maxBatch*workers), max: maxBatch, admit: a}
	for i := 0; i < workers; i++ {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

// Do runs fn inside a shared transaction and returns when that transaction
// has committed (nil) or fn's own error. Like Tx, fn may run more than once
// if the batch is retried, so it must have no effects outside tx.
func (b *Batcher) Do(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return b.queue(&batchReq{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// DoLocked is Do for a body that writes rows of RowLocks: lock asks for
// them (see Locks), and on PostgreSQL they are locked, with those of the
// rest of its batch, before any body runs. A body that writes such rows
// must come through DoLocked or a Locker.
func (b *Batcher) DoLocked(ctx context.Context, lock func(*Locks), fn func(tx *sql.Tx) error) error {
	return b.queue(&batchReq{ctx: ctx, fn: fn, done: make(chan error, 1), locks: lock})
}

// DoMerged is Do for work that m can write together with the other items
// it gets in the same batch: m.MergeTx writes the batch's items of m at
// once, and fn writes item alone when the batch must be run body by body
// (one body failed). Both must write the same.
func (b *Batcher) DoMerged(ctx context.Context, m Merger, item any, fn func(tx *sql.Tx) error) error {
	return b.queue(&batchReq{ctx: ctx, fn: fn, done: make(chan error, 1), merge: m, item: item})
}

// TryDoMerged is DoMerged unless the queue is deeper than the Admission
// bound: then it returns an *OverloadError at once and runs nothing. It is
// for work a client can bring again later (a send with its client id);
// what drains the queue goes through Do or DoMerged.
func (b *Batcher) TryDoMerged(ctx context.Context, m Merger, item any, fn func(tx *sql.Tx) error) error {
	if err := b.Admit(); err != nil {
		return err
	}
	return b.DoMerged(ctx, m, item, fn)
}

// Admit returns the *OverloadError TryDoMerged would return now, or nil:
// a caller with work to do before it queues its body refuses early.
func (b *Batcher) Admit() error {
	a := b.admit
	if a.MaxDelay <= 0 && a.MaxQueue <= 0 {
		return nil
	}
	rate := math.Float64frombits(b.rate.Load())
	bound := a.MaxQueue
	if bound <= 0 {
		bound = max(a.MinQueue, int(rate*a.MaxDelay.Seconds()))
	}
	n := int(b.queued.Load())
	if n < bound {
		return nil
	}
	b.refused.Add(1)
	wait := time.Second
	if rate > 0 {
		wait = max(wait, time.Duration(float64(n)/rate*float64(time.Second)))
	}
	return &OverloadError{Queued: n, Bound: bound, RetryAfter: min(wait, time.Minute)}
}

// BatcherStats is what a Batcher reports about its queue.
type BatcherStats struct {
	Capacity float64 // measured commits in bodies per second; 0 before the first batch
	Queued   int     // bodies queued now, the batch being committed included
	Refused  uint64  // TryDoMerged's refusals since the start
	Batches  uint64  // batches committed (or failed) since the start
	Bodies   uint64  // bodies in those batches
}

// Stats returns the batcher's figures now.
func (b *Batcher) Stats() BatcherStats {
	return BatcherStats{Capacity: math.Float64frombits(b.rate.Load()), Queued: int(b.queued.Load()), Refused: b.refused.Load(),
		Batches: b.batches.Load(), Bodies: b.bodies.Load()}
}

func (b *Batcher) queue(r *batchReq) error {
	ctx := r.ctx
	if b.obs.Load() != nil {
		r.at = time.Now()
	}
	b.queued.Add(1)
	defer b.queued.Add(-1)
	b.closeMu.RLock()
	if b.closed {
		b.closeMu.RUnlock()
		return ErrBatcherClosed
	}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		b.closeMu.RUnlock()
		return ctx.Err()
	}
	b.closeMu.RUnlock()
	// Once queued, wait for the outcome even if ctx ends: the body may
	// already be committed, and the caller must not think otherwise.
	return <-r.done
}

// Close stops taking work, finishes what is queued and returns.
func (b *Batcher) Close() {
	b.closeMu.Lock()
	if !b.closed {
		b.closed = true
		close(b.reqs)
	}
	b.closeMu.Unlock()
	b.wg.Wait()
}

func (b *Batcher) loop() {
	defer b.wg.Done()
	batch := make([]*batchReq, 0, b.max)
	var bodies, busy float64
	var last time.Time // the start of the last batch of more than one body
	for first := range b.reqs {
		batch = append(batch[:0], first)
		// Take whatever else is already waiting, without waiting for more:
		// a lone request is not delayed to fill a batch.
	fill:
		for len(batch) < b.max {
			select {
			case r, ok := <-b.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if wait := time.Duration(b.interval.Load()) - time.Since(last); wait > 0 && len(batch) < b.max {
			batch = b.gather(batch, wait)
		}
		t0 := time.Now()
		if len(batch) > 1 {
			last = t0
		} else {
			last = time.Time{}
		}
		b.run(batch)
		took := time.Since(t0)
		b.batches.Add(1)
		b.bodies.Add(uint64(len(batch)))
		b.measure(len(batch), took, &bodies, &busy)
		if o := b.obs.Load(); o != nil {
			b.observe(o, batch, t0, took)
		}
	}
}

// gather adds what arrives within wait to batch, until it is full.
func (b *Batcher) gather(batch []*batchReq, wait time.Duration) []*batchReq {
	t := time.NewTimer(wait)
	defer t.Stop()
	for len(batch) < b.max {
		select {
		case r, ok := <-b.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-t.C:
			return batch
		}
	}
	return batch
}

func (b *Batcher) observe(o *BatchObserver, batch []*batchReq, t0 time.Time, took time.Duration) {
	if o.Batch != nil {
		o.Batch(len(batch), took)
	}
	if o.Waited == nil {
		return
	}
	for _, r := range batch {
		if !r.at.IsZero() {
			o.Waited(t0.Sub(r.at))
		}
	}
}

// measure folds a batch of n bodies that took d to commit into the
// measured capacity: bodies per second of commit time, over a window that
// decays by a tenth each batch, so that it follows the last dozen or so
// batches. Time between batches does not count — an idle batcher is not
// a slow one — and a lone body's batch pulls the figure down only until
// the queue deepens and batches fill again.
func (b *Batcher) measure(n int, d time.Duration, bodies, busy *float64) {
	const decay = 0.9
	*bodies = *bodies*decay + float64(n)
	*busy = *busy*decay + d.Seconds()
	if *busy > 0 {
		b.rate.Store(math.Float64bits(*bodies / *busy))
	}
}

// run commits one batch. Optimistically, every body runs in one
// transaction with no per-body overhead, and the items queued with
// DoMerged are written together by their Merger; bodies validate their input before
// writing, so a failing body is rare. If one fails, the shared transaction
// is rolled back and the batch is committed in halves, down to the
// failing body alone (settle), so that only its caller sees an error. On
// PostgreSQL a batch of Pipeliners' items is sent as one pipeline instead
// (see Pipeliner); if that fails, each body runs again in a transaction of
// its own.
func (b *Batcher) run(batch []*batchReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	if p := b.pipeline(live); p != nil {
		err := b.d.pipelineTx(context.Background(), p)
		if err == nil {
			for _, r := range live {
				r.done <- nil
			}
			return
		}
		b.failed(err)
	} else {
		b.settle(live)
		return
	}
	for _, r := range live {
		r.done <- b.alone(r)
	}
}

// alone runs one body in a transaction of its own, its rows locked first
// as in a batch; its error is its caller's.
func (b *Batcher) alone(r *batchReq) error {
	return b.d.Tx(r.ctx, func(tx *sql.Tx) error {
		if err := b.lock(r.ctx, tx, []*batchReq{r}); err != nil {
			return err
		}
		return r.fn(tx)
	})
}

// lock takes the rows bodies write in one ordered pass, on PostgreSQL.
func (b *Batcher) lock(ctx context.Context, tx *sql.Tx, bodies []*batchReq) error {
	if b.d.dialect != Postgres {
		return nil
	}
	var ls Locks
	var kinds []Locker
	items := map[Locker][]any{}
	for _, r := range bodies {
		if r.locks != nil {
			r.locks(&ls)
		}
		if l, ok := r.merge.(Locker); ok {
			if _, ok := items[l]; !ok {
				kinds = append(kinds, l)
			}
			items[l] = append(items[l], r.item)
		}
	}
	for _, l := range kinds {
		l.LockItems(&ls, items[l])
	}
	return ls.take(ctx, tx)
}

func (b *Batcher) failed(err error) {
	if o := b.obs.Load(); o != nil && o.Failed != nil {
		o.Failed(err)
	}
}

// settle commits bodies together or, if that fails, each half of them
// the same way, down to a body alone in a transaction of its own, whose
// error is its caller's. A failing body among n costs about 2·log2(n)
// transactions rather than n — the commit of 256 writes SQLite takes
// (cmd/kanald) would otherwise become 256 commits, each with its fsync,
// for one retried send whose idempotency row is already stored. The
// halves commit in queue order, so a sender's bodies still commit in the
// order they were queued.
func (b *Batcher) settle(bodies []*batchReq) {
	if len(bodies) == 1 {
		r := bodies[0]
		r.done <- b.alone(r)
		return
	}
	if b.together(bodies) == nil {
		for _, r := range bodies {
			r.done <- nil
		}
		return
	}
	half := len(bodies) / 2
	b.settle(bodies[:half])
	b.settle(bodies[half:])
}

// together runs bodies in one transaction, their merged items written by
// their Mergers, after the rows they all write are locked (see Locks).
func (b *Batcher) together(bodies []*batchReq) error {
	return b.d.Tx(context.Background(), func(tx *sql.Tx) error {
		err := b.bodiesTx(tx, bodies)
		if err != nil {
			b.failed(err)
		}
		return err
	})
}

func (b *Batcher) bodiesTx(tx *sql.Tx, bodies []*batchReq) error {
	if err := b.lock(context.Background(), tx, bodies); err != nil {
		return err
	}
	// Merged items wait until a plain body comes or the batch
	// ends, so the batch writes in the order it was queued except
	// that items of different Mergers between two plain bodies are
	// written kind by kind.
	var kinds []Merger
	items := map[Merger][]any{}
	flush := func() error {
		for _, m := range kinds {
			if err := m.MergeTx(context.Background(), tx, items[m]); err != nil {
				return err
			}
			delete(items, m)
		}
		kinds = kinds[:0]
		return nil
	}
	for _, r := range bodies {
		if r.merge != nil {
			if _, ok := items[r.merge]; !ok {
				kinds = append(kinds, r.merge)
			}
			items[r.merge] = append(items[r.merge], r.item)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		if err := r.fn(tx); err != nil {
			return err
		}
	}
	return flush()
}

// pipeline queues the batch on a Pipeline if it is on PostgreSQL and
// every body of it came with a Pipeliner (see Pipeliner), nil otherwise or
// if queueing failed. Items are queued kind by kind in the order each
// kind first came, as run writes them between two plain bodies.
func (b *Batcher) pipeline(live []*batchReq) *Pipeline {
	if b.d.dialect != Postgres {
		return nil
	}
	var kinds []Pipeliner
	items := map[Pipeliner][]any{}
	for _, r := range live {
		pl, ok := r.merge.(Pipeliner)
		if !ok {
			return nil
		}
		if _, ok := items[pl]; !ok {
			kinds = append(kinds, pl)
		}
		items[pl] = append(items[pl], r.item)
	}
	p := &Pipeline{}
	for _, pl := range kinds {
		if err := pl.QueueTx(p, items[pl]); err != nil {
			return nil
		}
	}
	return p
}
