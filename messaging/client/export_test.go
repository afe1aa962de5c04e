package client

import (
	"context"

	"github.com/kanal-server/kanal/messaging/kind"
)

// SendRawForTest sends raw as a message's encoded form without checking
// it, as a modified client could: the receiving side must refuse what is
// not valid.
func (c *Client) SendRawForTest(ctx context.Context, to Peer, id string, raw []byte) error {
	_, err := c.sendRaw(ctx, to, id, kind.ClassMessage, raw, false, c.postSend)
	return err
}

// UseJSONFramesForTest makes the client's streams offer JSON frames only,
// as a client from before binary frames does.
func (c *Client) UseJSONFramesForTest() { c.jsonFrames = true }

// DeviceForTest is the id of the stream's device.
func (s *Stream) DeviceForTest() string { return s.c.device }
