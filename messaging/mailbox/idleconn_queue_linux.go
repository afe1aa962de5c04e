package mailbox

import (
	"syscall"
	"unsafe"
)

// queued reports the bytes that wait in the socket's kernel queues: in,
// received from the device and not yet read by this node (plus any the
// node has read into a borrowed buffer and not yet handed out); out,
// written by this node and not yet acknowledged by the device's TCP
// (unsent or in flight: the device is not taking them). ok is false when
// the socket could not be asked.
func (c *idleConn) queued() (in, out int, ok bool) {
	var ein, eout syscall.Errno
	err := c.rc.Control(func(fd uintptr) {
		in, ein = ioctlInt(fd, syscall.TIOCINQ)
		out, eout = ioctlInt(fd, syscall.TIOCOUTQ)
	})
	if err != nil || ein != 0 || eout != 0 {
		return 0, 0, false
	}
	if c.buffered.Load() {
		in++
	}
	return in, out, true
}

// ioctlInt asks the socket for one int (SIOCINQ and SIOCOUTQ, tcp(7)).
func ioctlInt(fd, req uintptr) (int, syscall.Errno) {
	var v int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(&v)))
	return int(v), e
}
