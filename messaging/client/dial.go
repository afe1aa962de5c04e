//go:build !js

package client

import (
	"net/http"

	"github.com/coder/websocket"
)

// dialOptions authenticates the stream with the session's bearer token in
// the Authorization header, and offers binary frames (a server that does
// not speak them selects "kanal", JSON).
func (c *Client) dialOptions() *websocket.DialOptions {
	return &websocket.DialOptions{HTTPClient: c.hc, Subprotocols: c.subprotocols(),
		HTTPHeader: http.Header{"Authorization": {"Bearer " + *c.token.Load()}}}
}
