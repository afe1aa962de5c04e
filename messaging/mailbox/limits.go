package mailbox

import (
	"time"

	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// Quota bounds one device's mailbox; see Store.AppendWithinTx. A zero
// field is no limit.
type Quota struct {
	MaxEnvelopes int64
	MaxBytes     int64
}

// Limits of the mailbox and the stream.
const (
	// MaxCiphertext is the largest envelope body; attachments travel as
	// blobs and only their reference and key go into an envelope.
	MaxCiphertext = wire.MaxCiphertext

	// FetchBatch is how many envelopes one read of a mailbox returns.
	FetchBatch = 128

	// MaxInFlight is how many envelopes a connection may hold sent but
	// unacknowledged before the server stops sending: flow control, so a
	// device that does not ack cannot make the server read its whole
	// mailbox into memory. Each of a device's streams has its own window;
	// a device holds at most MaxStreams*MaxInFlight on a node.
	MaxInFlight = 512

	// MaxStreams is how many streams one device may hold open on one
	// node at once (a chat window, a second command, a tab). One more is
	// refused before the upgrade with 429 too-many-streams.
	MaxStreams = 8

	// WriteTimeout bounds one websocket write. A socket that cannot take a
	// frame in this time is stalled: it is closed, and the device catches up
	// from its mailbox when it reconnects.
	WriteTimeout = 10 * time.Second

	// MaxFrame caps a frame from a device.
	MaxFrame = 256 << 10

	// FrameTimeout is how long a frame from a device may take from its
	// first byte to its last. What has come of a frame is held in memory
	// until it is complete, so a device that starts frames and never
	// finishes them would pin up to MaxFrame per connection for as long as
	// it answers pings; after FrameTimeout it is closed with 4008. A full
	// MaxFrame in this time needs about 70 kbit/s.
	FrameTimeout = 30 * time.Second

	// DefaultRetention is how long an undelivered envelope is kept.
	DefaultRetention = 30 * 24 * time.Hour

	// PingInterval keeps idle connections alive through proxies and finds
	// dead peers. Each ping is also followed by a look at the device's
	// mailbox head (and a read of the mailbox if it holds more than the
	// stream has sent: pinged.go), so a lost wake-up delays an envelope
	// by at most this long, pingedDelay and the wake-up's grace. A
	// stream's first ping comes at a random point of its first interval
	// (firstAfter), so that streams opened together do not ping together.
	PingInterval = 30 * time.Second

	// SessionRecheckInterval is how often a stream asks whether its
	// session still holds. Sessions that end close their streams at once
	// through the bus; this check closes one whose word was lost. The
	// first check, like the first ping, comes at a random point of its
	// first interval.
	SessionRecheckInterval = 2 * time.Minute

	// AckInterval is how often a stream writes acknowledgements at most
	// (besides one write whenever MaxAckBatch of them wait): acks that
	// come faster are gathered into the next write.
	AckInterval = 100 * time.Millisecond

	// maxEndAge is how old a session end from the bus may be. Older ones
	// are ignored (a replay, or nodes whose clocks are far apart; the
	// session check then closes the streams). maxEndMessage caps its size.
	maxEndAge     = time.Minute
	maxEndMessage = 4 << 10

	// wakeBuffer is the node's queue of wake-ups between NATS and the
	// hub's dispatch. Dispatch is a map lookup and a non-blocking signal,
	// so the queue fills only if the node stalls; wake-ups beyond it are
	// dropped and the envelopes wait in the mailbox (see PingInterval).
	wakeBuffer = 16384

	// maxCarried is the most ciphertext one wake-up carries to the node
	// that holds the recipient's socket; larger envelopes are read from
	// the mailbox there. maxCarriedWakes is how many carrying wake-ups a
	// connection keeps between two turns of its pump before it reads the
	// mailbox instead.
	maxCarried      = 16 << 10
	maxCarriedWakes = 64
)
