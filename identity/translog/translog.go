package translog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/keys/transparency"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the log's schema.
func Migrations() db.Migrations { return db.Embedded("translog", migrationFiles) }

// lockKey serialises appends across nodes: the next index and the tree
// hash are read and written under it (internal/db's Lock).
const lockKey = "translog.append"

// Options configures a Log. DB and Signer are required.
type Options struct {
	DB *db.DB
	// Signer signs checkpoints; its name is the log's origin.
	Signer note.Signer
	// Verifier is the published verifier key of Signer ("name+hash+base64").
	Verifier string
	// Witnesses are the verifier keys of the witnesses whose cosignatures
	// the log stores (C2SP tlog-cosignature); WitnessQuorum is how many a
	// checkpoint needs to be served as GET /v1/log/witness/checkpoint.
	Witnesses     []string
	WitnessQuorum int
	Logger        *slog.Logger     // nil: discard
	Now           func() time.Time // nil: time.Now
	// Rand draws the accounts' salts; nil: crypto/rand.
	Rand io.Reader
}

// Log is the transparency log of one deployment. Its methods are safe for
// concurrent use, by any number of nodes sharing the database.
type Log struct {
	db       *db.DB
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader

	witnesses *transparency.WitnessPolicy // nil: none
}

// Errors of the log.
var (
	ErrNotFound = errors.New("translog: not in the log")
	ErrRange    = errors.New("translog: beyond the tree")
)

