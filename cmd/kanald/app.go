package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/push"
	"github.com/kanal-server/kanal/miniapps"
	"github.com/kanal-server/kanal/miniapps/cases"
	"github.com/kanal-server/kanal/miniapps/forms"
	"github.com/kanal-server/kanal/payments"
	"github.com/kanal-server/kanal/surveys"
	"github.com/kanal-server/kanal/vault"
	"github.com/kanal-server/kanal/webapp"
)

// app wires kanal's domains to the database, the bus and the HTTP edge.
// It is the only place that knows every domain.
type app struct {
	handler http.Handler
	conns   *web.Tracker
	metrics *web.Metrics
	ident   *identity.Service
	tlog    *translog.Log
	batch   *db.Batcher
	hub     *mailbox.Hub
	stop    context.CancelFunc // ends background work such as the expiry sweep
	wg      sync.WaitGroup

	// The domains an account's export and erasure ask (account.go).
	db       *db.DB
	msg      *messaging.Service
	push     *push.Service
	surveys  *surveys.Service
	payments *payments.Service
	vault    *vault.Service
	miniapps *miniapps.Service
	forms    *forms.Catalogue
	cases    *cases.Service
}

// migrations lists every domain's schema, in dependency order.
func migrations() []db.Migrations {
	return []db.Migrations{kanaldMigrations(), identity.Migrations(), translog.Migrations(), messaging.Migrations(), mailbox.Migrations(), push.Migrations(), surveys.Migrations(), payments.Migrations(), vault.Migrations(), miniapps.Migrations(), forms.Migrations(), cases.Migrations()}
}

