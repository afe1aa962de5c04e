//go:build unix

package mailbox

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// An idle stream holds no read or write buffer.
//
// coder/websocket reads and writes a connection through the bufio.Reader
// and bufio.Writer it is handed at the upgrade, and keeps them for the
// connection's life: with net/http's 4 KiB each, then the 1 and 2 KiB this
// package used, they were most of an idle stream's heap. Now the library
// is handed bufio's smallest buffers (16 bytes) over an idleConn, which
// borrows a buffer from a pool only while bytes pass:
//
//   - Reading, it waits for the socket to become readable holding nothing
//     (syscall.RawConn's Read, the runtime's poller underneath), then reads
//     what has arrived into a borrowed buffer, hands it out, and gives the
//     buffer back once it is read. A read as large as a buffer goes
//     straight into the caller's slice. It is one read(2) per arrival, as
//     with a buffer of its own.
//   - Writing, it follows the frames the library writes (their headers
//     give each one's length) and keeps the start of a frame that bufio
//     flushed before its end in a borrowed buffer; the frame's last bytes
//     go out with it in one writev(2), and the buffer goes back. A frame is
//     one system call, as it was with a 2 KiB buffer, and a larger one too.
//
// Where the connection offers no syscall.RawConn (not a socket, or not a
// Unix system), the stream keeps buffers of its own (streamReadBuffer and
// streamWriteBuffer), as before.

// ioBufferSize is the size of a borrowed buffer: a read takes at most this
// much at once; a frame's head waits in one until the frame is complete.
const ioBufferSize = 4 << 10

var ioBuffers = sync.Pool{New: func() any { b := make([]byte, ioBufferSize); return &b }}

// idleConn is a stream's socket as coder/websocket reads and writes it.
// The library reads from one goroutine at a time and writes whole frames
// under its own lock, so Read and Write each have one caller at a time;
// they share nothing.
type idleConn struct {
	net.Conn
	rc syscall.RawConn

	// Reading: a borrowed buffer holding in[r:w], nil when all is read.
	in     *[]byte
	r, w   int
	readFn func(fd uintptr) bool // c.readFD, made once: a closure a read would allocate
	n      int                   // what readFD read
	rerr   error                 // and its error
	// buffered is in != nil, for queued on another goroutine.
	buffered atomic.Bool

	// writing is set while a Write runs; a Close meanwhile (coder/websocket
	// closes the socket when a write's deadline passes) first keeps what
	// the socket's queues held in cut, which the closed socket can no
	// longer tell (queues).
	writing atomic.Bool
	cut     atomic.Pointer[[2]int]

	// Writing: the frame being written, as far as its header says.
	out   *[]byte // borrowed: bytes written of frames not yet complete
	head  [14]byte
	nhead int    // header bytes of the current frame seen so far
	left  uint64 // payload bytes of the current frame still to come
	vec   [2][]byte
	bufs  net.Buffers // over vec, for writev(2) without allocating
}

// newIdleConn wraps nc, or returns nil when it offers no RawConn. pre are
// bytes net/http had read past the upgrade request: they are read first.
func newIdleConn(nc net.Conn, pre []byte) *idleConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	c := &idleConn{Conn: nc, rc: rc}
	c.readFn = c.readFD
	if len(pre) > 0 {
		b := make([]byte, len(pre))
		copy(b, pre)
		c.in, c.w = &b, len(b)
		c.buffered.Store(true)
	}
	return c
}

func (c *idleConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.in != nil {
		return c.take(p), nil
	}
	if len(p) >= ioBufferSize {
		return c.Conn.Read(p)
	}
	c.n, c.rerr = 0, nil
	err := c.rc.Read(c.readFn)
	switch {
	case err != nil:
		return 0, err
	case c.rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: c.rerr}
	case c.n == 0:
		return 0, io.EOF
	}
	return c.take(p), nil
}

