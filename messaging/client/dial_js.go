package client

import "github.com/coder/websocket"

// dialOptions authenticates the stream in a browser, where a websocket
// cannot carry an Authorization header: the token travels as the second of
// two subprotocols ("kanal", "kanal.bearer.<token>"), which the server reads
// only on /v1/stream and answers by selecting "kanal" (docs/web.md).
func (c *Client) dialOptions() *websocket.DialOptions {
	return &websocket.DialOptions{Subprotocols: []string{"kanal", "kanal.bearer." + *c.token.Load()}}
}
