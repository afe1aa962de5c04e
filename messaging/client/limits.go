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

	// MaxArchivedSessions is how many earlier sessions with a device are
	// kept, besides the current one, to read what the peer sent under
	// them (after both devices started a session at once, or a new
	// session replaced one). An older session is dropped: messages still
	// under way in it are lost.
	MaxArchivedSessions = 4

	// MaxStartedSessions is how many initial messages of a device are
	// remembered as having started a session, so a replay of one of them
	// is refused even after its session has left the archive.
	MaxStartedSessions = 64

	// MonitorBatch is how many log entries the monitor asks for at a
	// time (the server's most per request).
	MonitorBatch = 1000

	// LogTileHeight is the height of the log's hash tiles
	// (GET /v1/log/tile/): 8, 256 hashes a tile, as sumdb's.
	LogTileHeight = 8

	// DefaultTimeout bounds a request when Options has no HTTPClient.
	DefaultTimeout = 30 * time.Second
)

// maxCachedStatuses bounds the certificate statuses a client keeps.
const maxCachedStatuses = 10000

// maxCachedTiles bounds the verified hash tiles one monitor poll keeps.
const maxCachedTiles = 4096