func newApp(cfg *config, log *slog.Logger, d *db.DB, b *bus.Bus, authority *ca.CA, keys *secretKeys) (*app, error) {
	a := &app{conns: &web.Tracker{}, metrics: web.NewMetrics(), db: d}
	registerStateMetrics(a.metrics.Registry, d, b)

	mailer, err := newMailer(cfg, log)
	if err != nil {
		return nil, err
	}
	// The transparency log, signed with a key of its own (not the CA's),
	// records every binding identity and messaging vouch for.
	origin := cfg.LogOrigin
	if origin == "" {
		origin = translog.DefaultOrigin(authority.Root().Raw)
	}
	signer, vkey, err := translog.LoadOrCreateKey(cfg.logKeyFile(), origin, rand.Reader)
	if err != nil {
		return nil, &settingError{"KANAL_LOG_KEY_FILE", err}
	}
	a.tlog, err = translog.New(context.Background(), translog.Options{DB: d, Signer: signer, Verifier: vkey, Logger: log,
		Witnesses: cfg.LogWitnesses, WitnessQuorum: cfg.LogWitnessQuorum})
	if err != nil {
		return nil, &settingError{"KANAL_LOG_KEY_FILE", err}
	}
	eid, err := cfg.EID.relyingParty()
	if err != nil {
		return nil, err
	}
	// The deployment notary, from the shared CA directory, signs what the
	// server itself states: notices, survey board heads and results, the
	// verified names of eID logins.
	notary, err := authority.Notary(cfg.caDir(), time.Now())
	if err != nil {
		return nil, &settingError{"KANAL_CA_DIR", fmt.Errorf("notary: %w", err)}
	}
	opts := identity.Options{DB: d, CA: authority, Mailer: mailer, Logger: log, TrustProxy: cfg.TrustProxy, Log: a.tlog,
		Secret: keys.secret, LegacySecret: keys.legacy, Notary: notary,
		SignupLimits: identity.SignupLimits{PerClient: cfg.SignupClientLimit, Global: cfg.SignupLimit}}
	if eid != nil {
		opts.EID = eid
	}
	a.ident, err = identity.New(opts)
	if err != nil {
		return nil, err
	}
	if n, err := a.ident.ResealLegacy(context.Background()); err != nil {
		return nil, err
	} else if n > 0 {
		log.Info("organisation keys sealed again under the deployment secret", "count", n)
	}

	// Sends share commits: concurrent sends are stored in one transaction
	// (each still all or nothing), which is what makes durable envelopes
	// cheap enough on one SQLite file or one PostgreSQL round trip.
	// Past about KANAL_SEND_QUEUE_DELAY of commits waiting, sends are
	// refused with 503 rather than queued: latency stays bounded and the
	// sender is told when to come back.
	a.batch = d.NewAdmittingBatcher(groupCommitMax(d.Dialect()), groupCommitAdmission(cfg.SendQueue))
	// Under a moderate load, commits of a few writes each come back to
	// back, and each costs about what a full one does: they are spaced by
	// KANAL_COMMIT_INTERVAL instead (db.Batcher.SetInterval).
	a.batch.SetInterval(cfg.CommitInterval)
	a.metrics.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanal_group_commit_queued",
			Help: "Writes (sends, acknowledgements) waiting in the group commit, the batch being committed included."},
			func() float64 { return float64(a.batch.Stats().Queued) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanal_group_commit_capacity",
			Help: "The group commit's measured rate in writes per second of commit time, over its last dozen or so commits: what the admission bound is derived from."},
			func() float64 { return a.batch.Stats().Capacity }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_sends_refused_total",
			Help:        "Sends refused with 503 overloaded (KANAL_SEND_QUEUE_DELAY, KANAL_SEND_QUEUE_MAX), by where: in_flight (more sends between arrival and answer than the node answers in the delay) or group_commit (its queue deeper than it commits in the delay).",
			ConstLabels: prometheus.Labels{"where": "group_commit"}},
			func() float64 { return float64(a.batch.Stats().Refused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_group_commit_batches_total",
			Help: "Group commits (transactions of the shared batch) since the start."},
			func() float64 { return float64(a.batch.Stats().Batches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_group_commit_writes_total",
			Help: "Writes (sends, acknowledgements) carried by those group commits."},
			func() float64 { return float64(a.batch.Stats().Bodies) }))
	// Where a send's time before its answer goes: the wait for a batch
	// to carry it (the commits before it) and its batch's commit.
	commitSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kanal_group_commit_seconds",
		Help:    "Time from a group commit's start to its commit.",
		Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14)})
	commitWait := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kanal_group_commit_wait_seconds",
		Help:    "Time a write (send, acknowledgement) waited from its queueing to the start of the group commit that carried it: behind earlier commits and for KANAL_COMMIT_INTERVAL.",
		Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14)})
	commitSize := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kanal_group_commit_size",
		Help:    "Writes per group commit.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 8)})
	// A group commit whose shared transaction fails runs its writes again
	// in smaller commits, so nothing is lost and the callers see nothing;
	// only this counter does. conflict (a deadlock or serialization
	// failure on PostgreSQL, busy on SQLite) should stay at zero: the
	// commit locks the mailbox heads in one order (docs/benchmarks.md,
	// "Locks across nodes").
	commitFailed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kanal_group_commit_failures_total",
		Help: "Attempts of a group commit's shared transaction that failed and were run again in smaller commits, by reason: conflict (deadlock, serialization failure, SQLite busy) or error (any other, such as one write's own refusal)."},
		[]string{"reason"})
	conflicts, errs := commitFailed.WithLabelValues("conflict"), commitFailed.WithLabelValues("error")
	a.metrics.Registry.MustRegister(commitSeconds, commitWait, commitSize, commitFailed)
	a.batch.Observe(db.BatchObserver{
		Batch: func(n int, d time.Duration) {
			commitSeconds.Observe(d.Seconds())
			commitSize.Observe(float64(n))
		},
		Waited: func(d time.Duration) { commitWait.Observe(d.Seconds()) },
		Failed: func(err error) {
			if db.Retryable(err) {
				conflicts.Inc()
			} else {
				errs.Inc()
			}
		}})
	mailboxes := mailbox.NewStore(d, mailbox.StoreOptions{Batcher: a.batch, Retention: cfg.Retention})
	var sends *messaging.Service // set below; the hub hands it send frames
	var pusher *push.Service     // set below; told of the streams that end
	busKey := keys.bus
	sendStats := func() messaging.SendStats { return messaging.SendStats{} } // replaced below, with the send path
	a.metrics.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanal_sends_in_flight",
			Help: "Sends between their arrival (HTTP request or stream frame) and their answer on this node."},
			func() float64 { return float64(sendStats().InFlight) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanal_sends_throughput",
			Help: "Sends answered per second on this node, measured over the last few seconds: what the in-flight admission bound is derived from (0 without admission control)."},
			func() float64 { return sendStats().Throughput }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_sends_refused_total",
			Help:        "Sends refused with 503 overloaded (KANAL_SEND_QUEUE_DELAY, KANAL_SEND_QUEUE_MAX), by where: in_flight (more sends between arrival and answer than the node answers in the delay) or group_commit (its queue deeper than it commits in the delay).",
			ConstLabels: prometheus.Labels{"where": "in_flight"}},
			func() float64 { return float64(sendStats().Refused) }))
	hub, err := mailbox.NewHub(mailbox.HubOptions{Store: mailboxes, Bus: b, Logger: log, Tracker: a.conns, BusKey: busKey,
		Frames: func(ctx context.Context, device, typ string, raw json.RawMessage) (any, error) {
			return sends.Frames(ctx, device, typ, raw)
		},
		BinaryFrames: func(ctx context.Context, device string, frame []byte) (any, error) {
			return sends.BinaryFrames(ctx, device, frame)
		},
		// A revoked device, on whichever node it was revoked, is dropped
		// from the device sets the send path keeps in memory.
		Ended: func(e mailbox.SessionEnd) {
			if !e.Revoked || sends == nil {
				return
			}
			if e.Device != "" {
				sends.ForgetDevice(e.Device)
			}
			if e.Account != "" {
				sends.ForgetAccount(e.Account)
			}
		},
		// Web push skips the devices that have a stream here; when one
		// ends, it looks at what the device left waiting.
		StreamEnded: func(device string) {
			if pusher != nil {
				pusher.StreamEnded(device)
			}
		},
		Session: func(r *http.Request) (mailbox.Session, bool) {
			s, ok := identity.SessionFromContext(r.Context())
			return mailbox.Session{Device: s.DeviceID, Account: s.AccountID, Family: s.Family, Expires: s.ExpiresAt, Ref: s.Ref}, ok
		},
		Check: func(ctx context.Context, s mailbox.Session) error {
			return streamVerdict(a.ident.CheckSession(ctx, s.Ref))
		},
		CheckSessions: func(ctx context.Context, ss []mailbox.Session) ([]error, error) {
			refs := make([]string, len(ss))
			for i, s := range ss {
				refs[i] = s.Ref
			}
			errs, err := a.ident.CheckSessions(ctx, refs)
			for i := range errs {
				errs[i] = streamVerdict(errs[i])
			}
			return errs, err
		}})
	if err != nil {
		return nil, err
	}
	// Wherever identity ends sessions (logout, a reused refresh token, a
	// changed password or key, a revoked device), their streams close on
	// every node once the change has committed.
	a.ident.AddSessionEndNotice(func(e identity.SessionEnd) {
		err := hub.EndSessions(mailbox.SessionEnd{Reason: e.Reason, Revoked: e.Reason == identity.EndDeviceRevoked,
			Family: e.Family, Device: e.Device, Account: e.Account, KeepFamily: e.KeepFamily})
		if err != nil {
			log.Warn("session end not published; the streams' session checks close them", "reason", e.Reason, "err", err)
		}
	})
	a.hub = hub
	streamed := func(source string, count func() uint64) {
		a.metrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "kanal_stream_envelopes_total", Help: "Envelopes written to device streams on this node, by source: carried by the wake-up, or read from the mailbox.",
			ConstLabels: prometheus.Labels{"source": source}},
			func() float64 { return float64(count()) }))
	}
	streamed("wake", func() uint64 { return hub.Stats().Carried })
	streamed("mailbox", func() uint64 { return hub.Stats().Read })
	a.metrics.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_bus_rejected_total",
			Help: "Bus messages (carried wake-ups, fan-outs, session ends) whose tag did not verify: sent by someone without the deployment's key, or by another deployment on the same NATS."},
			func() float64 { return float64(hub.Stats().Forged) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_bus_undecodable_total",
			Help: "Wake-ups and broadcast fan-outs with a genuine tag that did not decode: a wake-up is taken as a plain one, the streams read the mailbox; a fan-out is ignored, its devices' streams read their mailboxes at the next ping."},
			func() float64 { return float64(hub.Stats().Undecodable) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_stream_ack_writes_total",
			Help: "Writes that deleted acknowledged envelopes, on this node's streams."},
			func() float64 { return float64(hub.Stats().AckWrites) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_stream_ack_frames_total",
			Help: "Ack frames read from devices on this node's streams: one per message when clients acknowledge each alone, fewer when they gather (the Go SDK gathers for up to 100 ms)."},
			func() float64 { return float64(hub.Stats().AckFrames) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_stream_late_reads_total",
			Help: "Streams that read their mailbox after a ping because it held envelopes they had not sent and no wake-up brought them within the grace: mostly lost wake-ups."},
			func() float64 { return float64(hub.Stats().LateReads) }))
	for _, cause := range mailbox.StallCauses {
		a.metrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "kanal_stream_ping_timeouts_total",
			Help:        "Streams closed with 4008 because a ping was not answered in time, by what the socket held then: unread (the device's bytes waited on this node: the node was slow), unsent (the device did not take the node's bytes), quiet (neither), unknown (not asked).",
			ConstLabels: prometheus.Labels{"socket": cause.String()}},
			func() float64 { return float64(hub.Stats().PingTimeouts[cause]) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "kanal_stream_write_timeouts_total",
				Help:        "Streams dropped without a close frame because a write did not finish in time, by what the socket held then: unsent (the device did not take the node's bytes), unread or quiet (the send queue was empty: the node's write did not reach the socket), unknown (not asked).",
				ConstLabels: prometheus.Labels{"socket": cause.String()}},
				func() float64 { return float64(hub.Stats().WriteTimeouts[cause]) }))
	}
	// Web push wakes devices that do not pick up their envelopes.
	pusher, err = newPush(cfg, log, d, keys, a.ident, mailboxes, hub, a.metrics.Registry)
	if err != nil {
		return nil, err
	}
	// The prekey directory and the send path, which stores its envelopes
	// in the mailboxes and wakes the recipients' streams (and, without a
	// stream, their push subscriptions) after commit.
	prekeys, err := messaging.New(messaging.Options{DB: d, Directory: identityDirectory{a.ident}, Logger: log,
		Mailbox: mailboxes, Batcher: a.batch, Admission: cfg.SendQueue, MaxSendsPerWindow: cfg.SendLimit, Notary: notary, Log: a.tlog,
		Roots: authority.Pool(), Fanout: hub.Fanout, DeviceSetTTL: messaging.DefaultDeviceSetTTL,
		Notify: func(devices ...string) { hub.Notify(devices...); pusher.Notify(devices...) },
		Stored: func(envs []mailbox.Envelope) {
			hub.Deliver(envs)
			devices := make([]string, len(envs))
			for i, e := range envs {
				devices[i] = e.Recipient
			}
			pusher.Notify(devices...)
		},
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
	sends = prekeys
	sendStats = prekeys.SendStats
	a.msg, a.push = prekeys, pusher
	a.ident.AddRevocationHook(messaging.DeletePrekeys)
	// A renewed device's published identity key is logged again under its
	// new certificate, in the renewing transaction.
	a.ident.AddRenewalHook(prekeys.LogRenewal)
	// A revoked device loses its undelivered envelopes, in the revoking
	// transaction; its socket, on whichever node holds it, closes with its
	// sessions (above).
	a.ident.AddRevocationHook(mailboxes.DeleteDeviceTx)
	a.ident.AddRevocationHook(push.DeleteDeviceTx)
	// A key change is announced to the account's devices, so that one
	// nobody on the account asked for is seen.
	a.ident.AddKeyChangeNotice(func(account, device string) {
		if err := announceKeyChange(prekeys, account, device); err != nil {
			log.Warn("announce key change", "device", device, "err", err)
		}
	})
	sweepCtx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		sweepExpired(sweepCtx, log, expiry{"mailbox", mailboxes.Expire}, expiry{"attachment blobs", prekeys.ExpireBlobs},
			expiry{"send idempotency rows", prekeys.ExpireSends}, expiry{"group invitations", prekeys.ExpireInvitations},
			expiry{"broadcast records", prekeys.ExpireBroadcasts},
			expiry{"sign-ups", a.ident.ExpireSignups}, expiry{"sessions, tokens, challenges and login throttles", a.ident.ExpireSessions})
	}()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); pusher.Run(sweepCtx) }()

	mux := http.NewServeMux()
	a.ident.Register(mux)
	a.tlog.Register(mux)
	prekeys.Register(mux)
	pusher.Register(mux)
	if err := a.mountSurveys(sweepCtx, mux, log, d, authority, keys, notary, prekeys); err != nil {
		return nil, err
	}
	mux.Handle("GET /v1/stream", a.ident.RequireSession(ca.LevelLow, hub))
	if a.payments, err = mountPayments(paymentsDeps{sweepCtx, &a.wg, mux, cfg, log, d, a.ident, authority, prekeys}); err != nil {
		return nil, err
	}
	if a.vault, err = mountVault(mux, cfg, log, d, a.ident, prekeys); err != nil {
		return nil, err
	}
	if a.forms, err = mountForms(mux, log, d, a.ident, authority); err != nil {
		return nil, err
	}
	if err := a.mountCases(mux, log, d, prekeys, a.payments, a.forms); err != nil {
		return nil, err
	}
	if a.miniapps, err = mountMiniapps(miniappsDeps{sweepCtx, &a.wg, mux, cfg, log, d, a.ident, authority, keys, prekeys, a.payments, a.forms}); err != nil {
		return nil, err
	}
	a.mountAccount(mux, log)
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
	if err := webapp.Register(mux); err != nil {
		return nil, err
	}
	mux.Handle("/", web.NotFound())

	a.handler = web.Handler(mux, web.Options{Logger: log, Metrics: a.metrics})
	return a, nil
}

