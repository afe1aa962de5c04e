package mailbox

import "github.com/kanal-server/kanal/messaging/mailbox/wire"

// The envelope, the close codes and the limits a device needs live in
// package wire, which the SDK imports without the server.
type Envelope = wire.Envelope

const (
	ClassBroadcast     = wire.ClassBroadcast
	MaxAckBatch        = wire.MaxAckBatch
	MaxFrameBytes      = wire.MaxFrameBytes
	StatusRevoked      = wire.StatusRevoked
	StatusSessionEnded = wire.StatusSessionEnded
	StatusTooSlow      = wire.StatusTooSlow
)

// NewEnvelopeID returns a random 128-bit envelope id.
func NewEnvelopeID() string { return wire.NewEnvelopeID() }
