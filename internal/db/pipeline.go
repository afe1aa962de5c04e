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
	sql  string
	args []any
	read func(pgx.Rows) error
}

// Query queues a statement. read, if not nil, gets its rows once the
// pipeline is sent, in the order the statements were queued, and after
// the pipeline's COMMIT was sent: it cannot refuse anything (see
// Pipeliner).
//
// Every statement of a pipeline, its Locks' too, runs under
// PipelinePlans: PostgreSQL plans it once per connection (a generic
// plan), not at every execution as kanald's connections otherwise do
// (plan_cache_mode = force_custom_plan, see Open), and may reach a
// table's rows only through an index. A generic plan is costed once, on
// whatever the tables held then, and for arrays of unknown length; so a
// statement must be written so that its only plan looks each key of its
// arrays up by itself, whatever those sizes: rows inserted from arrays
// (which read no table but through their conflict arbiter), rows found
// key by key through a LATERAL subquery that PostgreSQL cannot flatten
// (OFFSET 0, FOR UPDATE) and then deleted or updated by ctid or by key =
// ANY(ARRAY(…)). A join of a table with an array, or a table's rows
// reached by any other means, may be planned as a full scan of the
// index on an empty table and kept for the connection's life. Under a
// moderate load, where a commit carries a few writes, planning was a
// third of PostgreSQL's CPU (docs/benchmarks.md, "Inserts planned once
// per connection", "A pipeline planned once per connection").
func (p *Pipeline) Query(sql string, args []any, read func(pgx.Rows) error) {
	p.stmts = append(p.stmts, pipelined{sql: sql, args: args, read: read})
}

// PipelinePlans is the statement a pipeline runs after its BEGIN: the
// settings, local to its transaction, under which its statements are
// planned (see Pipeline.Query). It is exported for tests that check a
// pipelined statement's plan.
const PipelinePlans = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
	set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)`

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
	b.Queue(PipelinePlans)
	for _, s := range p.steps() {
		b.Queue(s.sql, s.keys)
	}
	for _, s := range p.stmts {
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
