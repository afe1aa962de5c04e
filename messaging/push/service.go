package push

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/kanal-server/kanal/internal/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the push schema.
func Migrations() db.Migrations { return db.Embedded("push", migrationFiles) }

// Class names of the mailbox envelopes, as messaging/kind defines them.
const (
	classMessage     = "message"
	classReceipt     = "receipt"
	classTransaction = "transaction"
)

// Auth puts identity's session check in front of the subscription routes
// and names the calling device.
type Auth struct {
	Require func(http.Handler) http.Handler
	Device  func(ctx context.Context) (string, bool)
}

// Options configures a Service. Zero durations take the Default… values.
type Options struct {
	DB     *db.DB
	Logger *slog.Logger
	Auth   Auth
	// SealKey (32 bytes) seals the VAPID private key in the database;
	// kanald derives it from the deployment secret.
	SealKey []byte
	// LegacySealKey, if set, is a key the VAPID key may still be sealed
	// under (kanald before the deployment secret derived it from the CA
	// key): a key that opens only under it is sealed again under SealKey.
	LegacySealKey []byte
	// Subject is the VAPID "sub" claim: "mailto:operator@example.org" or
	// an https URL where the push service can reach the operator.
	Subject string
	// AllowedHosts restricts endpoints to these push service hosts; empty
	// allows every public host.
	AllowedHosts HostList
	// Pending returns the classes of the device's envelopes created at or
	// before the given time and not yet acknowledged. It is how the worker
	// learns, from the database every node shares, that a device has not
	// picked up its envelopes — wherever its socket may be.
	Pending func(ctx context.Context, device string, before time.Time) ([]string, error)
	// Newest, if set, returns when the newest waiting envelope of each of
	// up to 500 devices was committed. Run uses it once at start to queue
	// the devices whose envelopes arrived after their last push and whose
	// notification a crash may have lost.
	Newest func(ctx context.Context, devices []string) (map[string]time.Time, error)
	// Live, if set, reports a socket of the device on this node: such a
	// device needs no push.
	Live func(device string) bool
	// HTTPClient sends the pushes; nil means NewHTTPClient(nil, AllowedHosts).
	HTTPClient *http.Client

	Now            func() time.Time
	Grace          time.Duration // a device gets this long to take an envelope before it is pushed
	MinInterval    time.Duration // at least this long between two pushes to one device
	PollInterval   time.Duration // how often the queue is read for due jobs
	RequestTimeout time.Duration // one push request, including a hanging push service
	BaseBackoff    time.Duration // first retry delay; doubles per attempt, with jitter
	MaxBackoff     time.Duration
	MaxAttempts    int // after this many failures a job is given up
	Workers        int // pushes in flight at once on this node
	// HostWorkers is how many of the Workers one push service host may
	// hold at once, so that a hanging or slow service cannot take them
	// all; zero means half of Workers (at least 1).
	HostWorkers int
	// HostCooldown: after a request to a host times out, that host gets
	// one worker until this long has passed without another timeout.
	HostCooldown time.Duration
	// HostBusyDelay is how long a job waits when its host has no free
	// worker.
	HostBusyDelay time.Duration
	// StoreTimeout bounds each write that records a push's outcome. It
	// starts after the send, however long the send took.
	StoreTimeout time.Duration
}

// Stats are the service's counters since start.
type Stats struct {
	Sent    uint64 // pushes a push service accepted
	Retried uint64 // failed attempts that will be retried (429, 5xx, network)
	Failed  uint64 // jobs given up: other 4xx answers, or too many attempts
	Pruned  uint64 // subscriptions removed on 404 or 410
}

// Service holds the subscriptions and sends the wake-ups.
type Service struct {
	o     Options
	store store
	vapid vapidKey
	sub   string // Subject as webpush-go wants it

	hosts *hostSlots

	mu      sync.Mutex
	pending map[string]struct{} // notified devices not yet in the queue
	wake    chan struct{}

	recovered     chan struct{} // closed when Run's recovery scan is over
	recoveredOnce sync.Once

	sent, retried, failed, pruned atomic.Uint64
}

