package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Sends over the stream. A device that holds its /v1/stream open may send
// there instead of POST /v1/messages:
//
//	→ {"type":"send","ref":"r1","request":{…SendRequest…}}
//	← {"type":"sent","ref":"r1","response":{…SendResponse…}}
//	← {"type":"send_failed","ref":"r1","problem":{…problem+json…}}
//
// ref is the device's own correlation id (1..64 of [A-Za-z0-9_-]); the
// request is checked exactly as over HTTP (idempotent by client_id, the
// same rate limit, the same stale-devices answer). A refused send is a
// send_failed frame and the stream stays open; a frame that is not a valid
// send frame closes the stream with 1008.

// SendFrame is a send on the stream.
type SendFrame struct {
	Type    string      `json:"type"` // "send"
	Ref     string      `json:"ref"`
	Request SendRequest `json:"request"`
}

// SentFrame answers an accepted send on the stream.
type SentFrame struct {
	Type     string        `json:"type"` // "sent"
	Ref      string        `json:"ref"`
	Response *SendResponse `json:"response"`
}

// SendFailedFrame answers a refused send on the stream.
type SendFailedFrame struct {
	Type    string       `json:"type"` // "send_failed"
	Ref     string       `json:"ref"`
	Problem *web.Problem `json:"problem"`
}

// ErrUnknownFrame is returned by Frames for a frame type it does not handle.
var ErrUnknownFrame = errors.New("messaging: unknown frame type")

// Frames handles the frame types the send path adds to the stream; it has
// the shape of mailbox.FrameHandler.
func (s *Service) Frames(ctx context.Context, device, typ string, raw json.RawMessage) (any, error) {
	if typ != "send" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownFrame, typ)
	}
	var f SendFrame
	if err := web.DecodeStrict(raw, &f, maxSendBody); err != nil {
		return nil, fmt.Errorf("%w: send frame: %v", ErrInvalid, err)
	}
	return s.frameSend(ctx, device, f.Ref, &f.Request)
}

// frameSend sends a decoded send frame's request: the answer is a sent
// or send_failed frame, an error closes the stream.
func (s *Service) frameSend(ctx context.Context, device, ref string, req *SendRequest) (any, error) {
	if !mailbox.ValidDeviceID(ref) { // the same rule as client ids: 1..64 of [A-Za-z0-9_-]
		return nil, fmt.Errorf("%w: send frame: ref must be 1..64 characters of [A-Za-z0-9_-]", ErrInvalid)
	}
	leave, err := s.gate.enter()
	if err != nil {
		return SendFailedFrame{Type: "send_failed", Ref: ref, Problem: problem(err)}, nil
	}
	defer leave()
	account, err := s.accountOf(ctx, device)
	if err != nil {
		return nil, err // revoked meanwhile: the stream closes
	}
	resp, _, err := s.Send(ctx, Caller{AccountID: account, DeviceID: device}, req)
	if err != nil {
		p := problem(err)
		if p == nil {
			s.log.ErrorContext(ctx, "messaging: send on stream", "device", device, "err", err)
			p = web.Errorf(http.StatusInternalServerError, web.TypeInternal, "Internal error", "the send was not stored; retry with the same client_id")
		}
		return SendFailedFrame{Type: "send_failed", Ref: ref, Problem: p}, nil
	}
	return SentFrame{Type: "sent", Ref: ref, Response: resp}, nil
}

// accountOf returns the account of an active device: from the device sets
// this node keeps (a revocation drops the device from them), else from
// the directory.
func (s *Service) accountOf(ctx context.Context, device string) (string, error) {
	if s.sets != nil {
		if a, ok := s.sets.account(device); ok {
			return a, nil
		}
	}
	d, err := s.dir.Device(ctx, device)
	if err != nil {
		return "", err
	}
	return d.AccountID, nil
}
