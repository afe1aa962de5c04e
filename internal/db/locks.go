package db

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
)

// A RowLock is a statement that locks rows by key: SQL takes one
// parameter, the keys as a text array sorted and without duplicates, and
// must lock their rows in that order, each looked up by itself:
//
//	SELECT 1 FROM unnest($1::text[]) AS k(key),
//		LATERAL (SELECT 1 FROM t WHERE t.key = k.key FOR UPDATE) r
//
// PostgreSQL cannot flatten a subquery that locks, so the plan is a
// nested loop over the array, in its order, with an index lookup of each
// key — also when planned once on an empty table (see Pipeline.Query,
// under whose settings a pipeline's locks run). Rows it does not find are
// not locked. Insert, if set, takes the same parameter and inserts the
// rows of keys that are missing, in that order, without touching those
// that exist (… SELECT FROM unnest($1) … ON CONFLICT DO NOTHING): see
// Locks.Create.
type RowLock struct{ SQL, Insert string }

// Locks are the rows a transaction of the group commit locks before any
// of its bodies runs, in one ordered pass: every key asked of a RowLock
// by any body, in key order, the RowLocks themselves in the order of
// their SQL. Several kanald nodes commit on one PostgreSQL at once; if
// each transaction took its bodies' rows body by body, two nodes' batches
// holding a row each that the other wants next would deadlock, which
// PostgreSQL breaks only after deadlock_timeout (1 s), failing one of
// them. Taken in one pass in one global order, the rows make the second
// transaction wait for the first instead. Rows a body then writes must
// all be among them: later statements then wait for no one.
//
// On SQLite there are no Locks: a write transaction holds the database's
// only write lock from its first statement.
type Locks struct {
	keys   map[*RowLock][]string
	create map[*RowLock][]string
}

// Lock has the rows of keys locked by l.
func (ls *Locks) Lock(l *RowLock, keys ...string) {
	if ls.keys == nil {
		ls.keys = map[*RowLock][]string{}
	}
	ls.keys[l] = append(ls.keys[l], keys...)
}

// Create has the rows of keys inserted by l.Insert if they are missing,
// then locked with the others. Rows the transaction inserts later are as
// much a wait for another transaction inserting the same keys as rows it
// locks: a transaction that inserted A and then wants B while another
// inserted B and wants A deadlocks as surely. So every row a body may
// insert as well as update is created in the pass, in key order, before
// any row is locked.
func (ls *Locks) Create(l *RowLock, keys ...string) {
	if ls.create == nil {
		ls.create = map[*RowLock][]string{}
	}
	ls.create[l] = append(ls.create[l], keys...)
	ls.Lock(l, keys...)
}

// A lockStep is one statement of the pass with its sorted keys.
type lockStep struct {
	sql  string
	keys []string
}

// steps returns the pass's statements in order: for each RowLock, in the
// order of its SQL, the insert of the rows to create, then the lock.
func (ls *Locks) steps() []lockStep {
	order := make([]*RowLock, 0, len(ls.keys))
	for l := range ls.keys {
		order = append(order, l)
	}
	slices.SortFunc(order, func(a, b *RowLock) int { return cmp.Compare(a.SQL, b.SQL) })
	var out []lockStep
	for _, l := range order {
		if c := ls.create[l]; len(c) > 0 && l.Insert != "" {
			out = append(out, lockStep{l.Insert, sortedKeys(c)})
		}
		out = append(out, lockStep{l.SQL, sortedKeys(ls.keys[l])})
	}
	return out
}

func sortedKeys(keys []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(keys)))
}

// take runs the pass in tx (PostgreSQL only).
func (ls *Locks) take(ctx context.Context, tx *sql.Tx) error {
	for _, s := range ls.steps() {
		if _, err := tx.ExecContext(ctx, s.sql, s.keys); err != nil {
			return err
		}
	}
	return nil
}

// A Locker is a Merger whose items write rows that must be locked first
// (see Locks): LockItems asks for them. A Pipeliner asks for them in
// QueueTx instead, on its Pipeline.
type Locker interface {
	LockItems(ls *Locks, items []any)
}
