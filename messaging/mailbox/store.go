package mailbox

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the mailbox schema.
func Migrations() db.Migrations { return db.Embedded("mailbox", migrationFiles) }

// Errors callers branch on.
var (
	ErrInvalid = errors.New("mailbox: invalid envelope")
)

// FullError says that an append would take devices' mailboxes past their
// Quota; nothing of the append is stored once its transaction rolls back.
type FullError struct {
	Devices []string // sorted
}

func (e *FullError) Error() string {
	return fmt.Sprintf("mailbox: full: %s", strings.Join(e.Devices, ", "))
}

// Store keeps the per-device mailboxes.
type Store struct {
	db        *db.DB
	batch     *db.Batcher
	now       func() time.Time
	retention time.Duration
}

// StoreOptions configures a Store. Zero values mean: time.Now,
// DefaultRetention, and one transaction per Append.
type StoreOptions struct {
	Now       func() time.Time
	Retention time.Duration
	// Batcher, if set, lets concurrent Appends share a commit.
	Batcher *db.Batcher
}

// NewStore returns a Store on d, which must carry Migrations().
func NewStore(d *db.DB, o StoreOptions) *Store {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	return &Store{db: d, batch: o.Batcher, now: o.Now, retention: o.Retention}
}

// ValidDeviceID reports whether id is safe to use as a mailbox key and in a
// bus subject: 1–64 characters of [A-Za-z0-9_-].
func ValidDeviceID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validate(e *Envelope) error {
	switch {
	case !ValidDeviceID(e.Recipient):
		return fmt.Errorf("%w: bad recipient device", ErrInvalid)
	case !ValidDeviceID(e.Sender):
		return fmt.Errorf("%w: bad sender device", ErrInvalid)
	case e.Conversation == "" || len(e.Conversation) > 64:
		return fmt.Errorf("%w: bad conversation", ErrInvalid)
	case e.Class == "" || len(e.Class) > 32:
		return fmt.Errorf("%w: bad class", ErrInvalid)
	case len(e.Ciphertext) == 0 || len(e.Ciphertext) > MaxCiphertext:
		return fmt.Errorf("%w: ciphertext must be 1..%d bytes", ErrInvalid, MaxCiphertext)
	}
	return nil
}

// Append stores envelopes durably — committed when it returns — in their
// own transaction or, with a Batcher, in one shared with concurrent
// Appends; see AppendTx.
func (s *Store) Append(ctx context.Context, envs []Envelope) error {
	fn := func(tx *sql.Tx) error { return s.AppendTx(ctx, tx, envs) }
	if s.batch != nil {
		return s.batch.DoLocked(ctx, func(ls *db.Locks) { s.LockAppend(ls, envs) }, fn)
	}
	return s.db.Tx(ctx, fn)
}

// AppendTx stores envelopes inside the caller's transaction, so a send and
// its envelopes commit together. It fills in ID (if empty), Seq and
// ServerTime. Every envelope is validated before anything is written.
//
// Sequence numbers come from one head row per device, taken in device order
// so two sends to overlapping devices cannot deadlock. The head row lock also
// makes seq order equal commit order for each device, which is what lets a
// reader resume from "after seq N".
func (s *Store) AppendTx(ctx context.Context, tx *sql.Tx, envs []Envelope) error {
	return s.AppendWithinTx(ctx, tx, envs, Quota{})
}

