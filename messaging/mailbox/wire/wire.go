// Package wire is the part of the mailbox's protocol a device needs: the
// envelope it receives, the stream's close codes and the limits it must
// respect. It imports nothing of the server, so the SDK (and the web app
// built from it) does not carry the mailbox's store, bus or hub; package
// mailbox declares the same names as aliases of these.
package wire

import (
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/coder/websocket"
)

// Envelope is one ciphertext for one recipient device. The server knows
// who sends to whom, in which conversation, and a coarse class for push and
// retention; never what the ciphertext says.
type Envelope struct {
	ID           string    `json:"id"`
	Seq          int64     `json:"seq"`
	Conversation string    `json:"conversation"`
	Sender       string    `json:"sender_device"`
	Recipient    string    `json:"recipient_device"`
	Class        string    `json:"class"`
	Ciphertext   []byte    `json:"ciphertext"`
	ServerTime   time.Time `json:"server_ts"`
}

// NewEnvelopeID returns a random 128-bit envelope id.
func NewEnvelopeID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ClassBroadcast is the class of an envelope whose body is stored once for
// all its recipients (a broadcast's announcement): each recipient's
// mailbox row holds only the body's id, and reading the mailbox (Fetch)
// puts the body back, so a device receives it like any other envelope.
const ClassBroadcast = "broadcast"

// Close codes a device may see, besides the standard ones (1001 when the
// server shuts down, 1007 for a frame that is not UTF-8 JSON, 1008 for a
// frame that breaks the protocol, 1009 for a frame that is too large).
//
// 4000 ("replaced by a newer connection") is retired: a device may hold
// several streams at once (MaxStreams), and a new one no longer closes the
// others. The code is not reused.
const (
	StatusRevoked websocket.StatusCode = 4001 // the device was revoked
	// StatusSessionEnded: the session the stream was opened with has
	// ended — logged out, expired, its login revoked (refresh token
	// reuse, password change, key change). Refresh or log in, then
	// connect again.
	StatusSessionEnded websocket.StatusCode = 4002
	StatusTooSlow      websocket.StatusCode = 4008 // the socket did not answer a ping in time
)

// Limits of the stream a device must respect (the others are in package
// mailbox's limits.go).
const (
	// MaxAckBatch caps the ids in one acknowledgement.
	MaxAckBatch = 512

	// MaxFrameBytes is the ciphertext a server frame carries at most
	// (a single larger envelope still goes alone).
	MaxFrameBytes = 256 << 10
)
