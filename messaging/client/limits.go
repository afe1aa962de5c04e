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

	// CRLMaxAge is how long a fetched revocation list is reused before
	// the next check fetches a new one.
	CRLMaxAge = time.Minute

	// DefaultTimeout bounds a request when Options has no HTTPClient.
	DefaultTimeout = 30 * time.Second
)
