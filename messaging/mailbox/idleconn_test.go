//go:build unix

package mailbox

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// frame encodes a websocket frame as a server writes it (masked: as a
// client does).
func frame(payload []byte, masked bool) []byte {
	var h []byte
	b1 := byte(0)
	if masked {
		b1 = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		h = []byte{0x82, b1 | byte(n)}
	case n <= 0xffff:
		h = binary.BigEndian.AppendUint16([]byte{0x82, b1 | 126}, uint16(n))
	default:
		h = binary.BigEndian.AppendUint64([]byte{0x82, b1 | 127}, uint64(n))
	}
	if masked {
		h = append(h, 1, 2, 3, 4)
	}
	return append(h, payload...)
}

// Frames written through bufio's smallest buffer, as coder/websocket
// writes them (header, payload, flush), reach the peer whole and in order,
// and between frames the connection holds no borrowed buffer.
func TestIdleConnWritesFrames(t *testing.T) {
	server, client := tcpPair(t)
	ic := newIdleConn(server, nil)
	if ic == nil {
		t.Fatal("no RawConn on a TCP connection")
	}
	bw := bufio.NewWriterSize(ic, idleBufio)
	sizes := []int{0, 1, 2, 13, 14, 15, 16, 17, 125, 126, 127, 1000, ioBufferSize - 1, ioBufferSize, ioBufferSize + 1, 65535, 65536, 200000}
	for range 40 {
		sizes = append(sizes, rand.IntN(9000))
	}
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	for i, n := range sizes {
		payload := make([]byte, n)
		for j := range payload {
			payload[j] = byte(i + j)
		}
		f := frame(payload, i%5 == 0)
		want.Write(f)
		// Header first, then the payload, then a flush, as the library does.
		hl := len(f) - n
		if _, err := bw.Write(f[:hl]); err != nil {
			t.Fatal(err)
		}
		if _, err := bw.Write(f[hl:]); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if ic.out != nil || ic.nhead != 0 || ic.left != 0 {
			t.Fatalf("frame %d (%d bytes): a buffer is held after the frame (out %v, header %d, left %d)", i, n, ic.out != nil, ic.nhead, ic.left)
		}
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the peer read %d bytes, want %d (or different bytes)", len(b), want.Len())
	}
}

// What the peer sends is read whole through bufio's smallest buffer, in
// reads of every size, and once it is read no buffer is held.
func TestIdleConnReads(t *testing.T) {
	server, client := tcpPair(t)
	pre := []byte("bytes net/http had read")
	ic := newIdleConn(server, pre)
	if ic == nil {
		t.Fatal("no RawConn on a TCP connection")
	}
	br := bufio.NewReaderSize(ic, idleBufio)
	data := make([]byte, 300000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	go func() {
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+rand.IntN(6000))
			client.Write(rest[:k])
			rest = rest[k:]
		}
	}()
	var got []byte
	for len(got) < len(pre)+len(data) {
		p := make([]byte, 1+rand.IntN(2*ioBufferSize))
		if rand.IntN(4) == 0 {
			b, err := br.ReadByte()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b)
			continue
		}
		n, err := br.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, append(pre, data...)) {
		t.Fatal("read bytes differ from those sent")
	}
	if ic.in != nil || br.Buffered() != 0 {
		t.Fatalf("after the last byte: buffer held %v, bufio holds %d", ic.in != nil, br.Buffered())
	}
	// The peer closes: the next read says so.
	client.Close()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
}