func (a *app) close() {
	a.stop()
	a.wg.Wait()
	a.hub.Close()
	a.batch.Close()
}

// groupCommitMax is the most writes one group commit carries. On SQLite
// most of a commit is fixed — a WAL frame for every B-tree it touches
// (page 1, each index's leaf, the heads), BEGIN, COMMIT and the fsync —
// and shared by all its writes; with 200 concurrent writers a bound of 64
// kept every commit full, and 256 wrote a quarter fewer bytes and write
// calls per envelope (BenchmarkSendAckCommitSize, docs/benchmarks.md).
// On PostgreSQL a commit is one pipelined round trip whose statements
// take their rows as arrays, so more writes add no statement; at 64 every
// commit was full and a write waited about four commits for its own
// (kanal_group_commit_wait_seconds), at 256 about one.
func groupCommitMax(db.Dialect) int {
	return 256
}

// groupCommitAdmission keeps the admission floor at four commits of 64
// writes whatever groupCommitMax is: a larger commit does not make a
// deeper queue acceptable.
func groupCommitAdmission(a db.Admission) db.Admission {
	if a.MinQueue == 0 {
		a.MinQueue = 4 * 64
	}
	return a
}

// sweepInterval is how often a node deletes envelopes past their retention.
// Every node sweeps; the delete is idempotent.
const sweepInterval = 10 * time.Minute

