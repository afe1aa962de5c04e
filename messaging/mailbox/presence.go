package mailbox

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// PendingClasses returns the distinct classes of device's envelopes that
// were committed at or before before and are still unacknowledged (and not
// expired). A device with a live stream acknowledges within moments, so an
// envelope that is still here after a grace period means the device is not
// keeping up on any node — the answer every node reads the same way from
// the shared database, which the hub's per-node Connected cannot give.
func (s *Store) PendingClasses(ctx context.Context, device string, before time.Time) ([]string, error) {
	rows, err := s.db.Query(ctx,
		`SELECT DISTINCT class FROM mailbox WHERE device_id = $1 AND created_at <= $2 AND expires_at > $3`,
		device, before.UnixMilli(), s.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("mailbox.pending: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("mailbox.pending: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox.pending: %w", err)
	}
	return out, nil
}

// maxNewestBatch bounds the devices of one Newest call.
const maxNewestBatch = 500

// Newest returns, for each of devices that has unexpired envelopes, when
// its newest one was committed. It lets web push find, after a crash,
// devices whose envelopes arrived after their last push.
func (s *Store) Newest(ctx context.Context, devices []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	if len(devices) == 0 {
		return out, nil
	}
	if len(devices) > maxNewestBatch {
		return nil, fmt.Errorf("%w: at most %d devices", ErrInvalid, maxNewestBatch)
	}
	args := []any{s.now().UnixMilli()}
	var ph strings.Builder
	for i, d := range devices {
		if i > 0 {
			ph.WriteString(", ")
		}
		fmt.Fprintf(&ph, "$%d", i+2)
		args = append(args, d)
	}
	rows, err := s.db.Query(ctx,
		`SELECT device_id, MAX(created_at) FROM mailbox WHERE expires_at > $1 AND device_id IN (`+ph.String()+`) GROUP BY device_id`,
		args...)
	if err != nil {
		return nil, fmt.Errorf("mailbox.newest: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		var ms int64
		if err := rows.Scan(&d, &ms); err != nil {
			return nil, fmt.Errorf("mailbox.newest: %w", err)
		}
		out[d] = time.UnixMilli(ms)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox.newest: %w", err)
	}
	return out, nil
}
