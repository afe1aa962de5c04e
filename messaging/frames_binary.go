package messaging

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// Sends on a stream that speaks binary frames (kanal.bin.v1,
// docs/api-messaging.md "Binary frames"): the same send, answer and
// refusal as the JSON frames in frames.go, with the ciphertexts as bytes.

// minSendEnvelope is the fewest bytes an encoded envelope of a send takes:
// a device id's length byte and the ciphertext's four length bytes.
const minSendEnvelope = 1 + 4

// AppendSendFrame appends a binary send frame. An envelope's ciphertext
// is its Data, or else its Ciphertext decoded from base64.
func AppendSendFrame(b []byte, ref string, req *SendRequest) ([]byte, error) {
	for _, f := range [...]struct{ name, v string }{{"ref", ref}, {"to.account_id", req.To.AccountID},
		{"to.org_id", req.To.OrgID}, {"to.group_id", req.To.GroupID}, {"client_id", req.ClientID}, {"class", req.Class}} {
		if err := binframe.CheckString(f.name, f.v); err != nil {
			return b, err
		}
	}
	if len(req.Envelopes) > 0xffff {
		return b, fmt.Errorf("messaging: a send frame holds at most 65535 envelopes, not %d", len(req.Envelopes))
	}
	b = append(b, wire.FrameSend)
	b = binframe.AppendString(b, ref)
	b = binframe.AppendString(b, req.To.AccountID)
	b = binframe.AppendString(b, req.To.OrgID)
	b = binframe.AppendString(b, req.To.GroupID)
	b = binframe.AppendString(b, req.ClientID)
	b = binframe.AppendString(b, req.Class)
	b = binframe.AppendU16(b, uint16(len(req.Envelopes)))
	for i := range req.Envelopes {
		e := &req.Envelopes[i]
		if err := binframe.CheckString("device_id", e.DeviceID); err != nil {
			return b, err
		}
		ct := e.Data
		if ct == nil {
			var err error
			if ct, err = base64.StdEncoding.Strict().DecodeString(e.Ciphertext); err != nil {
				return b, fmt.Errorf("messaging: envelopes[%d].ciphertext: not standard base64", i)
			}
		}
		b = binframe.AppendString(b, e.DeviceID)
		b = binframe.AppendBytes(b, ct)
	}
	return b, nil
}

// DecodeSendFrame decodes a binary send frame: its ref and request, each
// envelope's ciphertext in Data (aliasing p). It checks the frame's form;
// the request is checked as any send is.
func DecodeSendFrame(p []byte) (ref string, req *SendRequest, err error) {
	r := binframe.NewReader(p)
	if t := r.U8("type"); r.Err() == nil && t != wire.FrameSend {
		return "", nil, fmt.Errorf("%w: type 0x%02x is not a send frame", binframe.ErrMalformed, t)
	}
	req = &SendRequest{}
	ref = r.String("ref")
	req.To.AccountID = r.String("to.account_id")
	req.To.OrgID = r.String("to.org_id")
	req.To.GroupID = r.String("to.group_id")
	req.ClientID = r.String("client_id")
	req.Class = r.String("class")
	if n := r.Count("envelopes", minSendEnvelope); n > 0 {
		req.Envelopes = make([]SendEnvelope, n)
		for i := range req.Envelopes {
			req.Envelopes[i].DeviceID = r.String("device_id")
			req.Envelopes[i].Data = r.Bytes("ciphertext", wire.MaxCiphertext)
		}
	}
	if err := r.Done(); err != nil {
		return "", nil, err
	}
	return ref, req, nil
}

// AppendBinary appends the sent frame in binary form; the envelope ids
// go in device id order.
func (f SentFrame) AppendBinary(b []byte) ([]byte, error) {
	resp := f.Response
	if resp == nil {
		return b, fmt.Errorf("messaging: a sent frame without a response")
	}
	for _, s := range [...]string{f.Ref, resp.ConversationID, resp.ClientID} {
		if err := binframe.CheckString("sent", s); err != nil {
			return b, err
		}
	}
	if len(resp.EnvelopeIDs) > 0xffff {
		return b, fmt.Errorf("messaging: a sent frame holds at most 65535 envelope ids")
	}
	devices := make([]string, 0, len(resp.EnvelopeIDs))
	for d, id := range resp.EnvelopeIDs {
		if err := binframe.CheckString("device_id", d); err != nil {
			return b, err
		}
		if err := binframe.CheckString("envelope_id", id); err != nil {
			return b, err
		}
		devices = append(devices, d)
	}
	slices.Sort(devices)
	b = append(b, wire.FrameSent)
	b = binframe.AppendString(b, f.Ref)
	b = binframe.AppendString(b, resp.ConversationID)
	b = binframe.AppendString(b, resp.ClientID)
	b = binframe.AppendTime(b, resp.ServerTime)
	b = binframe.AppendU16(b, uint16(len(devices)))
	for _, d := range devices {
		b = binframe.AppendString(b, d)
		b = binframe.AppendString(b, resp.EnvelopeIDs[d])
	}
	return b, nil
}

// DecodeSentFrame decodes a binary sent frame. A device named twice is
// malformed.
func DecodeSentFrame(p []byte) (ref string, resp *SendResponse, err error) {
	r := binframe.NewReader(p)
	if t := r.U8("type"); r.Err() == nil && t != wire.FrameSent {
		return "", nil, fmt.Errorf("%w: type 0x%02x is not a sent frame", binframe.ErrMalformed, t)
	}
	ref = r.String("ref")
	resp = &SendResponse{}
	resp.ConversationID = r.String("conversation_id")
	resp.ClientID = r.String("client_id")
	resp.ServerTime = r.Time("server_ts")
	n := r.Count("envelope_ids", 2)
	resp.EnvelopeIDs = make(map[string]string, n)
	for range n {
		d, id := r.String("device_id"), r.String("envelope_id")
		if _, dup := resp.EnvelopeIDs[d]; dup && r.Err() == nil {
			return "", nil, fmt.Errorf("%w: device %q twice", binframe.ErrMalformed, d)
		}
		resp.EnvelopeIDs[d] = id
	}
	if err := r.Done(); err != nil {
		return "", nil, err
	}
	return ref, resp, nil
}

// AppendBinary appends the send_failed frame in binary form.
func (f SendFailedFrame) AppendBinary(b []byte) ([]byte, error) {
	j, err := json.Marshal(f.Problem)
	if err != nil {
		return b, err
	}
	return wire.AppendProblemFrame(b, wire.FrameSendFailed, f.Ref, j)
}

// BinaryFrames handles the binary frames the send path adds to the
// stream; it has the shape of mailbox.BinaryFrameHandler. A frame that
// does not decode, strictly, closes the stream (1008) and stores nothing.
func (s *Service) BinaryFrames(ctx context.Context, device string, frame []byte) (any, error) {
	if len(frame) == 0 || frame[0] != wire.FrameSend {
		return nil, fmt.Errorf("%w: binary frame type %v", ErrUnknownFrame, frame[:min(len(frame), 1)])
	}
	ref, req, err := DecodeSendFrame(frame)
	if err != nil {
		return nil, fmt.Errorf("%w: send frame: %v", ErrInvalid, err)
	}
	return s.frameSend(ctx, device, ref, req)
}
