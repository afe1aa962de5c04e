//go:build !unix

package mailbox

import "net"

// idleConn is the Unix systems' (idleconn.go); elsewhere a stream keeps
// buffers of its own.
type idleConn struct{ net.Conn }

func newIdleConn(net.Conn, []byte) *idleConn { return nil }

func (c *idleConn) queues() (in, out int, ok bool) { return 0, 0, false }

func (c *idleConn) drop() error { return c.Conn.Close() }