// New returns a Service, loading or creating the deployment's VAPID key.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Logger == nil || o.Pending == nil || o.Auth.Require == nil || o.Auth.Device == nil {
		return nil, errors.New("push.new: DB, Logger, Pending and Auth are required")
	}
	sub, err := vapidSubject(o.Subject)
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Grace, DefaultGrace)
	def(&o.MinInterval, DefaultMinInterval)
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.RequestTimeout, DefaultRequestTimeout)
	def(&o.BaseBackoff, DefaultBaseBackoff)
	def(&o.MaxBackoff, DefaultMaxBackoff)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	def(&o.HostCooldown, DefaultHostCooldown)
	def(&o.HostBusyDelay, DefaultHostBusyDelay)
	def(&o.StoreTimeout, DefaultStoreTimeout)
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Workers > MaxWorkers {
		return nil, fmt.Errorf("push.new: at most %d workers", MaxWorkers)
	}
	if o.HostWorkers <= 0 {
		o.HostWorkers = max(1, o.Workers/2)
	}
	o.HostWorkers = min(o.HostWorkers, o.Workers)
	if o.HTTPClient == nil {
		o.HTTPClient = NewHTTPClient(nil, o.AllowedHosts)
	}
	s := &Service{o: o, store: store{o.DB}, sub: sub, pending: map[string]struct{}{}, wake: make(chan struct{}, 1),
		recovered: make(chan struct{}), hosts: newHostSlots(o.HostWorkers, o.HostCooldown)}
	if s.vapid, err = loadVAPID(ctx, o.DB, o.SealKey, o.LegacySealKey, o.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

// vapidSubject checks the contact and returns it in the form webpush-go
// takes: it prefixes "mailto:" to anything that is not an https URL.
func vapidSubject(s string) (string, error) {
	switch {
	case strings.HasPrefix(s, "mailto:") && strings.Contains(s, "@") && !strings.ContainsAny(s, " \t\r\n"):
		return strings.TrimPrefix(s, "mailto:"), nil
	case strings.HasPrefix(s, "https://") && len(s) > len("https://") && !strings.ContainsAny(s, " \t\r\n"):
		return s, nil
	}
	return "", fmt.Errorf("push.new: VAPID subject %q must be mailto:address or an https URL", s)
}

// PublicKey returns the VAPID public key, base64url: the
// applicationServerKey a browser subscribes with.
func (s *Service) PublicKey() string { return s.vapid.public }

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{Sent: s.sent.Load(), Retried: s.retried.Load(), Failed: s.failed.Load(), Pruned: s.pruned.Load()}
}

// QueueDepth returns the number of devices waiting for a push.
func (s *Service) QueueDepth(ctx context.Context) (int, error) { return s.store.depth(ctx) }

// Subscription returns device's subscription, or ErrNoSubscription.
func (s *Service) Subscription(ctx context.Context, device string) (Subscription, error) {
	return s.store.get(ctx, device)
}

// Subscribe registers or replaces device's subscription after validating
// it; nothing is stored on bad input.
func (s *Service) Subscribe(ctx context.Context, device string, req *SubscriptionRequest) (created bool, err error) {
	sub, err := req.Validate(s.o.AllowedHosts)
	if err != nil {
		return false, err
	}
	return s.store.put(ctx, device, sub, s.o.Now())
}

// Unsubscribe removes device's subscription and any pending push.
func (s *Service) Unsubscribe(ctx context.Context, device string) error {
	return s.o.DB.Tx(ctx, func(tx *sql.Tx) error { return deleteTx(ctx, tx, device) })
}

