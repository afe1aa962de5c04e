//go:build unix && !linux

package mailbox

// queued is Linux's (idleconn_queue_linux.go); elsewhere the socket's
// queues are not asked.
func (c *idleConn) queued() (in, out int, ok bool) { return 0, 0, false }
