package client

import "time"

const (
	// MaxResponseBytes caps a response body the client reads, success or
	// problem. The largest identity answer, a device list with certificates,
	// is far below it.
	MaxResponseBytes = 1 << 20

	// MaxExportBytes caps the answer of ExportAccount: everything the
	// server holds about an account, as JSON.
	MaxExportBytes = 256 << 20

	// maxErrorBodyBytes caps what the client reads of an error answer
	// that is not problem+json (a proxy's HTML page, say).
	maxErrorBodyBytes = 4 << 10

	// DefaultTimeout bounds a whole request when New is given no
	// *http.Client.
	DefaultTimeout = 30 * time.Second
)

// minNonceBytes is the least randomness the client accepts in a login
// challenge; the server sends 32 bytes. A shorter nonce would let a
// malicious server collect signatures it could replay.
const minNonceBytes = 16
