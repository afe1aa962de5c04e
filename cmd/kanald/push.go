package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/push"
)

// newPush builds the web push service: its VAPID key sealed under a key
// derived from the deployment secret, sessions from identity, the mailbox as the
// judge of whether a device has picked up its envelopes, this node's hub
// for a quick "connected here", and its metrics.
func newPush(cfg *config, log *slog.Logger, d *db.DB, keys *secretKeys, ident *identity.Service,
	mailboxes *mailbox.Store, hub *mailbox.Hub, reg prometheus.Registerer) (*push.Service, error) {
	roots, err := pushRoots(cfg.PushCAFile)
	if err != nil {
		return nil, &settingError{"KANAL_PUSH_CA_FILE", err}
	}
	svc, err := push.New(context.Background(), push.Options{DB: d, Logger: log, SealKey: keys.vapid, LegacySealKey: keys.legacyVAPID,
		Subject: cfg.pushSubject(), AllowedHosts: cfg.PushHosts, HTTPClient: push.NewHTTPClient(roots, cfg.PushHosts),
		Workers: cfg.PushWorkers,
		Pending: mailboxes.PendingClasses, Newest: mailboxes.Newest, Live: hub.Connected,
		Auth: push.Auth{
			Require: func(h http.Handler) http.Handler { return ident.RequireSession(ca.LevelLow, h) },
			Device: func(ctx context.Context) (string, bool) {
				p, ok := identity.FromContext(ctx)
				return p.DeviceID, ok
			},
		}})
	if err != nil {
		return nil, err
	}
	if w := subjectWarning(cfg.pushSubject()); w != "" {
		log.Warn("push: "+w, "subject", cfg.pushSubject())
	}
	counter := func(name, help string, f func(push.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(svc.Stats())) })
	}
	reg.MustRegister(
		counter("kanal_push_sent_total", "Web pushes a push service accepted.", func(s push.Stats) uint64 { return s.Sent }),
		counter("kanal_push_retried_total", "Web push attempts that failed (429, 5xx, network) and will be retried.", func(s push.Stats) uint64 { return s.Retried }),
		counter("kanal_push_failed_total", "Web pushes given up: refused by the push service, or out of attempts.", func(s push.Stats) uint64 { return s.Failed }),
		counter("kanal_push_pruned_total", "Push subscriptions removed after a 404 or 410.", func(s push.Stats) uint64 { return s.Pruned }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanal_push_queue_depth", Help: "Devices waiting for a web push (all nodes)."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				n, err := svc.QueueDepth(ctx)
				if err != nil {
					return -1
				}
				return float64(n)
			}),
	)
	return svc, nil
}

// pushRoots is the system's roots plus the certificates in file, if any.
func pushRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil // the system's roots
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", file, err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// pushSubject is the VAPID contact: KANAL_PUSH_SUBJECT, or mailto: the
// address kanald sends mail from.
func (c *config) pushSubject() string {
	if c.PushSubject != "" {
		return c.PushSubject
	}
	if a, err := mail.ParseAddress(c.MailFrom); err == nil {
		return "mailto:" + a.Address
	}
	return "mailto:noreply@localhost"
}

// subjectWarning says why push services may refuse the VAPID contact
// subject, or "" when it looks reachable. Apple's push service is reported
// to answer 403 to a contact at a host that cannot receive mail.
func subjectWarning(subject string) string {
	addr, ok := strings.CutPrefix(subject, "mailto:")
	if !ok {
		return ""
	}
	_, host, _ := strings.Cut(addr, "@")
	host = strings.ToLower(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || !strings.Contains(host, ".") ||
		strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".invalid") || strings.HasSuffix(host, ".example") {
		return "the VAPID contact is not a deliverable address; push services may refuse every push (403): set KANAL_PUSH_SUBJECT or KANAL_MAIL_FROM"
	}
	return ""
}

// checkPushSettings validates the push settings for parseConfig.
func checkPushSettings(c *config, hosts, workers string) error {
	var err error
	if c.PushHosts, err = push.ParseHostList(hosts); err != nil {
		return &settingError{"KANAL_PUSH_HOSTS", err}
	}
	if c.PushWorkers, err = strconv.Atoi(workers); err != nil || c.PushWorkers < 1 || c.PushWorkers > push.MaxWorkers {
		return &settingError{"KANAL_PUSH_WORKERS", fmt.Errorf("%q is not a number from 1 to %d", workers, push.MaxWorkers)}
	}
	if s := c.PushSubject; s != "" {
		if _, err := mail.ParseAddress(strings.TrimPrefix(s, "mailto:")); !(strings.HasPrefix(s, "mailto:") && err == nil) &&
			!(strings.HasPrefix(s, "https://") && len(s) > len("https://") && !strings.ContainsAny(s, " \t\r\n")) {
			return &settingError{"KANAL_PUSH_SUBJECT", fmt.Errorf("%q is not mailto:address or an https URL", s)}
		}
	}
	if c.PushCAFile != "" {
		if _, err := pushRoots(c.PushCAFile); err != nil {
			return &settingError{"KANAL_PUSH_CA_FILE", err}
		}
	}
	return nil
}