// AppendWithinTx is AppendTx for envelopes that must fit in each
// recipient's mailbox quota q: if any recipient's mailbox would hold more
// than q allows it returns a *FullError, having written only what the
// caller's transaction must then roll back. The check is made in the
// statement that takes the head rows' locks, so concurrent appends cannot
// all pass one check.
func (s *Store) AppendWithinTx(ctx context.Context, tx *sql.Tx, envs []Envelope, q Quota) error {
	byDevice, devices, err := byRecipient(envs)
	if err != nil {
		return err
	}
	now := s.now()
	created, expires := now.UnixMilli(), now.Add(s.retention).UnixMilli()
	// Two statements per chunk of devices however many envelopes a send
	// fans out to, rather than two per device: on PostgreSQL every
	// statement is a round trip, and a group message to 50 devices was 100
	// of them.
	for len(devices) > 0 {
		chunk := devices[:db.Rows(len(devices), maxHeadsPerStatement)]
		devices = devices[len(chunk):]
		last, err := s.advanceHeads(ctx, tx, chunk, byDevice, envs, q)
		if err != nil {
			return err
		}
		// The chunk's devices may hold many envelopes each (a group's
		// creation gives every member device one notice per member), so
		// the rows are split again by their parameters.
		rows := make([]int, 0, len(chunk))
		for _, dev := range chunk {
			idx := byDevice[dev]
			seq := last[dev] - int64(len(idx))
			for _, i := range idx {
				seq++
				e := &envs[i]
				if e.ID == "" {
					e.ID = NewEnvelopeID()
				}
				e.Seq = seq
				e.ServerTime = time.UnixMilli(created).UTC()
				rows = append(rows, i)
			}
		}
		for len(rows) > 0 {
			part := rows[:db.Rows(len(rows), maxEnvelopesPerStatement)]
			rows = rows[len(part):]
			q := `INSERT INTO mailbox (device_id, seq, envelope_id, conversation, sender_device, class, ciphertext, created_at, expires_at) VALUES ` +
				db.Values(len(part), envelopeParams)
			args := make([]any, 0, envelopeParams*len(part))
			for _, i := range part {
				e := &envs[i]
				args = append(args, e.Recipient, e.Seq, e.ID, e.Conversation, e.Sender, e.Class, e.Ciphertext, created, expires)
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("mailbox.append: %w", err)
			}
		}
	}
	return nil
}

// Rows per multi-row statement. Each must stay within db.MaxParams
// arguments (a test at compile time below), and well within: SQLite looks
// a $n parameter up by name, linearly, so a statement's parse costs the
// square of its parameters — 3,640 rows of nine took seconds each, 256
// rows a few milliseconds. maxHeadsPerStatement bounds the devices of one
// advanceHeads (three parameters each), maxEnvelopesPerStatement the rows
// of one insert into the mailbox (nine each), however the envelopes fall
// on devices.
const (
	envelopeParams           = 9
	maxHeadsPerStatement     = 256
	maxEnvelopesPerStatement = 256
)

var (
	_ [db.MaxParams - 3*maxHeadsPerStatement]struct{}
	_ [db.MaxParams - envelopeParams*maxEnvelopesPerStatement]struct{}
)

// advanceHeads reserves len(byDevice[d]) sequence numbers for each device d
// of devices (sorted) in one statement, adds the envelopes to each
// device's depth and bytes, and returns each device's new last seq — or a
// *FullError if a device is now past q. PostgreSQL takes the head rows'
// locks in the order of the VALUES list, which is device order, as the
// one-statement-per-device version did.
func (s *Store) advanceHeads(ctx context.Context, tx *sql.Tx, devices []string, byDevice map[string][]int, envs []Envelope, quota Quota) (map[string]int64, error) {
	var q strings.Builder
	q.WriteString(`INSERT INTO mailbox_heads (device_id, last_seq, depth, bytes) VALUES `)
	args := make([]any, 0, 3*len(devices))
	for i, dev := range devices {
		if i > 0 {
			q.WriteString(", ")
		}
		var size int64
		for _, j := range byDevice[dev] {
			size += int64(len(envs[j].Ciphertext))
		}
		n := int64(len(byDevice[dev]))
		fmt.Fprintf(&q, "($%d, $%d, $%d, $%d)", 3*i+1, 3*i+2, 3*i+2, 3*i+3)
		args = append(args, dev, n, size)
	}
	q.WriteString(` ON CONFLICT (device_id) DO UPDATE SET last_seq = mailbox_heads.last_seq + excluded.last_seq,
		depth = mailbox_heads.depth + excluded.depth, bytes = mailbox_heads.bytes + excluded.bytes
		RETURNING device_id, last_seq, depth, bytes`)
	rows, err := tx.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("mailbox.append: %w", err)
	}
	defer rows.Close()
	last := make(map[string]int64, len(devices))
	var full []string
	for rows.Next() {
		var dev string
		var seq, depth, size int64
		if err := rows.Scan(&dev, &seq, &depth, &size); err != nil {
			return nil, fmt.Errorf("mailbox.append: %w", err)
		}
		last[dev] = seq
		if quota.MaxEnvelopes > 0 && depth > quota.MaxEnvelopes || quota.MaxBytes > 0 && size > quota.MaxBytes {
			full = append(full, dev)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox.append: %w", err)
	}
	if len(full) > 0 {
		sort.Strings(full)
		return nil, &FullError{Devices: full}
	}
	if len(last) != len(devices) {
		return nil, fmt.Errorf("mailbox.append: %d of %d mailbox heads returned", len(last), len(devices))
	}
	return last, nil
}

