package mailbox

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kanal-server/kanal/internal/db"
)

// The mailbox's statements on a PostgreSQL pipeline (db.Pipeliner): an
// append and a commit's acknowledgements are one statement each, with
// their rows as arrays (one statement text for any number of rows), and
// the head rows they touch are locked first in device order by the
// pipeline, once for the whole batch.

// headsLock locks the head rows of devices in device order (db.Locks),
// after creating those of devices an append reaches for the first time.
// Every transaction that writes a device's mailbox rows holds its head
// row first, so the head rows guard the mailbox rows too.
var headsLock = &db.RowLock{
	SQL: `SELECT 1 FROM unnest($1::text[]) AS k(id),
		LATERAL (SELECT 1 FROM mailbox_heads WHERE device_id = k.id FOR UPDATE) h`,
	Insert: `INSERT INTO mailbox_heads (device_id, last_seq, depth, bytes)
		SELECT d, 0, 0, 0 FROM unnest($1::text[]) AS d ON CONFLICT (device_id) DO NOTHING`,
}

// LockAppend asks ls for the head rows an append of envs writes, for a
// caller that appends through its own db.Locker.
func (s *Store) LockAppend(ls *db.Locks, envs []Envelope) {
	ls.Create(headsLock, recipients(envs)...)
}

// recipients returns the recipient devices of envs, in no order and
// possibly repeated.
func recipients(envs []Envelope) []string {
	out := make([]string, len(envs))
	for i := range envs {
		out[i] = envs[i].Recipient
	}
	return out
}

// LockItems asks ls for the head rows of a commit's acknowledgements
// (db.Locker).
func (m ackMerger) LockItems(ls *db.Locks, items []any) {
	for _, it := range items {
		ls.Lock(headsLock, it.(*pendingAck).device)
	}
}

// appendSQL reserves the sequence numbers of each device's envelopes in
// its head row, adds them to its depth and bytes, and inserts the
// envelopes: an envelope k places before its device's last one in the
// append gets the new last seq minus k. It returns each device's new last
// seq, depth and bytes, and fails if a device's mailbox is then past the
// quota ($13 envelopes, $14 bytes; 0 is no limit): the pipeline's COMMIT
// is sent with it, so the refusal must be the statement's own failure
// (the text cast to a number, which fails, is evaluated only for a full
// mailbox). The batch then runs body by body, where AppendWithinTx tells
// the full mailboxes' senders.
//
// It reads no table but through mailbox_heads' primary key, its conflict
// arbiter, and joins two arrays' rows: its plan does not depend on the
// tables' sizes (planned once per connection, see db.Pipeline.Query;
// TestPipelinePlans).
const appendSQL = `WITH h AS (
	INSERT INTO mailbox_heads AS m (device_id, last_seq, depth, bytes)
	SELECT d, n, n, b FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(d, n, b)
	ON CONFLICT (device_id) DO UPDATE SET last_seq = m.last_seq + excluded.last_seq,
		depth = m.depth + excluded.depth, bytes = m.bytes + excluded.bytes
	RETURNING device_id, last_seq, depth, bytes
), ins AS (
	INSERT INTO mailbox (device_id, seq, envelope_id, conversation, sender_device, class, ciphertext, created_at, expires_at)
	SELECT e.d, h.last_seq - e.k, e.id, e.conv, e.sender, e.class, e.ct, $11, $12
	FROM unnest($4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[]) AS e(d, k, id, conv, sender, class, ct)
	JOIN h ON h.device_id = e.d
)
SELECT device_id, last_seq, depth, bytes FROM h
WHERE CASE WHEN $13::bigint > 0 AND depth > $13::bigint OR $14::bigint > 0 AND bytes > $14::bigint
	THEN ('mailbox full: ' || device_id)::bigint IS NULL ELSE true END`

