//go:build !js

package client

import (
	"net/http"

	"github.com/coder/websocket"
)

// dialOptions authenticates the stream with the session's bearer token in
// the Authorization header.
func (c *Client) dialOptions() *websocket.DialOptions {
	return &websocket.DialOptions{HTTPClient: c.hc,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + *c.token.Load()}}}
}