// expiry is one kind of data with a retention, and how to delete what is
// past it.
type expiry struct {
	what   string
	delete func(context.Context) (int64, error)
}

func sweepExpired(ctx context.Context, log *slog.Logger, kinds ...expiry) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, k := range kinds {
				if n, err := k.delete(ctx); err != nil && ctx.Err() == nil {
					log.Warn("expiry sweep", "what", k.what, "err", err)
				} else if n > 0 {
					log.Info("expiry sweep", "what", k.what, "deleted", n)
				}
			}
		}
	}
}

// identityDirectory gives the prekey directory identity's active devices
// and their certificates, in messaging's terms.
type identityDirectory struct{ s *identity.Service }

func (i identityDirectory) Device(ctx context.Context, id string) (messaging.Device, error) {
	d, err := i.s.Device(ctx, id)
	if errors.Is(err, identity.ErrUnknownDevice) {
		return messaging.Device{}, fmt.Errorf("%w: %w", messaging.ErrUnknownDevice, err)
	}
	return messaging.Device(d), err
}

func (i identityDirectory) AccountDevices(ctx context.Context, account string) ([]messaging.Device, error) {
	ds, err := i.s.AccountDevices(ctx, account)
	return toMessagingDevices(ds), err
}

func (i identityDirectory) DevicesOf(ctx context.Context, accounts []string) ([]messaging.Device, error) {
	ds, err := i.s.DevicesOf(ctx, accounts)
	return toMessagingDevices(ds), err
}

