package push

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// store is the SQL behind the service. Times are unix milliseconds.
type store struct{ db *db.DB }

// put registers or replaces device's subscription and reports whether it
// was new. A replaced endpoint starts without a push history.
func (s store) put(ctx context.Context, device string, sub Subscription, now time.Time) (created bool, err error) {
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_subscriptions WHERE device_id = $1`, device).Scan(&n); err != nil {
			return err
		}
		created = n == 0
		_, err := tx.ExecContext(ctx,
			`INSERT INTO push_subscriptions (device_id, endpoint, p256dh, auth, created_at, last_sent_at)
			 VALUES ($1, $2, $3, $4, $5, 0)
			 ON CONFLICT (device_id) DO UPDATE SET endpoint = excluded.endpoint, p256dh = excluded.p256dh,
			   auth = excluded.auth, created_at = excluded.created_at, last_sent_at = 0`,
			device, sub.Endpoint, sub.P256dh, sub.Auth, now.UnixMilli())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("push.subscribe: %w", err)
	}
	return created, nil
}

func (s store) get(ctx context.Context, device string) (Subscription, error) {
	var sub Subscription
	err := s.db.QueryRow(ctx, `SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE device_id = $1`, device).
		Scan(&sub.Endpoint, &sub.P256dh, &sub.Auth)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, ErrNoSubscription
	}
	if err != nil {
		return sub, fmt.Errorf("push.subscription: %w", err)
	}
	return sub, nil
}

// deleteTx removes device's subscription and pending job.
func deleteTx(ctx context.Context, tx *sql.Tx, device string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM push_subscriptions WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("push.delete: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM push_jobs WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("push.delete: %w", err)
	}
	return nil
}

// prune removes device's subscription if its endpoint is still endpoint:
// a device that registered a new one since the push was sent keeps it.
func (s store) prune(ctx context.Context, device, endpoint string) (bool, error) {
	var pruned bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM push_subscriptions WHERE device_id = $1 AND endpoint = $2`, device, endpoint)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		pruned = n > 0
		_, err = tx.ExecContext(ctx, `DELETE FROM push_jobs WHERE device_id = $1`, device)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("push.prune: %w", err)
	}
	return pruned, nil
}

// enqueueBatch is the most devices one enqueue statement names.
const enqueueBatch = 500

// enqueue records that envelopes were committed for devices at now. A
// device without a subscription gets no job. A device that has a job keeps
// it (and its due time and backoff) with a newer notified_at: that is the
// coalescing. A new job is due after the grace period, or after the
// minimum interval since the device's last push, whichever is later.
func (s store) enqueue(ctx context.Context, devices []string, now time.Time, grace, minInterval time.Duration) error {
	// One statement per enqueueBatch devices: most notified devices have
	// no subscription, and a statement each was a round trip each.
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		for part := range slices.Chunk(devices, enqueueBatch) {
			in, args := db.In(part)
			n := len(part)
			q := fmt.Sprintf(`INSERT INTO push_jobs (device_id, notified_at, due_at, attempts, lease_until)
				 SELECT device_id, CAST($%[1]d AS BIGINT),
				   CASE WHEN last_sent_at + CAST($%[3]d AS BIGINT) > CAST($%[2]d AS BIGINT)
				     THEN last_sent_at + CAST($%[3]d AS BIGINT) ELSE CAST($%[2]d AS BIGINT) END, 0, 0
				 FROM push_subscriptions WHERE device_id IN (%[4]s)
				 ON CONFLICT (device_id) DO UPDATE SET notified_at = excluded.notified_at`, n+1, n+2, n+3, in)
			args = append(args, now.UnixMilli(), notBefore(now.Add(grace)), minInterval.Milliseconds())
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("push.enqueue: %w", err)
	}
	return nil
}

// job is a claimed queue entry.
type job struct {
	device     string
	notifiedAt int64
	attempts   int
}

