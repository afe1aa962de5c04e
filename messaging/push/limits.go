package push

import "time"

// Limits on what a device may register.
const (
	MaxEndpoint  = 1024 // bytes of an endpoint URL; real push services use 150–500
	maxBody      = 4 << 10
	p256dhLen    = 65 // an uncompressed P-256 point: 0x04 || X || Y
	authLen      = 16 // RFC 8291 section 3.2: the auth secret is 16 bytes
	maxRespBytes = 64 << 10
)

// Defaults for Options; each can be overridden.
const (
	DefaultGrace          = 2 * time.Second
	DefaultMinInterval    = 10 * time.Second
	DefaultPollInterval   = time.Second
	DefaultRequestTimeout = 15 * time.Second
	DefaultBaseBackoff    = time.Second
	DefaultMaxBackoff     = 10 * time.Minute
	DefaultMaxAttempts    = 10
	DefaultWorkers        = 16
	MaxWorkers            = 1024
	DefaultHostCooldown   = time.Minute
	DefaultHostBusyDelay  = time.Second
	DefaultStoreTimeout   = 10 * time.Second
	// flushDelay is how long notifications gather before they are written
	// to the queue together.
	flushDelay = 20 * time.Millisecond
	// maxRetryAfter caps a push service's Retry-After: a job is not parked
	// for longer than this on one answer.
	maxRetryAfter = time.Hour
	// TTLs (seconds) the push service keeps an undelivered wake-up.
	ttlMessage     = 24 * 60 * 60
	ttlTransaction = 24 * 60 * 60
)

// Topic is the Topic header (RFC 8030 section 5.4) of every wake-up: a push
// service keeps at most one undelivered message per topic and
// subscription, so a newer wake-up replaces an older one still waiting.
// It is the same for every device and so tells the push service nothing.
const Topic = "kanal-wake"

// WakePayload is the plaintext of every push: a version and a type, no
// content, no sender, no count, no conversation. The library pads it to a
// full record, so its length tells nothing either. The web app's service
// worker (webapp/static/sw.js) shows a notification for it and for
// nothing else.
const WakePayload = `{"v":1,"t":"wake"}`