// readFD reads what has arrived into a borrowed buffer; it reports false
// when nothing has, and the runtime's poller then waits for the socket
// holding no buffer.
func (c *idleConn) readFD(fd uintptr) bool {
	b := ioBuffers.Get().(*[]byte)
	for {
		c.n, c.rerr = syscall.Read(int(fd), *b)
		if c.rerr != syscall.EINTR {
			break
		}
	}
	if c.rerr == syscall.EAGAIN {
		ioBuffers.Put(b)
		return false
	}
	if c.rerr != nil || c.n <= 0 {
		ioBuffers.Put(b)
		c.n = 0
	} else {
		c.in, c.r, c.w = b, 0, c.n
		c.buffered.Store(true)
	}
	return true
}

// take hands out buffered bytes and gives the buffer back once it is read.
func (c *idleConn) take(p []byte) int {
	n := copy(p, (*c.in)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		if cap(*c.in) == ioBufferSize {
			ioBuffers.Put(c.in)
		}
		c.in = nil
		c.buffered.Store(false)
	}
	return n
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.writing.Store(true)
	defer c.writing.Store(false)
	done := c.scan(p)
	switch {
	case done && c.out == nil:
		return c.Conn.Write(p)
	case done:
		// The frame's start waited; it goes out with its end.
		err := c.writev(*c.out, p)
		c.release()
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if c.out == nil {
		c.out = ioBuffers.Get().(*[]byte)
		*c.out = (*c.out)[:0]
	}
	if len(*c.out)+len(p) > cap(*c.out) {
		// More than a buffer before the frame ends: what there is goes
		// out now, in one writev(2) as well.
		err := c.writev(*c.out, p)
		*c.out = (*c.out)[:0]
		if err != nil {
			c.release()
			return 0, err
		}
		return len(p), nil
	}
	*c.out = append(*c.out, p...)
	return len(p), nil
}

// Close closes the socket, keeping what its queues held first if a write
// is cut by it.
func (c *idleConn) Close() error {
	if c.writing.Load() {
		if in, out, ok := c.queued(); ok {
			c.cut.Store(&[2]int{in, out})
		}
	}
	return c.Conn.Close()
}

// drop closes the socket after a write ran past its deadline, keeping
// what its queues held first, as Close does for a write it cuts.
func (c *idleConn) drop() error {
	if in, out, ok := c.queued(); ok {
		c.cut.Store(&[2]int{in, out})
	}
	return c.Conn.Close()
}

// queues is queued, or once the socket is closed what its queues held
// when a write was cut by the close.
func (c *idleConn) queues() (in, out int, ok bool) {
	if in, out, ok = c.queued(); ok {
		return in, out, true
	}
	if q := c.cut.Load(); q != nil {
		return q[0], q[1], true
	}
	return 0, 0, false
}

// writev writes a and then b in one system call.
func (c *idleConn) writev(a, b []byte) error {
	c.vec = [2][]byte{a, b}
	c.bufs = c.vec[:]
	_, err := c.bufs.WriteTo(c.Conn)
	c.vec, c.bufs = [2][]byte{}, nil // keep no reference to the caller's bytes
	return err
}

func (c *idleConn) release() {
	if c.out != nil {
		*c.out = (*c.out)[:cap(*c.out)]
		ioBuffers.Put(c.out)
		c.out = nil
	}
}

// scan follows the frames in p (RFC 6455 §5.2: two bytes, an extended
// length of 2 or 8 bytes, a masking key of 4 when masked, the payload) and
// reports whether p ends where a frame ends.
func (c *idleConn) scan(p []byte) bool {
	for len(p) > 0 {
		if c.left > 0 {
			k := min(uint64(len(p)), c.left)
			c.left -= k
			p = p[k:]
			continue
		}
		c.head[c.nhead] = p[0]
		c.nhead++
		p = p[1:]
		if c.nhead < 2 {
			continue
		}
		need := 2
		switch c.head[1] & 0x7f {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if c.head[1]&0x80 != 0 {
			need += 4
		}
		if c.nhead < need {
			continue
		}
		switch l := c.head[1] & 0x7f; l {
		case 126:
			c.left = uint64(binary.BigEndian.Uint16(c.head[2:4]))
		case 127:
			c.left = binary.BigEndian.Uint64(c.head[2:10])
		default:
			c.left = uint64(l)
		}
		c.nhead = 0
	}
	return c.nhead == 0 && c.left == 0
}