// DeleteDeviceTx removes a device's subscription inside the caller's
// transaction; kanald runs it when a device is revoked.
func DeleteDeviceTx(ctx context.Context, tx *sql.Tx, device string) error {
	return deleteTx(ctx, tx, device)
}

// Notify tells the service that envelopes for devices have committed. It
// never blocks on the database or the network: the devices are noted in
// memory and Run writes them to the queue at once.
//
// A device with a stream on this node (Options.Live) is not noted: its
// stream delivers the envelopes, and a job for it would only be written
// to the queue to be found live and finished after the grace period — a
// write to the shared database per commit, for nothing, while devices
// are connected. Should the stream end before the device took them,
// StreamEnded notes the device then.
func (s *Service) Notify(devices ...string) {
	if s.o.Live != nil {
		devices = s.notLive(devices)
	}
	s.note(devices)
}

// notLive returns the devices that have no stream on this node. It
// copies only when it drops some and keeps others: devices is the
// caller's.
func (s *Service) notLive(devices []string) []string {
	var keep []string
	for i, d := range devices {
		switch live := s.o.Live(d); {
		case live && keep == nil:
			keep = append(make([]string, 0, len(devices)-1), devices[:i]...)
		case !live && keep != nil:
			keep = append(keep, d)
		}
	}
	if keep == nil {
		return devices
	}
	return keep
}

// StreamEnded tells the service that a stream of device on this node has
// ended. The device is noted as Notify notes a device without a stream:
// envelopes committed while the stream was live were not noted, and those
// it did not take need a push. The job's usual check decides after the
// grace period (envelopes still waiting: a push; none, or a stream again:
// none). The hub calls it after the stream is no longer Live, so an
// envelope is either noted by Notify or waiting when this is.
func (s *Service) StreamEnded(device string) { s.note([]string{device}) }

