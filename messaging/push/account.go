package push

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SubscriptionRecord is what the server holds about one device's push
// subscription, for the account's export (GDPR Art. 15; docs/privacy.md).
type SubscriptionRecord struct {
	DeviceID   string     `json:"device_id"`
	Endpoint   string     `json:"endpoint"`
	P256dh     string     `json:"p256dh"`
	Auth       string     `json:"auth"`
	CreatedAt  time.Time  `json:"created_at"`
	LastSentAt *time.Time `json:"last_sent_at"`
	PendingAt  *time.Time `json:"push_pending_since"`
}

// ExportDevices returns the push subscriptions of devices that have one.
// Erasure needs nothing here: a device's revocation deletes its
// subscription and its pending push (DeleteDeviceTx).
func (s *Service) ExportDevices(ctx context.Context, devices []string) ([]SubscriptionRecord, error) {
	out := []SubscriptionRecord{}
	for _, d := range devices {
		r := SubscriptionRecord{DeviceID: d}
		var created, last int64
		err := s.store.db.QueryRow(ctx, `SELECT endpoint, p256dh, auth, created_at, last_sent_at FROM push_subscriptions WHERE device_id = $1`, d).
			Scan(&r.Endpoint, &r.P256dh, &r.Auth, &created, &last)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("push.export: %w", err)
		}
		r.CreatedAt = time.UnixMilli(created).UTC()
		if last > 0 {
			t := time.UnixMilli(last).UTC()
			r.LastSentAt = &t
		}
		var notified int64
		switch err := s.store.db.QueryRow(ctx, `SELECT notified_at FROM push_jobs WHERE device_id = $1`, d).Scan(&notified); {
		case err == nil:
			t := time.UnixMilli(notified).UTC()
			r.PendingAt = &t
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("push.export: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}
