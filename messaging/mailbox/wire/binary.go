package wire

import (
	"encoding/json"
	"fmt"

	"github.com/kanal-server/kanal/internal/binframe"
)

// Binary frames (the subprotocol kanal.bin.v1, docs/api-messaging.md
// "Binary frames"). The first byte of a frame is its type; the fields
// follow in the order the doc gives, with nothing after the last. Types
// from the device have the high bit clear, the server's have it set.
const (
	FrameAck        byte = 0x01 // device: acknowledge envelopes
	FrameSend       byte = 0x02 // device: a send (messaging)
	FrameEnvelopes  byte = 0x81 // server: envelopes in mailbox order
	FrameSynced     byte = 0x82 // server: the backlog is through
	FrameSent       byte = 0x83 // server: a send was stored (messaging)
	FrameSendFailed byte = 0x84 // server: a send was refused (messaging)
	FrameProblem    byte = 0x85 // server: a frame was refused, the stream goes on
)

// MaxCiphertext is the largest envelope body; attachments travel as
// blobs (package mailbox says the same, from here).
const MaxCiphertext = 64 << 10

// minEnvelope is the fewest bytes one encoded envelope takes: four empty
// strings and an empty id (a length byte each), seq and time (8 each),
// and the ciphertext's length (4).
const minEnvelope = 5*1 + 8 + 8 + 4

// AppendEnvelopes appends an envelopes frame holding envs (1..65535).
func AppendEnvelopes(b []byte, envs []Envelope) ([]byte, error) {
	if len(envs) == 0 || len(envs) > 0xffff {
		return b, fmt.Errorf("wire: an envelopes frame holds 1..65535 envelopes, not %d", len(envs))
	}
	b = append(b, FrameEnvelopes)
	return appendEnvelopeList(b, envs)
}

func appendEnvelopeList(b []byte, envs []Envelope) ([]byte, error) {
	b = binframe.AppendU16(b, uint16(len(envs)))
	for i := range envs {
		e := &envs[i]
		for _, s := range [...]string{e.ID, e.Conversation, e.Sender, e.Recipient, e.Class} {
			if err := binframe.CheckString("envelope", s); err != nil {
				return b, err
			}
		}
		b = binframe.AppendString(b, e.ID)
		b = binframe.AppendI64(b, e.Seq)
		b = binframe.AppendString(b, e.Conversation)
		b = binframe.AppendString(b, e.Sender)
		b = binframe.AppendString(b, e.Recipient)
		b = binframe.AppendString(b, e.Class)
		b = binframe.AppendTime(b, e.ServerTime)
		b = binframe.AppendBytes(b, e.Ciphertext)
	}
	return b, nil
}

// DecodeEnvelopes decodes an envelopes frame. The ciphertexts alias p.
func DecodeEnvelopes(p []byte) ([]Envelope, error) {
	r := binframe.NewReader(p)
	if t := r.U8("type"); r.Err() == nil && t != FrameEnvelopes {
		return nil, fmt.Errorf("%w: type 0x%02x is not an envelopes frame", binframe.ErrMalformed, t)
	}
	envs := readEnvelopeList(r)
	if err := r.Done(); err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return nil, fmt.Errorf("%w: an envelopes frame without envelopes", binframe.ErrMalformed)
	}
	return envs, nil
}

func readEnvelopeList(r *binframe.Reader) []Envelope {
	n := r.Count("envelopes", minEnvelope)
	if r.Err() != nil {
		return nil
	}
	envs := make([]Envelope, n)
	for i := range envs {
		e := &envs[i]
		e.ID = r.String("id")
		e.Seq = r.I64("seq")
		e.Conversation = r.String("conversation")
		e.Sender = r.String("sender_device")
		e.Recipient = r.String("recipient_device")
		e.Class = r.String("class")
		e.ServerTime = r.Time("server_ts")
		e.Ciphertext = r.Bytes("ciphertext", MaxCiphertext)
	}
	if r.Err() != nil {
		return nil
	}
	return envs
}

// AppendAck appends an ack frame for ids (at most 65535 of them, each at
// most 255 bytes; the server takes MaxAckBatch per frame).
func AppendAck(b []byte, ids []string) ([]byte, error) {
	if len(ids) > 0xffff {
		return b, fmt.Errorf("wire: an ack frame holds at most 65535 ids, not %d", len(ids))
	}
	b = append(b, FrameAck)
	b = binframe.AppendU16(b, uint16(len(ids)))
	for _, id := range ids {
		if err := binframe.CheckString("ack id", id); err != nil {
			return b, err
		}
		b = binframe.AppendString(b, id)
	}
	return b, nil
}

// DecodeAck decodes an ack frame. It checks the frame's form only: the
// number of ids and their lengths are the stream's rules (MaxAckBatch).
func DecodeAck(p []byte) ([]string, error) {
	r := binframe.NewReader(p)
	if t := r.U8("type"); r.Err() == nil && t != FrameAck {
		return nil, fmt.Errorf("%w: type 0x%02x is not an ack frame", binframe.ErrMalformed, t)
	}
	n := r.Count("ids", 1)
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, r.String("id"))
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return ids, nil
}

// AppendProblemFrame appends a frame of type typ (FrameProblem,
// FrameSendFailed) whose last field is problem, a problem+json object.
func AppendProblemFrame(b []byte, typ byte, ref string, problem json.RawMessage) ([]byte, error) {
	if len(problem) > MaxProblemBytes {
		return b, fmt.Errorf("wire: a problem of %d bytes, at most %d", len(problem), MaxProblemBytes)
	}
	b = append(b, typ)
	if typ == FrameSendFailed {
		if err := binframe.CheckString("ref", ref); err != nil {
			return b, err
		}
		b = binframe.AppendString(b, ref)
	}
	return binframe.AppendBytes(b, problem), nil
}

// MaxProblemBytes caps the problem+json of a problem or send_failed frame.
const MaxProblemBytes = 64 << 10

// DecodeProblemFrame decodes a frame AppendProblemFrame made: its ref
// (empty for FrameProblem) and the problem+json.
func DecodeProblemFrame(p []byte) (typ byte, ref string, problem json.RawMessage, err error) {
	r := binframe.NewReader(p)
	typ = r.U8("type")
	if r.Err() == nil && typ != FrameProblem && typ != FrameSendFailed {
		return 0, "", nil, fmt.Errorf("%w: type 0x%02x is not a problem frame", binframe.ErrMalformed, typ)
	}
	if typ == FrameSendFailed {
		ref = r.String("ref")
	}
	problem = r.Bytes("problem", MaxProblemBytes)
	if err := r.Done(); err != nil {
		return 0, "", nil, err
	}
	if !json.Valid(problem) {
		return 0, "", nil, fmt.Errorf("%w: problem: not JSON", binframe.ErrMalformed)
	}
	return typ, ref, problem, nil
}