func (s *Service) note(devices []string) {
	if len(devices) == 0 {
		return
	}
	s.mu.Lock()
	for _, d := range devices {
		s.pending[d] = struct{}{}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// flush writes the noted devices to the queue. On failure they are noted
// again for the next round.
func (s *Service) flush(ctx context.Context) {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return
	}
	devices := make([]string, 0, len(s.pending))
	for d := range s.pending {
		devices = append(devices, d)
	}
	clear(s.pending)
	s.mu.Unlock()
	if err := s.store.enqueue(ctx, devices, s.o.Now(), s.o.Grace, s.o.MinInterval); err != nil {
		s.o.Logger.Warn("push: enqueue", "devices", len(devices), "err", err)
		s.mu.Lock()
		for _, d := range devices {
			s.pending[d] = struct{}{}
		}
		s.mu.Unlock()
	}
}

// Run works the queue until ctx ends, then waits for the pushes in flight
// (which ctx cancels) and writes the last notifications to the queue.
func (s *Service) Run(ctx context.Context) {
	if err := s.recover(ctx); err != nil && ctx.Err() == nil {
		s.o.Logger.Warn("push: recovery scan", "err", err)
	}
	s.recoveredOnce.Do(func() { close(s.recovered) })
	var wg sync.WaitGroup
	slots := make(chan struct{}, s.o.Workers)
	freed := make(chan struct{}, 1)
	tick := time.NewTicker(s.o.PollInterval)
	defer tick.Stop()
	for {
		s.flush(ctx)
		if free := s.o.Workers - len(slots); free > 0 && ctx.Err() == nil {
			jobs, err := s.store.claim(ctx, s.o.Now(), s.o.RequestTimeout+30*time.Second, free)
			if err != nil && ctx.Err() == nil {
				s.o.Logger.Warn("push: claim", "err", err)
			}
			for _, j := range jobs {
				slots <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.process(ctx, j)
					<-slots
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
			}
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.flush(fctx)
			cancel()
			return
		case <-s.wake:
			// Let a burst of sends gather into one queue write rather
			// than one transaction per send.
			select {
			case <-ctx.Done():
			case <-time.After(flushDelay):
			}
		case <-freed:
		case <-tick.C:
		}
	}
}

// recoverBatch is the page size of the recovery scan.
const recoverBatch = 500

// recover closes the one gap Notify leaves: notifications live in memory
// for a few milliseconds before they are queued, and a crash in that time
// loses them. A device whose newest envelope is newer than its last push
// and that has no job may be such a device; it is queued, and the worker's
// usual check (envelopes still waiting after the grace period) decides.
func (s *Service) recover(ctx context.Context) error {
	if s.o.Newest == nil {
		return nil
	}
	after, queued := "", 0
	for {
		page, err := s.store.subscriptions(ctx, after, recoverBatch)
		if err != nil || len(page) == 0 {
			return err
		}
		devices := make([]string, len(page))
		for i, p := range page {
			devices[i] = p.device
		}
		newest, err := s.o.Newest(ctx, devices)
		if err != nil {
			return err
		}
		var missing []string
		for _, p := range page {
			if t, ok := newest[p.device]; ok && t.After(p.lastSent) {
				missing = append(missing, p.device)
			}
		}
		if err := s.store.enqueueMissing(ctx, missing, s.o.Now(), s.o.Grace); err != nil {
			return err
		}
		queued += len(missing)
		after = page[len(page)-1].device
		if len(page) < recoverBatch {
			if queued > 0 {
				s.o.Logger.Info("push: recovery scan queued devices with envelopes newer than their last push", "devices", queued)
			}
			return nil
		}
	}
}

// process decides whether j's device still needs a push, sends it, and
// records the outcome.
func (s *Service) process(ctx context.Context, j job) {
	log := s.o.Logger.With("device", j.device)
	// Bookkeeping must happen even when ctx ended, and each step gets its
	// own deadline from the moment it starts: a context made before the
	// send would already be spent after a slow push service, and the
	// outcome would never be recorded.
	book := func(f func(context.Context) error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.StoreTimeout)
		defer cancel()
		s.logErr(log, f(bctx))
	}
	now := s.o.Now()
	release := func(at time.Time) { // try again then, without counting an attempt
		book(func(c context.Context) error { return s.store.retry(c, j.device, j.attempts, at) })
	}
	sub, err := s.store.get(ctx, j.device)
	if errors.Is(err, ErrNoSubscription) {
		book(func(c context.Context) error { return s.store.drop(c, j.device) })
		return
	}
	if err != nil {
		release(now.Add(s.o.PollInterval))
		return
	}
	if s.o.Live != nil && s.o.Live(j.device) {
		book(func(c context.Context) error { return s.store.finish(c, j, now.Add(s.o.Grace)) })
		return
	}
	classes, err := s.o.Pending(ctx, j.device, now.Add(-s.o.Grace))
	if err != nil {
		release(now.Add(s.o.PollInterval))
		return
	}
	urgency, ttl, ok := wakeFor(classes)
	if !ok {
		// The job fell due with its first notification, but a later one
		// may have come since: its envelopes are still inside their own
		// grace period and were not looked at. Look again when it ends.
		if due := time.UnixMilli(j.notifiedAt).Add(s.o.Grace); due.After(now) {
			book(func(c context.Context) error { return s.store.retry(c, j.device, 0, due) })
			return
		}
		// Taken in time, or only receipts: nothing to wake for.
		book(func(c context.Context) error { return s.store.finish(c, j, now.Add(s.o.Grace)) })
		return
	}
	host := endpointHost(sub.Endpoint)
	done, ok := s.hosts.acquire(host, s.o.Now())
	if !ok {
		// This push service already has its share of the workers (or is
		// cooling down after timeouts): leave the job for later, so that
		// the workers go to devices on other push services.
		release(s.o.Now().Add(s.o.HostBusyDelay))
		return
	}
	status, retryAfter, err := s.send(ctx, sub, urgency, ttl)
	done(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil, s.o.Now())
	switch {
	case err != nil && ctx.Err() != nil:
		// Shutting down: the job stays, due at once for the next start.
		release(now)
	case err == nil && status >= 200 && status < 300:
		s.sent.Add(1)
		book(func(c context.Context) error { return s.store.sent(c, j, sub.Endpoint, s.o.Now(), s.o.MinInterval) })
	case err == nil && (status == http.StatusNotFound || status == http.StatusGone):
		book(func(c context.Context) error {
			pruned, err := s.store.prune(c, j.device, sub.Endpoint)
			if pruned {
				s.pruned.Add(1)
				log.Info("push: subscription expired at the push service, removed", "status", status)
			}
			return err
		})
	case err != nil || status == http.StatusTooManyRequests || status >= 500:
		attempts := j.attempts + 1
		if attempts >= s.o.MaxAttempts {
			s.failed.Add(1)
			log.Warn("push: giving up", "attempts", attempts, "status", status, "err", err)
			book(func(c context.Context) error { return s.store.drop(c, j.device) })
			return
		}
		s.retried.Add(1)
		delay := max(s.backoff(attempts), retryAfter)
		log.Debug("push: will retry", "attempts", attempts, "status", status, "err", err, "in", delay)
		book(func(c context.Context) error { return s.store.retry(c, j.device, attempts, s.o.Now().Add(delay)) })
	default:
		// 400, 401, 403, 413 …: the request is wrong for this push service
		// and sending it again will not help. A 403 usually means the
		// service refused the VAPID token or its contact (sub), which the
		// operator must fix: name the service.
		s.failed.Add(1)
		log.Warn("push: refused by the push service", "status", status, "host", host, "subject", s.sub)
		book(func(c context.Context) error { return s.store.drop(c, j.device) })
	}
}