// claim leases up to limit due jobs to this node until leaseUntil. The
// lease is taken with a conditional update, so two nodes never hold one
// job: that keeps at most one push per device in flight.
func (s store) claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]job, error) {
	// Read the candidates on the reader pool; most polls find none and
	// should not take the writer.
	rows, err := s.db.Query(ctx,
		`SELECT device_id FROM push_jobs WHERE due_at <= $1 AND lease_until <= $1 ORDER BY due_at LIMIT $2`,
		now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("push.claim: %w", err)
	}
	var devices []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return nil, fmt.Errorf("push.claim: %w", err)
		}
		devices = append(devices, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(devices) == 0 {
		return nil, err
	}
	var out []job
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		for _, d := range devices {
			j := job{device: d}
			err := tx.QueryRowContext(ctx,
				`UPDATE push_jobs SET lease_until = $2
				 WHERE device_id = $1 AND due_at <= $3 AND lease_until <= $3
				 RETURNING notified_at, attempts`,
				d, now.Add(lease).UnixMilli(), now.UnixMilli()).Scan(&j.notifiedAt, &j.attempts)
			if errors.Is(err, sql.ErrNoRows) {
				continue // another node took it
			}
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("push.claim: %w", err)
	}
	return out, nil
}

// finish ends a job whose push was sent or not needed. If no notification
// arrived since the job was claimed it is deleted; otherwise it stays, due
// again at next, with its attempts reset.
func (s store) finish(ctx context.Context, j job, next time.Time) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM push_jobs WHERE device_id = $1 AND notified_at = $2`, j.device, j.notifiedAt)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE push_jobs SET due_at = $2, attempts = 0, lease_until = 0 WHERE device_id = $1`,
			j.device, notBefore(next))
		return err
	})
	if err != nil {
		return fmt.Errorf("push.finish: %w", err)
	}
	return nil
}

// sent records a successful push and finishes the job; a job kept for a
// newer notification waits for the minimum interval.
func (s store) sent(ctx context.Context, j job, endpoint string, now time.Time, minInterval time.Duration) error {
	if _, err := s.db.Exec(ctx, `UPDATE push_subscriptions SET last_sent_at = $3 WHERE device_id = $1 AND endpoint = $2`,
		j.device, endpoint, notBefore(now)); err != nil {
		return fmt.Errorf("push.sent: %w", err)
	}
	return s.finish(ctx, j, now.Add(minInterval))
}

// retry puts a job back, due at next, with attempts counted.
func (s store) retry(ctx context.Context, device string, attempts int, next time.Time) error {
	if _, err := s.db.Exec(ctx, `UPDATE push_jobs SET attempts = $2, due_at = $3, lease_until = 0 WHERE device_id = $1`,
		device, attempts, notBefore(next)); err != nil {
		return fmt.Errorf("push.retry: %w", err)
	}
	return nil
}

// drop removes a job that will not be sent.
func (s store) drop(ctx context.Context, device string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM push_jobs WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("push.drop: %w", err)
	}
	return nil
}

// depth returns the number of queued jobs.
func (s store) depth(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM push_jobs`).Scan(&n); err != nil {
		return 0, fmt.Errorf("push.depth: %w", err)
	}
	return n, nil
}

// subscribed is one page of subscriptions for the recovery scan.
type subscribed struct {
	device   string
	lastSent time.Time
}

func (s store) subscriptions(ctx context.Context, after string, limit int) ([]subscribed, error) {
	rows, err := s.db.Query(ctx,
		`SELECT device_id, last_sent_at FROM push_subscriptions WHERE device_id > $1 ORDER BY device_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("push.recover: %w", err)
	}
	defer rows.Close()
	var out []subscribed
	for rows.Next() {
		var sub subscribed
		var ms int64
		if err := rows.Scan(&sub.device, &ms); err != nil {
			return nil, fmt.Errorf("push.recover: %w", err)
		}
		sub.lastSent = time.UnixMilli(ms)
		out = append(out, sub)
	}
	return out, rows.Err()
}

// enqueueMissing adds a job for each device that has none; a job already
// queued keeps its state.
func (s store) enqueueMissing(ctx context.Context, devices []string, now time.Time, grace time.Duration) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, d := range devices {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO push_jobs (device_id, notified_at, due_at, attempts, lease_until) VALUES ($1, $2, $3, 0, 0)
				 ON CONFLICT (device_id) DO NOTHING`, d, now.UnixMilli(), notBefore(now.Add(grace))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("push.recover: %w", err)
	}
	return nil
}

// notBefore is t in the queue's milliseconds, rounded up. The queue
// stores times to the millisecond and takes a job once its due time is
// not after now, so a due time (a retry after Retry-After, the minimum
// interval after the last push, the grace) rounded down would let a push
// go up to a millisecond early; the last push's time is rounded up for
// the same reason, since the minimum interval is counted from it.
func notBefore(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}