// QueueAppend queues on p the append of envs within quota q, as
// AppendWithinTx writes it in a transaction: every envelope validated
// first, ID (if empty) and ServerTime filled in now, Seq once p has run.
// If a recipient's mailbox would be past q, p fails (and the batch, run
// body by body, gives its sender a *FullError).
func (s *Store) QueueAppend(p *db.Pipeline, envs []Envelope, q Quota) error {
	byDevice, devices, err := byRecipient(envs)
	if err != nil {
		return err
	}
	now := s.now()
	created, expires := now.UnixMilli(), now.Add(s.retention).UnixMilli()
	counts, sizes := make([]int64, len(devices)), make([]int64, len(devices))
	n := len(envs)
	recip, back, ids, convs, senders, classes := make([]string, 0, n), make([]int64, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	cts := make([][]byte, 0, n)
	for i, dev := range devices {
		idx := byDevice[dev]
		counts[i] = int64(len(idx))
		for j, k := range idx {
			e := &envs[k]
			if e.ID == "" {
				e.ID = NewEnvelopeID()
			}
			e.ServerTime = time.UnixMilli(created).UTC()
			sizes[i] += int64(len(e.Ciphertext))
			recip = append(recip, dev)
			back = append(back, int64(len(idx)-1-j))
			ids, convs, senders, classes = append(ids, e.ID), append(convs, e.Conversation), append(senders, e.Sender), append(classes, e.Class)
			cts = append(cts, e.Ciphertext)
		}
	}
	p.Create(headsLock, devices...)
	p.Query(appendSQL, []any{devices, counts, sizes, recip, back, ids, convs, senders, classes, cts, created, expires, q.MaxEnvelopes, q.MaxBytes}, func(rows pgx.Rows) error {
		seen := 0
		for rows.Next() {
			var dev string
			var last, depth, size int64
			if err := rows.Scan(&dev, &last, &depth, &size); err != nil {
				return fmt.Errorf("mailbox.append: %w", err)
			}
			seen++
			idx := byDevice[dev]
			for j, k := range idx {
				envs[k].Seq = last - int64(len(idx)-1-j)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("mailbox.append: %w", err)
		}
		if seen != len(devices) {
			return fmt.Errorf("mailbox.append: %d of %d mailbox heads returned", seen, len(devices))
		}
		return nil
	})
	return nil
}

// ackSQL deletes acknowledged envelopes, given as arrays of devices and
// envelope ids, subtracts them from their heads and returns which were
// deleted. Planned once per connection (db.Pipeline.Query), it finds
// each envelope by itself through the (device, envelope id) index in a
// LATERAL subquery, deletes what it found by row address, and updates
// the heads of the devices it deleted from through their primary key: a
// join of the mailbox with the arrays was planned on an empty mailbox
// as a scan of all its rows for every acknowledgement, and kept.
const ackSQL = `WITH del AS (
	DELETE FROM mailbox WHERE ctid = ANY (ARRAY(
		SELECT m.ctid FROM unnest($1::text[], $2::text[]) AS a(d, e),
			LATERAL (SELECT ctid FROM mailbox WHERE device_id = a.d AND envelope_id = a.e OFFSET 0) m))
	RETURNING device_id, envelope_id, LENGTH(ciphertext) AS size
), rel AS (
	UPDATE mailbox_heads h SET (depth, bytes) =
		(SELECT h.depth - COUNT(*), h.bytes - SUM(del.size) FROM del WHERE del.device_id = h.device_id)
	WHERE h.device_id = ANY (ARRAY(SELECT device_id FROM del))
)
SELECT device_id, envelope_id FROM del`

// QueueTx queues a commit's acknowledgements on p (db.Pipeliner): one
// statement deletes them all and releases their heads.
func (m ackMerger) QueueTx(p *db.Pipeline, items []any) error {
	var devs, ids []string
	seen := map[string]bool{}
	var lock []string
	for _, it := range items {
		a := it.(*pendingAck)
		a.n = 0
		for _, id := range a.ids {
			devs, ids = append(devs, a.device), append(ids, id)
		}
		if !seen[a.device] {
			seen[a.device] = true
			lock = append(lock, a.device)
		}
	}
	p.Lock(headsLock, lock...)
	p.Query(ackSQL, []any{devs, ids}, func(rows pgx.Rows) error {
		type key struct{ device, id string }
		deleted := map[key]bool{}
		for rows.Next() {
			var k key
			if err := rows.Scan(&k.device, &k.id); err != nil {
				return err
			}
			deleted[k] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// An envelope two acks of the batch name counts for the first.
		for _, it := range items {
			a := it.(*pendingAck)
			for _, id := range a.ids {
				if k := (key{a.device, id}); deleted[k] {
					a.n++
					delete(deleted, k)
				}
			}
		}
		return nil
	})
	return nil
}

var (
	_ db.Pipeliner = ackMerger{}
	_ db.Locker    = ackMerger{}
)
