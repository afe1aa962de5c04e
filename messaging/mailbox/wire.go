package mailbox

import (
	"encoding/json"
	"fmt"

	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

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

// AppendBinary appends the frame in binary form (kanal.bin.v1).
func (f envelopesFrame) AppendBinary(b []byte) ([]byte, error) {
	return wire.AppendEnvelopes(b, f.Envelopes)
}

// AppendBinary appends the frame in binary form (kanal.bin.v1).
func (f typeFrame) AppendBinary(b []byte) ([]byte, error) {
	if f.Type != "synced" {
		return b, fmt.Errorf("mailbox: no binary form of a %q frame", f.Type)
	}
	return append(b, wire.FrameSynced), nil
}

// AppendBinary appends the frame in binary form (kanal.bin.v1).
func (f problemFrame) AppendBinary(b []byte) ([]byte, error) {
	j, err := json.Marshal(f.Problem)
	if err != nil {
		return b, err
	}
	return wire.AppendProblemFrame(b, wire.FrameProblem, "", j)
}
