package main

import (
	"context"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
)

// app wires kanal's domains to the database, the bus and the HTTP edge.
// It is the only place that knows every domain.
type app struct {
	handler http.Handler
	conns   *web.Tracker
	metrics *web.Metrics
	ident   *identity.Service
}

// migrations lists every domain's schema, in dependency order.
func migrations() []db.Migrations {
	return []db.Migrations{kanaldMigrations(), identity.Migrations(), messaging.Migrations()}
}

func newApp(cfg *config, log *slog.Logger, d *db.DB, b *bus.Bus, authority *ca.CA) (*app, error) {
	a := &app{conns: &web.Tracker{}, metrics: web.NewMetrics()}
	registerStateMetrics(a.metrics.Registry, d, b)

	mailer, err := newMailer(cfg, log)
	if err != nil {
		return nil, err
	}
	a.ident, err = identity.New(identity.Options{DB: d, CA: authority, Mailer: mailer, Logger: log, TrustProxy: cfg.TrustProxy})
	if err != nil {
		return nil, err
	}

	prekeys, err := messaging.New(messaging.Options{DB: d, Directory: identityDirectory{d}, Logger: log,
		Auth: messaging.Auth{
			Require: func(h http.Handler) http.Handler { return a.ident.RequireSession(ca.LevelLow, h) },
			Caller: func(ctx context.Context) (messaging.Caller, bool) {
				p, ok := identity.FromContext(ctx)
				return messaging.Caller{AccountID: p.AccountID, DeviceID: p.DeviceID}, ok
			},
		}})
	if err != nil {
		return nil, err
	}
	a.ident.AddRevocationHook(messaging.DeletePrekeys)

	mux := http.NewServeMux()
	a.ident.Register(mux)
	prekeys.Register(mux)
	mux.Handle("GET /healthz", web.Healthz())
	mux.Handle("GET /readyz", web.Readyz(
		web.Check{Name: "database", Func: d.Ping},
		web.Check{Name: "migrations", Func: func(context.Context) error {
			if !d.Migrated() {
				return errors.New("migrations not applied")
			}
			return nil
		}},
		web.Check{Name: "bus", Func: b.Ping},
	))
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.Handle("/", web.NotFound())

	a.handler = web.Handler(mux, web.Options{Logger: log, Metrics: a.metrics})
	return a, nil
}

func (a *app) close() {}

// identityDirectory gives the prekey directory identity's active devices
// and their certificates. It reads identity's tables because identity
// exports no Go directory yet; it belongs in identity once it does.
type identityDirectory struct{ d *db.DB }

func (i identityDirectory) Device(ctx context.Context, id string) (messaging.Device, error) {
	ds, err := i.devices(ctx, `SELECT id, account_id, cert_pem, '' FROM identity_devices WHERE id = $1 AND revoked_at IS NULL`, id)
	if err == nil && len(ds) == 0 {
		err = fmt.Errorf("device %s: %w", id, messaging.ErrUnknownDevice)
	}
	if err != nil {
		return messaging.Device{}, err
	}
	return ds[0], nil
}

func (i identityDirectory) AccountDevices(ctx context.Context, account string) ([]messaging.Device, error) {
	return i.devices(ctx, `SELECT id, account_id, cert_pem, '' FROM identity_devices WHERE account_id = $1 AND revoked_at IS NULL`, account)
}

// OrgAgents lists every member's active device with its newest live
// membership certificate: all roles speak for the organisation.
func (i identityDirectory) OrgAgents(ctx context.Context, org string) ([]byte, []messaging.Device, error) {
	var certPEM string
	err := i.d.QueryRow(ctx, `SELECT cert_pem FROM identity_orgs WHERE id = $1 AND verified_at IS NOT NULL`, org).Scan(&certPEM)
	if errors.Is(err, sql.ErrNoRows) || err == nil && certPEM == "" {
		return nil, nil, fmt.Errorf("organisation %s: %w", org, messaging.ErrUnknownOrg)
	} else if err != nil {
		return nil, nil, err
	}
	ds, err := i.devices(ctx, `SELECT d.id, d.account_id, d.cert_pem, ms.cert_pem FROM identity_members m
		JOIN identity_memberships ms ON ms.org_id = m.org_id AND ms.account_id = m.account_id AND ms.revoked_at IS NULL
		JOIN identity_devices d ON d.id = ms.device_id AND d.revoked_at IS NULL
		WHERE m.org_id = $1 ORDER BY d.id, ms.not_after DESC`, org)
	if err != nil {
		return nil, nil, err
	}
	out := ds[:0]
	for _, d := range ds {
		if len(out) == 0 || out[len(out)-1].DeviceID != d.DeviceID {
			out = append(out, d)
		}
	}
	return derOf(certPEM), out, nil
}

func (i identityDirectory) devices(ctx context.Context, q string, arg string) ([]messaging.Device, error) {
	rows, err := i.d.Query(ctx, q, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []messaging.Device
	for rows.Next() {
		var d messaging.Device
		var cert, membership string
		if err := rows.Scan(&d.DeviceID, &d.AccountID, &cert, &membership); err != nil {
			return nil, err
		}
		d.Certificate, d.Membership = derOf(cert), derOf(membership)
		out = append(out, d)
	}
	return out, rows.Err()
}

// derOf returns the DER bytes of a PEM certificate, nil for none.
func derOf(s string) []byte {
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return b.Bytes
	}
	return nil
}

// newMailer sends through SMTP when KANAL_SMTP_URL is set, and otherwise
// writes mails to <data-dir>/mail, logging each file's path (never its
// content: it holds a sign-up code).
func newMailer(cfg *config, log *slog.Logger) (identity.Mailer, error) {
	if cfg.SMTPURL != "" {
		m, err := identity.NewSMTPMailer(cfg.SMTPURL, cfg.MailFrom)
		if err != nil {
			return nil, &settingError{"KANAL_SMTP_URL", err}
		}
		return m, nil
	}
	return &identity.FileMailer{Dir: filepath.Join(cfg.DataDir, "mail"), From: cfg.MailFrom,
		Written: func(path string) { log.Info("mail written", "path", path) }}, nil
}

// registerStateMetrics exports the database pools and the NATS connection.
func registerStateMetrics(reg *prometheus.Registry, d *db.DB, b *bus.Bus) {
	pool := func(name, help string, f func(w, r bool) float64) {
		for _, p := range []string{"writer", "reader"} {
			isW := p == "writer"
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        name,
				Help:        help,
				ConstLabels: prometheus.Labels{"pool": p},
			}, func() float64 { return f(isW, !isW) }))
		}
	}
	stat := func(w bool) (s struct{ open, inUse, waits float64 }) {
		ws, rs := d.Stats()
		if !w {
			ws = rs
		}
		s.open, s.inUse, s.waits = float64(ws.OpenConnections), float64(ws.InUse), float64(ws.WaitCount)
		return s
	}
	pool("kanal_db_open_connections", "Open database connections.", func(w, _ bool) float64 { return stat(w).open })
	pool("kanal_db_in_use_connections", "Database connections in use.", func(w, _ bool) float64 { return stat(w).inUse })
	pool("kanal_db_wait_count", "Waits for a database connection since start.", func(w, _ bool) float64 { return stat(w).waits })
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanal_nats_connected", Help: "1 while the NATS connection is up."},
			func() float64 {
				if b.Connected() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_nats_reconnects_total", Help: "NATS reconnects since start."},
			func() float64 { return float64(b.Conn().Stats().Reconnects) }),
	)
}
