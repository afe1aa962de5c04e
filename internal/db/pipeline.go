package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// A Pipeliner is a Merger that also writes its items on PostgreSQL by
// queueing statements on a Pipeline. When every body of a batch on
// PostgreSQL was queued with a Pipeliner, the batch is one transaction
// sent in one round trip (a pgx.Batch): BEGIN, the row locks (Locks), every
// queued statement and COMMIT — instead of one round trip per statement
// from the batch worker. QueueTx must queue what MergeTx would write. A
// statement that fails makes PostgreSQL skip the rest, COMMIT included:
// nothing of the pipeline is committed and the batch runs body by body,
// as after a failed MergeTx. So whatever must refuse an item (a quota)
// must refuse it in SQL, by failing its statement: a statement's read
// function runs after the COMMIT has been sent, and an error from it
// (which cannot be a refusal, only a broken read) still runs the batch
// body by body although the pipeline committed, as after a connection
// lost at COMMIT: the bodies must tolerate running again after an
// unknown outcome (a send's idempotency row makes its second run fail
// and answer with the first).
type Pipeliner interface {
	Merger
	QueueTx(p *Pipeline, items []any) error
}

// Pipeline collects the statements of one group commit on PostgreSQL; see
// Pipeliner. No statement can depend on what the program reads from an
// earlier one: they are all sent before any result is read. Its Locks
// (Lock, Create) are taken before any statement runs, in one ordered pass
// for the whole batch however many of its writers touch the rows.
type Pipeline struct {
	Locks
	stmts []pipelined
}

type pipelined struct {
	sql     string
	args    []any
	read    func(pgx.Rows) error
	generic bool
}

// Query queues a statement. read, if not nil, gets its rows once the
// pipeline is sent, in the order the statements were queued, and after
// the pipeline's COMMIT was sent: it cannot refuse anything (see
// Pipeliner).
func (p *Pipeline) Query(sql string, args []any, read func(pgx.Rows) error) {
	p.stmts = append(p.stmts, pipelined{sql: sql, args: args, read: read})
}

// QueryGeneric is Query for a statement that PostgreSQL may plan once
// per connection (a generic plan) rather than at every execution, which
// kanald's connections otherwise do (plan_cache_mode =
// force_custom_plan, see Open). It is for statements whose plan cannot
// depend on how many rows a table or an array holds: inserts of rows
// given as arrays, which read no table but through their conflict
// arbiter's index. A statement that looks rows up in a table by other
// means must not use it: a generic plan is costed once, on whatever the
// table held then. Under a moderate load, where a commit carries a few
// writes, planning was a third of PostgreSQL's CPU
// (docs/benchmarks.md, "Inserts planned once per connection").
func (p *Pipeline) QueryGeneric(sql string, args []any, read func(pgx.Rows) error) {
	p.stmts = append(p.stmts, pipelined{sql: sql, args: args, read: read, generic: true})
}

// The statements around a run of QueryGeneric's on a pipeline. Both are
// local to the transaction; DEFAULT is the connection's own setting, from
// its URL or Open.
const (
	genericPlans = "SET LOCAL plan_cache_mode = force_generic_plan"
	defaultPlans = "SET LOCAL plan_cache_mode = DEFAULT"
)

// Len is the number of statements queued (the locks not counted).
func (p *Pipeline) Len() int { return len(p.stmts) }

// pipelineTx sends p in one transaction of its own on a connection of the
// writer pool, COMMIT included: one round trip. It returns nil once the
// COMMIT has succeeded, which (synchronous_commit on) means the
// transaction is durable.
func (d *DB) pipelineTx(ctx context.Context, p *Pipeline) error {
	if d.dialect != Postgres {
		return fmt.Errorf("db: pipelines are for PostgreSQL, not %s", d.dialect)
	}
	var b pgx.Batch
	b.BeginTx(pgx.TxOptions{})
	generic := false
	plans := func(g bool) {
		if g == generic {
			return
		}
		if g {
			b.Queue(genericPlans)
		} else {
			b.Queue(defaultPlans)
		}
		generic = g
	}
	for _, s := range p.steps() {
		plans(s.generic)
		b.Queue(s.sql, s.keys)
	}
	for _, s := range p.stmts {
		plans(s.generic)
		q := b.Queue(s.sql, s.args...)
		if s.read != nil {
			q.Query(s.read)
		}
	}
	b.Queue("COMMIT")
	conn, err := d.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("db: PostgreSQL connection is a %T", dc)
		}
		pc := sc.Conn()
		br := pc.SendBatch(ctx, &b)
		err := br.Close()
		tx := br.Tx()
		if tx == nil {
			return errors.Join(err, errors.New("db: pipeline began no transaction"))
		}
		switch pc.PgConn().TxStatus() {
		case 'I':
			// Committed (or never begun), and the transaction closed
			// with it: err, if any, was a read function's.
			return err
		case 'T', 'E':
			// A statement failed and PostgreSQL skipped the rest, the
			// COMMIT too; the transaction is open (aborted) until rolled
			// back.
			if err == nil {
				err = errors.New("db: pipeline's COMMIT skipped")
			}
			if rerr := tx.Rollback(context.Background()); rerr != nil && !pc.IsClosed() {
				_ = pc.Close(context.Background())
			}
			return err
		default:
			// A connection in an unknown state must not go back to the
			// pool: closed, database/sql discards it.
			if !pc.IsClosed() {
				_ = pc.Close(context.Background())
			}
			return errors.Join(err, errors.New("db: pipeline's connection in an unknown state"))
		}
	})
}