// release subtracts deleted envelopes from their devices' depth and bytes,
// in one statement per maxHeadsPerStatement devices rather than one per
// device: a broadcast's references are acknowledged by thousands of
// devices within a few group commits, and on PostgreSQL each statement is
// a round trip from the one batch worker.
//
// It is an upsert, as in advanceHeads, because PostgreSQL takes the head
// rows' locks in the order of the VALUES list — device order, as appends
// take them, so the two cannot deadlock; an UPDATE … FROM a list of values
// locks them in whatever order its join finds them. Every device of gone
// has a head row: its envelopes were deleted in this transaction, and a
// head row is deleted only with its device's envelopes (DeleteDeviceTx),
// whose delete would have waited for this one or left nothing to delete.
// Were one missing, the insert would leave a head of last_seq 0 and a
// negative depth for a device with no mailbox, which nothing reads.
func release(ctx context.Context, tx *sql.Tx, gone map[string][2]int64) error {
	devices := make([]string, 0, len(gone))
	for d := range gone {
		devices = append(devices, d)
	}
	sort.Strings(devices)
	for len(devices) > 0 {
		chunk := devices[:db.Rows(len(devices), maxHeadsPerStatement)]
		devices = devices[len(chunk):]
		args := make([]any, 0, 3*len(chunk))
		for _, d := range chunk {
			g := gone[d]
			args = append(args, d, -g[0], -g[1])
		}
		if _, err := tx.ExecContext(ctx, releaseStatement(len(chunk)), args...); err != nil {
			return err
		}
	}
	return nil
}

// releaseStatements caches release's statement texts by their rows.
var releaseStatements sync.Map // int → string

