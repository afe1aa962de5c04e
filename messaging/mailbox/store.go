package mailbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the mailbox schema.
func Migrations() db.Migrations { return db.Embedded("mailbox", migrationFiles) }

// Envelope is one ciphertext for one recipient device. The server knows
// who sends to whom, in which conversation, and a coarse class for push and
// retention; never what the ciphertext says.
type Envelope struct {
	ID           string    `json:"id"`
	Seq          int64     `json:"seq"`
	Conversation string    `json:"conversation"`
	Sender       string    `json:"sender_device"`
	Recipient    string    `json:"recipient_device"`
	Class        string    `json:"class"`
	Ciphertext   []byte    `json:"ciphertext"`
	ServerTime   time.Time `json:"server_ts"`
}

// Errors callers branch on.
var (
	ErrInvalid = errors.New("mailbox: invalid envelope")
)

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

// NewEnvelopeID returns a random 128-bit envelope id.
func NewEnvelopeID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
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
		return s.batch.Do(ctx, fn)
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
	byDevice := map[string][]int{}
	for i := range envs {
		if err := validate(&envs[i]); err != nil {
			return err
		}
		byDevice[envs[i].Recipient] = append(byDevice[envs[i].Recipient], i)
	}
	devices := make([]string, 0, len(byDevice))
	for d := range byDevice {
		devices = append(devices, d)
	}
	sort.Strings(devices)
	now := s.now()
	created, expires := now.UnixMilli(), now.Add(s.retention).UnixMilli()
	for _, dev := range devices {
		idx := byDevice[dev]
		var last int64
		if err := tx.QueryRowContext(ctx,
			`INSERT INTO mailbox_heads (device_id, last_seq) VALUES ($1, $2)
			 ON CONFLICT (device_id) DO UPDATE SET last_seq = mailbox_heads.last_seq + $2
			 RETURNING last_seq`, dev, int64(len(idx))).Scan(&last); err != nil {
			return fmt.Errorf("mailbox.append: %w", err)
		}
		seq := last - int64(len(idx))
		for _, i := range idx {
			seq++
			e := &envs[i]
			if e.ID == "" {
				e.ID = NewEnvelopeID()
			}
			e.Seq = seq
			e.ServerTime = time.UnixMilli(created).UTC()
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO mailbox (device_id, seq, envelope_id, conversation, sender_device, class, ciphertext, created_at, expires_at)
				 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				dev, seq, e.ID, e.Conversation, e.Sender, e.Class, e.Ciphertext, created, expires); err != nil {
				return fmt.Errorf("mailbox.append: %w", err)
			}
		}
	}
	return nil
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
	return out, rows.Err()
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
	args := make([]any, 0, len(ids)+1)
	args = append(args, device)
	var ph strings.Builder
	for i, id := range ids {
		if len(id) == 0 || len(id) > 64 {
			return 0, fmt.Errorf("%w: bad envelope id", ErrInvalid)
		}
		if i > 0 {
			ph.WriteString(", ")
		}
		fmt.Fprintf(&ph, "$%d", i+2)
		args = append(args, id)
	}
	res, err := s.db.Exec(ctx, `DELETE FROM mailbox WHERE device_id = $1 AND envelope_id IN (`+ph.String()+`)`, args...)
	if err != nil {
		return 0, fmt.Errorf("mailbox.ack: %w", err)
	}
	return res.RowsAffected()
}

// Depth returns how many envelopes wait in device's mailbox.
func (s *Store) Depth(ctx context.Context, device string) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM mailbox WHERE device_id = $1 AND expires_at > $2`, device, s.now().UnixMilli()).Scan(&n)
	return n, err
}

// Expire deletes envelopes past their retention and returns how many.
func (s *Store) Expire(ctx context.Context) (int64, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM mailbox WHERE expires_at <= $1`, s.now().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("mailbox.expire: %w", err)
	}
	return res.RowsAffected()
}

// DeleteDeviceTx empties a device's mailbox inside the caller's transaction;
// used when the device is revoked.
func (s *Store) DeleteDeviceTx(ctx context.Context, tx *sql.Tx, device string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM mailbox WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("mailbox.delete: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM mailbox_heads WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("mailbox.delete: %w", err)
	}
	return nil
}
