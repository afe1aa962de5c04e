package client

import "github.com/coder/websocket"

// dialOptions authenticates the stream in a browser, where a websocket
// cannot carry an Authorization header: the token travels as the second of
// two subprotocols ("kanal", "kanal.bearer.<token>"), which the server reads
// only on /v1/stream and answers by selecting "kanal" (docs/web.md), or
// binary frames (kanal.bin.v1), offered first, when it speaks them.
func (c *Client) dialOptions() *websocket.DialOptions {
	return &websocket.DialOptions{Subprotocols: append(c.subprotocols(), "kanal.bearer."+*c.token.Load())}
}