// New checks o and returns a Log. If the database already holds a signed
// checkpoint, the key must verify it: a node started with another log key
// would sign a second, unrelated history.
func New(ctx context.Context, o Options) (*Log, error) {
	if o.DB == nil || o.Signer == nil || o.Verifier == "" {
		return nil, errors.New("translog: DB, Signer and Verifier are required")
	}
	v, err := transparency.NewVerifier(o.Verifier)
	if err != nil {
		return nil, err
	}
	if v.Name() != o.Signer.Name() || v.KeyHash() != o.Signer.KeyHash() {
		return nil, errors.New("translog: verifier key is not the signer's")
	}
	l := &Log{db: o.DB, signer: o.Signer, verifier: v, vkey: o.Verifier, log: o.Logger, now: o.Now, rand: o.Rand}
	if l.rand == nil {
		l.rand = rand.Reader
	}
	if len(o.Witnesses) > 0 || o.WitnessQuorum != 0 {
		if l.witnesses, err = transparency.NewWitnessPolicy(o.Witnesses, o.WitnessQuorum, 0); err != nil {
			return nil, err
		}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	msg, err := l.latestNote(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if _, _, err := transparency.Open(msg, v); err != nil {
			return nil, fmt.Errorf("translog: the log key does not verify the stored checkpoints (another deployment's key, or a changed origin?): %w", err)
		}
	}
	return l, nil
}

// Origin is the log's origin, the name of its key.
func (l *Log) Origin() string { return l.signer.Name() }

// VerifierKey is the published verifier key.
func (l *Log) VerifierKey() string { return l.vkey }

// Verifier is the log key's verifier.
func (l *Log) Verifier() note.Verifier { return l.verifier }

// hashReader reads stored hashes through q, first from pending (hashes
// written earlier in the same append, not yet visible to a query).
type hashReader struct {
	ctx     context.Context
	q       querier
	pending map[int64]tlog.Hash
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readerDB adapts the reader pool to querier.
type readerDB struct{ d *db.DB }

func (r readerDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.d.Query(ctx, query, args...)
}

func (h *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var want []string
	pos := map[int64][]int{}
	for i, x := range indexes {
		if p, ok := h.pending[x]; ok {
			out[i] = p
			continue
		}
		if _, ok := pos[x]; !ok {
			want = append(want, strconv.FormatInt(x, 10))
		}
		pos[x] = append(pos[x], i)
	}
	for len(want) > 0 {
		chunk := want[:min(len(want), 500)]
		want = want[len(chunk):]
		// The indexes are integers formatted here, never user text.
		rows, err := h.q.QueryContext(h.ctx, `SELECT idx, hash FROM translog_hashes WHERE idx IN (`+strings.Join(chunk, ",")+`)`)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var x int64
			var b []byte
			if err := rows.Scan(&x, &b); err != nil {
				rows.Close()
				return nil, err
			}
			if len(b) != len(tlog.Hash{}) {
				rows.Close()
				return nil, fmt.Errorf("translog: stored hash %d has %d bytes", x, len(b))
			}
			for _, i := range pos[x] {
				copy(out[i][:], b)
			}
			delete(pos, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for x := range pos {
		return nil, fmt.Errorf("translog: stored hash %d missing", x)
	}
	return out, nil
}

// Append appends entries to the log inside tx, the transaction that writes
// the bindings they record, and signs the checkpoint of the new size in the
// same transaction: the binding, its entry and a checkpoint covering it
// commit together or not at all. Appends from every node are serialised
// by an advisory lock (on SQLite the single writer does it). It returns
// the index of the first entry.
//
// Every entry is appended in version 2: an entry given with an Account
// names the commitment to it instead, under the account's salt (drawn in
// tx if the account has none yet).
func (l *Log) Append(ctx context.Context, tx *sql.Tx, entries ...transparency.Entry) (int64, error) {
	if len(entries) == 0 {
		return 0, errors.New("translog: nothing to append")
	}
	entries = slices.Clone(entries)
	datas := make([][]byte, len(entries))
	for i := range entries {
		var err error
		if entries[i], err = l.commit(ctx, tx, entries[i]); err != nil {
			return 0, err
		}
		d, err := entries[i].Marshal()
		if err != nil {
			return 0, err
		}
		datas[i] = d
	}
	if err := l.db.Lock(ctx, tx, lockKey); err != nil {
		return 0, err
	}
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx) + 1, 0) FROM translog_entries`).Scan(&n); err != nil {
		return 0, err
	}
	first := n
	r := &hashReader{ctx: ctx, q: tx, pending: map[int64]tlog.Hash{}}
	now := l.now().Unix()
	for i, data := range datas {
		hs, err := tlog.StoredHashes(n, data, r)
		if err != nil {
			return 0, err
		}
		e := entries[i]
		cert, account := "", ""
		if e.Cert != (transparency.Fingerprint{}) {
			cert = e.Cert.String()
		}
		if e.Commitment != (transparency.Commitment{}) {
			account = e.Commitment.String()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO translog_entries (idx, kind, account, device, org, cert, data, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, n, string(e.Kind), account, e.Device, firstNonEmpty(e.Org, e.Survey), cert, data, now); err != nil {
			return 0, err
		}
		base := tlog.StoredHashIndex(0, n)
		for j, h := range hs {
			r.pending[base+int64(j)] = h
			if _, err := tx.ExecContext(ctx, `INSERT INTO translog_hashes (idx, hash) VALUES ($1, $2)`, base+int64(j), h[:]); err != nil {
				return 0, err
			}
		}
		n++
	}
	root, err := tlog.TreeHash(n, r)
	if err != nil {
		return 0, err
	}
	msg, err := transparency.Sign(transparency.Checkpoint{Origin: l.Origin(), Size: n, Hash: root}, l.signer)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO translog_checkpoints (size, note, created_at) VALUES ($1, $2, $3)`, n, string(msg), now); err != nil {
		return 0, err
	}
	return first, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// latestNote returns the newest signed checkpoint as stored.
func (l *Log) latestNote(ctx context.Context) ([]byte, error) {
	var msg string
	err := l.db.QueryRow(ctx, `SELECT note FROM translog_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return []byte(msg), err
}

// Latest returns the newest signed checkpoint: its note text and what it
// says. An empty log has none (ErrNotFound).
func (l *Log) Latest(ctx context.Context) ([]byte, transparency.Checkpoint, error) {
	msg, err := l.latestNote(ctx)
	if err != nil {
		return nil, transparency.Checkpoint{}, err
	}
	c, _, err := transparency.Open(msg, l.verifier)
	return msg, c, err
}

// CheckpointAt returns the signed checkpoint of exactly size n.
func (l *Log) CheckpointAt(ctx context.Context, n int64) ([]byte, error) {
	var msg string
	err := l.db.QueryRow(ctx, `SELECT note FROM translog_checkpoints WHERE size = $1`, n).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return []byte(msg), err
}

func (l *Log) reader(ctx context.Context) *hashReader {
	return &hashReader{ctx: ctx, q: readerDB{l.db}}
}

// InclusionProof proves entry index in the tree of size n.
func (l *Log) InclusionProof(ctx context.Context, index, n int64) ([]tlog.Hash, error) {
	if err := l.checkSize(ctx, n); err != nil {
		return nil, err
	}
	if index < 0 || index >= n {
		return nil, fmt.Errorf("%w: index %d is not in a tree of size %d", ErrRange, index, n)
	}
	return tlog.ProveRecord(n, index, l.reader(ctx))
}

// ConsistencyProof proves that the tree of size n extends that of size m.
func (l *Log) ConsistencyProof(ctx context.Context, m, n int64) ([]tlog.Hash, error) {
	if err := l.checkSize(ctx, n); err != nil {
		return nil, err
	}
	if m < 0 || m > n {
		return nil, fmt.Errorf("%w: old size %d is not between 0 and %d", ErrRange, m, n)
	}
	if m == 0 || m == n {
		return []tlog.Hash{}, nil
	}
	return tlog.ProveTree(n, m, l.reader(ctx))
}

// Size is the size of the newest signed tree.
func (l *Log) Size(ctx context.Context) (int64, error) {
	var n int64
	err := l.db.QueryRow(ctx, `SELECT COALESCE(MAX(size), 0) FROM translog_checkpoints`).Scan(&n)
	return n, err
}

func (l *Log) checkSize(ctx context.Context, n int64) error {
	size, err := l.Size(ctx)
	if err != nil {
		return err
	}
	if n < 1 || n > size {
		return fmt.Errorf("%w: size %d is not between 1 and %d, the log's size", ErrRange, n, size)
	}
	return nil
}

// Entries returns up to count entries from start, all below the newest
// signed size.
func (l *Log) Entries(ctx context.Context, start, count int64) ([]transparency.LogEntry, error) {
	size, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if start < 0 || start >= size {
		return nil, fmt.Errorf("%w: start %d is not below the log's size %d", ErrRange, start, size)
	}
	rows, err := l.db.Query(ctx, `SELECT idx, data FROM translog_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx`, start, min(start+count, size))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []transparency.LogEntry{}
	for rows.Next() {
		var e transparency.LogEntry
		if err := rows.Scan(&e.Index, &e.Data); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Find returns the newest entry of kind about device whose cert field is
// cert (and, for memberships, whose org is org): its index and data.
func (l *Log) Find(ctx context.Context, kind transparency.Kind, device string, cert transparency.Fingerprint, org string) (int64, []byte, error) {
	var idx int64
	var data []byte
	err := l.db.QueryRow(ctx, `SELECT idx, data FROM translog_entries WHERE device = $1 AND kind = $2 AND cert = $3 AND org = $4
		ORDER BY idx DESC LIMIT 1`, device, string(kind), cert.String(), org).Scan(&idx, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, ErrNotFound
	}
	return idx, data, err
}

// Prove returns the attachment that lets a client check entry index
// against the newest checkpoint: the entry, the checkpoint, the inclusion
// proof and, for a version 2 entry about an account, the account's salt
// (none once the account is erased). Call it after the entry was found,
// so that the newest checkpoint covers it.
func (l *Log) Prove(ctx context.Context, index int64, data []byte) (*transparency.Attachment, error) {
	msg, c, err := l.Latest(ctx)
	if err != nil {
		return nil, err
	}
	if index >= c.Size {
		return nil, fmt.Errorf("%w: entry %d is not in the newest checkpoint (size %d)", ErrRange, index, c.Size)
	}
	p, err := tlog.ProveRecord(c.Size, index, l.reader(ctx))
	if err != nil {
		return nil, err
	}
	a := &transparency.Attachment{Index: index, Entry: data, Checkpoint: string(msg), Proof: transparency.EncodeHashes(p)}
	e, err := transparency.ParseEntry(data)
	if err != nil {
		return nil, fmt.Errorf("translog: stored entry %d: %w", index, err)
	}
	if e.Commitment != (transparency.Commitment{}) {
		a.Salt, err = l.saltByCommitment(ctx, e.Commitment)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return a, nil
}

// Attach finds the newest entry of kind about device with certificate
// fingerprint cert (org for memberships) and proves it. A binding without
// an entry gets none: ErrNotFound, and the client refuses it.
func (l *Log) Attach(ctx context.Context, kind transparency.Kind, device string, cert transparency.Fingerprint, org string) (*transparency.Attachment, error) {
	idx, data, err := l.Find(ctx, kind, device, cert, org)
	if err != nil {
		return nil, err
	}
	return l.Prove(ctx, idx, data)
}

// FindTx is Find inside tx, for a check that guards an append in the same
// transaction.
func (l *Log) FindTx(ctx context.Context, tx *sql.Tx, kind transparency.Kind, device string, cert transparency.Fingerprint, org string) (int64, []byte, error) {
	var idx int64
	var data []byte
	err := tx.QueryRowContext(ctx, `SELECT idx, data FROM translog_entries WHERE device = $1 AND kind = $2 AND cert = $3 AND org = $4
		ORDER BY idx DESC LIMIT 1`, device, string(kind), cert.String(), org).Scan(&idx, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, ErrNotFound
	}
	return idx, data, err
}