func (s *Service) logErr(log *slog.Logger, err error) {
	if err != nil {
		log.Warn("push: queue update", "err", err)
	}
}

// wakeFor maps the classes of waiting envelopes to the push's Urgency and
// TTL: transactions (offers, payment requests) are high, messages normal,
// and receipts alone never wake a device.
func wakeFor(classes []string) (webpush.Urgency, int, bool) {
	var msg bool
	for _, c := range classes {
		switch c {
		case classTransaction:
			return webpush.UrgencyHigh, ttlTransaction, true
		case classReceipt:
		default: // message, and any class kanal adds later
			msg = true
		}
	}
	return webpush.UrgencyNormal, ttlMessage, msg
}

// backoff is the delay before attempt n+1: BaseBackoff·2^(n-1), capped at
// MaxBackoff, of which a random half is taken off so that devices that
// failed together do not retry together.
func (s *Service) backoff(n int) time.Duration {
	d := s.o.MaxBackoff
	if n-1 < 30 {
		d = min(s.o.BaseBackoff<<(n-1), s.o.MaxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// send posts one encrypted wake-up and returns the status and any
// Retry-After.
func (s *Service) send(ctx context.Context, sub Subscription, u webpush.Urgency, ttl int) (int, time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	resp, err := webpush.SendNotificationWithContext(rctx, []byte(WakePayload),
		&webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{P256dh: sub.P256dh, Auth: sub.Auth}},
		&webpush.Options{HTTPClient: s.o.HTTPClient, Subscriber: s.sub, Topic: Topic, TTL: ttl, Urgency: u,
			VAPIDPublicKey: s.vapid.public, VAPIDPrivateKey: s.vapid.private})
	if err != nil {
		// The endpoint URL is a capability: keep it out of errors and
		// logs, naming only the push service's host.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, 0, fmt.Errorf("push.send to %s: %w", endpointHost(sub.Endpoint), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxRespBytes))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), s.o.Now()), nil
}

func endpointHost(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil {
		return u.Host
	}
	return "?"
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), capped.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(h); err == nil {
		d = time.Duration(min(secs, int(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
