package mailbox

import (
	"fmt"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// The envelopes a wake-up carries travel between nodes in the binary
// envelope encoding of the stream (wire.AppendEnvelopes): the payload
// under the bus tag is a whole kanal.bin.v1 envelopes frame, type byte
// 0x81 first. The node that holds the device's streams verifies the tag,
// decodes the payload once, strictly, and hands the decoded envelopes to
// every stream of the device; a stream that speaks binary frames and
// takes exactly the wake-up's envelopes writes the payload itself, which
// the decoding has shown to be a well-formed frame, without encoding
// anything. docs/api-messaging.md ("Between nodes") specifies it.
//
// A payload that does not decode — the JSON array a node of an earlier
// version publishes, a truncated or oversized one — is taken as a plain
// wake-up: the streams read the mailbox. Nothing is dropped.

// maxWakeMessage caps a carrying wake-up's payload: its ciphertexts are
// at most maxCarried bytes together, the rest is at most 1.3 KiB per
// envelope and about 130 bytes in practice. A wake-up that would be
// larger goes out plain.
const maxWakeMessage = 64 << 10

// carriedWake is one wake-up's envelopes, decoded on the node that holds
// the device's streams and shared by all of them: they only read it.
type carriedWake struct {
	envs []Envelope // as they came, all for the device, ciphertexts aliasing frame
	// frame is the same envelopes as a kanal.bin.v1 envelopes frame (the
	// wake-up's payload), or nil when the envelopes came otherwise (a
	// broadcast's fan-out).
	frame []byte
}

// wakeList is what a stream holds of the wake-ups since its pump last
// looked.
type wakeList = []*carriedWake

// appendWake appends the payload of a wake-up carrying envs (all for one
// device, in sequence order), or fails if they cannot be carried.
func appendWake(b []byte, envs []Envelope) ([]byte, error) {
	size := 0
	for i := range envs {
		size += len(envs[i].Ciphertext)
	}
	if size > maxCarried {
		return b, fmt.Errorf("mailbox: %d bytes of ciphertext, a wake-up carries at most %d", size, maxCarried)
	}
	start := len(b)
	b, err := wire.AppendEnvelopes(b, envs)
	if err != nil {
		return b[:start], err
	}
	if len(b)-start > maxWakeMessage {
		return b[:start], fmt.Errorf("mailbox: a wake-up of %d bytes, at most %d", len(b)-start, maxWakeMessage)
	}
	return b, nil
}

// decodeWake decodes the payload of a genuine wake-up for device (its tag
// verified). Besides the frame's own form it checks what appendWake
// promises: at most maxWakeMessage bytes, at most maxCarried bytes of
// ciphertext, every envelope for device with an id and a sequence
// number. The envelopes alias payload.
func decodeWake(device string, payload []byte) (*carriedWake, error) {
	if len(payload) > maxWakeMessage {
		return nil, fmt.Errorf("%w: a wake-up of %d bytes, at most %d", binframe.ErrMalformed, len(payload), maxWakeMessage)
	}
	envs, err := wire.DecodeEnvelopes(payload)
	if err != nil {
		return nil, err
	}
	size := 0
	for i := range envs {
		e := &envs[i]
		size += len(e.Ciphertext)
		switch {
		case e.Recipient != device:
			return nil, fmt.Errorf("%w: an envelope for another device in a wake-up", binframe.ErrMalformed)
		case e.ID == "" || e.Seq < 1:
			return nil, fmt.Errorf("%w: an envelope without id or seq in a wake-up", binframe.ErrMalformed)
		}
	}
	if size > maxCarried {
		return nil, fmt.Errorf("%w: %d bytes of ciphertext in a wake-up, at most %d", binframe.ErrMalformed, size, maxCarried)
	}
	return &carriedWake{envs: envs, frame: payload}, nil
}

// rawFrame is a binary frame already encoded: a carried wake-up's payload.
type rawFrame []byte

// AppendBinary appends the frame as it is.
func (f rawFrame) AppendBinary(b []byte) ([]byte, error) { return append(b, f...), nil }

// wakeSizeHint is the size of envs' wake-up payload, so that it is
// encoded into one allocation.
func wakeSizeHint(envs []Envelope) int {
	n := 3
	for i := range envs {
		e := &envs[i]
		n += minEnvelopeBytes + len(e.ID) + len(e.Conversation) + len(e.Sender) + len(e.Recipient) + len(e.Class) + len(e.Ciphertext)
	}
	return min(n, maxWakeMessage+1)
}

// minEnvelopeBytes is what an encoded envelope takes besides its strings
// and ciphertext: five length bytes, seq and time, the ciphertext's length.
const minEnvelopeBytes = 5 + 8 + 8 + 4