func releaseStatement(rows int) string {
	if q, ok := releaseStatements.Load(rows); ok {
		return q.(string)
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO mailbox_heads (device_id, last_seq, depth, bytes) VALUES `)
	for i := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "($%d, 0, $%d, $%d)", 3*i+1, 3*i+2, 3*i+3)
	}
	q.WriteString(` ON CONFLICT (device_id) DO UPDATE SET depth = mailbox_heads.depth + excluded.depth, bytes = mailbox_heads.bytes + excluded.bytes`)
	v, _ := releaseStatements.LoadOrStore(rows, q.String())
	return v.(string)
}

// deleteReleasing runs a DELETE … RETURNING device_id, LENGTH(ciphertext)
// and subtracts what it deleted from the heads, in tx.
func deleteReleasing(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	gone := map[string][2]int64{}
	var n int64
	for rows.Next() {
		var dev string
		var size int64
		if err := rows.Scan(&dev, &size); err != nil {
			rows.Close()
			return 0, err
		}
		g := gone[dev]
		g[0]++
		g[1] += size
		gone[dev] = g
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return n, release(ctx, tx, gone)
}

// Fetch returns up to limit envelopes of device with seq > after, in order.
// Expired envelopes are not returned even before the sweeper removes them.
func (s *Store) Fetch(ctx context.Context, device string, after int64, limit int) ([]Envelope, error) {
	rows, err := s.db.Query(ctx,
		`SELECT seq, envelope_id, conversation, sender_device, class, ciphertext, created_at
		 FROM mailbox WHERE device_id = $1 AND seq > $2 AND expires_at > $3
		 ORDER BY seq LIMIT $4`, device, after, s.now().UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("mailbox.fetch: %w", err)
	}
	defer rows.Close()
	var out []Envelope
	for rows.Next() {
		e := Envelope{Recipient: device}
		var created int64
		if err := rows.Scan(&e.Seq, &e.ID, &e.Conversation, &e.Sender, &e.Class, &e.Ciphertext, &created); err != nil {
			return nil, fmt.Errorf("mailbox.fetch: %w", err)
		}
		e.ServerTime = time.UnixMilli(created).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox.fetch: %w", err)
	}
	rows.Close()
	return out, s.expandShared(ctx, out)
}

// LastSeqs returns the last sequence number each of devices' mailboxes
// has given out; a device that never had an envelope is absent. One
// statement per maxHeadsPerStatement devices: it is what the streams'
// pings ask together, instead of a read of each mailbox.
func (s *Store) LastSeqs(ctx context.Context, devices []string) (map[string]int64, error) {
	out := make(map[string]int64, len(devices))
	for len(devices) > 0 {
		part := devices[:db.Rows(len(devices), maxHeadsPerStatement)]
		devices = devices[len(part):]
		ph, args := db.In(part)
		rows, err := s.db.Query(ctx, `SELECT device_id, last_seq FROM mailbox_heads WHERE device_id IN (`+ph+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("mailbox.heads: %w", err)
		}
		for rows.Next() {
			var d string
			var seq int64
			if err := rows.Scan(&d, &seq); err != nil {
				rows.Close()
				return nil, fmt.Errorf("mailbox.heads: %w", err)
			}
			out[d] = seq
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("mailbox.heads: %w", err)
		}
	}
	return out, nil
}

// Ack deletes the acknowledged envelopes of device and returns how many
// were deleted. Ids of other devices' envelopes match nothing.
func (s *Store) Ack(ctx context.Context, device string, ids []string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if len(ids) > MaxAckBatch {
		return 0, fmt.Errorf("%w: at most %d ids per ack", ErrInvalid, MaxAckBatch)
	}
	for _, id := range ids {
		if len(id) == 0 || len(id) > 64 {
			return 0, fmt.Errorf("%w: bad envelope id", ErrInvalid)
		}
	}
	a := &pendingAck{device: device, ids: ids}
	// The statement of an ack on its own; one merged into a group commit
	// (below) is deleted by ackMerger's instead, and never builds it.
	fn := func(tx *sql.Tx) error {
		var ph strings.Builder
		args := make([]any, 0, len(ids)+1)
		args = append(args, device)
		for i, id := range ids {
			if i > 0 {
				ph.WriteString(", ")
			}
			ph.WriteString("$" + strconv.Itoa(i+2))
			args = append(args, id)
		}
		q := `DELETE FROM mailbox WHERE device_id = $1 AND envelope_id IN (` + ph.String() + `) RETURNING device_id, LENGTH(ciphertext)`
		var err error
		a.n, err = deleteReleasing(ctx, tx, q, args...)
		return err
	}
	var err error
	if s.batch == nil {
		err = s.db.Tx(ctx, func(tx *sql.Tx) error {
			if err := s.lockHeads(ctx, tx, `SELECT 1 FROM mailbox_heads WHERE device_id = $1 FOR UPDATE`, device); err != nil {
				return err
			}
			return fn(tx)
		})
	} else {
		// Every device acknowledges every frame it takes, so acks are as
		// many writes as sends: on their own, each would be a commit and
		// (on SQLite) an fsync of its own — a fifth of kanald's CPU in the
		// direct benchmark. They share the sends' group commit instead,
		// and the acks of one commit are deleted together.
		err = s.batch.DoMerged(ctx, ackMerger{s}, a, fn)
	}
	if err != nil {
		return 0, fmt.Errorf("mailbox.ack: %w", err)
	}
	return a.n, nil
}

// pendingAck is one Ack on its way into a group commit; n is what it
// deleted.
type pendingAck struct {
	device string
	ids    []string
	n      int64
}

// ackMerger deletes the acknowledgements of one group commit in a few
// statements (see db.Merger).
type ackMerger struct{ s *Store }

// Acknowledged envelopes per delete statement, two parameters each.
const acksPerStatement = 256

var _ [db.MaxParams - 2*acksPerStatement]struct{}

func (m ackMerger) MergeTx(ctx context.Context, tx *sql.Tx, items []any) error {
	type key struct{ device, id string }
	var pairs []key
	for _, it := range items {
		a := it.(*pendingAck)
		a.n = 0
		for _, id := range a.ids {
			pairs = append(pairs, key{a.device, id})
		}
	}
	// Which (device, envelope) pairs were deleted, and their sizes, to
	// count each ack's deletions and release the heads once.
	deleted := map[key]bool{}
	gone := map[string][2]int64{}
	for len(pairs) > 0 {
		part := pairs[:db.Rows(len(pairs), acksPerStatement)]
		pairs = pairs[len(part):]
		// The pairs as a named table, which both engines look up in the
		// (device_id, envelope_id) index; SQLite scans the whole mailbox
		// for "(device_id, envelope_id) IN (VALUES …)" written inline.
		q := `WITH acked(d, e) AS (VALUES ` + db.Values(len(part), 2) + `) DELETE FROM mailbox WHERE (device_id, envelope_id) IN (SELECT d, e FROM acked)
			RETURNING device_id, envelope_id, LENGTH(ciphertext)`
		args := make([]any, 0, 2*len(part))
		for _, p := range part {
			args = append(args, p.device, p.id)
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k key
			var size int64
			if err := rows.Scan(&k.device, &k.id, &size); err != nil {
				rows.Close()
				return err
			}
			deleted[k] = true
			g := gone[k.device]
			g[0]++
			g[1] += size
			gone[k.device] = g
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
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
	return release(ctx, tx, gone)
}

// Depth returns how many envelopes wait in device's mailbox.
func (s *Store) Depth(ctx context.Context, device string) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM mailbox WHERE device_id = $1 AND expires_at > $2`, device, s.now().UnixMilli()).Scan(&n)
	return n, err
}

// Expire deletes envelopes past their retention and returns how many.
func (s *Store) Expire(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		// The heads first, in device order, as every writer of mailbox
		// rows takes them (headsLock): deleting an envelope an ack is
		// deleting too, then waiting for its head, would deadlock.
		if err := s.lockHeads(ctx, tx, `SELECT 1 FROM mailbox_heads WHERE device_id IN (SELECT device_id FROM mailbox WHERE expires_at <= $1)
			ORDER BY device_id COLLATE "C" FOR UPDATE`, s.now().UnixMilli()); err != nil {
			return err
		}
		var err error
		n, err = deleteReleasing(ctx, tx, `DELETE FROM mailbox WHERE expires_at <= $1 RETURNING device_id, LENGTH(ciphertext)`, s.now().UnixMilli())
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM mailbox_shared WHERE expires_at <= $1`, s.now().UnixMilli())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mailbox.expire: %w", err)
	}
	return n, nil
}

// DeleteDeviceTx empties a device's mailbox inside the caller's transaction;
// used when the device is revoked.
// The head row goes first: every writer of a device's mailbox rows holds
// its head row before them (headsLock).
func (s *Store) DeleteDeviceTx(ctx context.Context, tx *sql.Tx, device string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM mailbox_heads WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("mailbox.delete: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM mailbox WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("mailbox.delete: %w", err)
	}
	return nil
}

// lockHeads runs a statement that locks head rows, on PostgreSQL; on
// SQLite the transaction already holds the only write lock.
func (s *Store) lockHeads(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	if s.db.Dialect() != db.Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, query, args...)
	return err
}

// byRecipient validates envs and groups their indexes by recipient
// device; devices are the recipients in sorted order, the order in which
// appends lock head rows.
func byRecipient(envs []Envelope) (byDevice map[string][]int, devices []string, err error) {
	byDevice = map[string][]int{}
	for i := range envs {
		if err := validate(&envs[i]); err != nil {
			return nil, nil, err
		}
		byDevice[envs[i].Recipient] = append(byDevice[envs[i].Recipient], i)
	}
	devices = make([]string, 0, len(byDevice))
	for d := range byDevice {
		devices = append(devices, d)
	}
	sort.Strings(devices)
	return byDevice, devices, nil
}