func (i identityDirectory) OrgAgents(ctx context.Context, org string) ([]byte, []messaging.Device, error) {
	cert, ds, err := i.s.OrgAgents(ctx, org)
	if errors.Is(err, identity.ErrUnknownOrg) {
		return nil, nil, fmt.Errorf("%w: %w", messaging.ErrUnknownOrg, err)
	}
	return cert, toMessagingDevices(ds), err
}

func toMessagingDevices(ds []identity.ActiveDevice) []messaging.Device {
	out := make([]messaging.Device, len(ds))
	for i, d := range ds {
		out[i] = messaging.Device(d)
	}
	return out
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
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kanal_db_round_trips_total",
			Help: "Round trips to PostgreSQL since start: statements sent one at a time, statements prepared, and pipelined batches (0 on SQLite)."},
			func() float64 { return float64(d.RoundTrips()) }),
	)
}

// keyChangeTimeout bounds posting a key change notice, which runs after
// the renewal has committed, in its request.
const keyChangeTimeout = 10 * time.Second

// announceKeyChange posts a device.change notice to every device of the
// account, in the account's conversation with itself.
func announceKeyChange(m *messaging.Service, account, device string) error {
	ctx, cancel := context.WithTimeout(context.Background(), keyChangeTimeout)
	defer cancel()
	now := time.Now()
	msg, err := kind.New(fmt.Sprintf("kanal-key-%s-%d", device, now.UnixNano()), now,
		&kind.DeviceChangeBody{AccountID: account, DeviceID: device, Op: "key"})
	if err != nil {
		return err
	}
	raw, err := msg.Marshal()
	if err != nil {
		return err
	}
	return m.PostNotice(ctx, messaging.Notice{Accounts: []string{account},
		Conversation: messaging.DirectConversation(account, account), Message: raw})
}

// streamVerdict is identity's answer about a stream's session in the
// terms of package mailbox.
func streamVerdict(err error) error {
	switch {
	case errors.Is(err, identity.ErrUnknownDevice):
		return fmt.Errorf("%w: %w", mailbox.ErrDeviceRevoked, err)
	case errors.Is(err, identity.ErrSessionEnded):
		return fmt.Errorf("%w: %w", mailbox.ErrSessionEnded, err)
	}
	return err
}
