package client

import "time"

// Limits and defaults of the SDK.
const (
	// PrekeyBatch is how many one-time prekeys of each kind Publish and
	// Replenish upload at a time.
	PrekeyBatch = 100

	// MaxResponseBytes caps a response body from the server: an
	// organisation claim with many agents' ML-KEM keys and certificates.
	MaxResponseBytes = 8 << 20

	// MaxMessageBytes caps an encoded Message.
	MaxMessageBytes = 512 << 10

	// StatusMaxAge is how long a verified certificate status (the CA's
	// signed OCSP answer about one peer device) is reused before the next
	// check asks again.
	StatusMaxAge = time.Minute

	// DefaultTimeout bounds a request when Options has no HTTPClient.
	DefaultTimeout = 30 * time.Second
)

// maxCachedStatuses bounds the certificate statuses a client keeps.
const maxCachedStatuses = 10000
