//go:build !js

package mailbox

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestReadAllPooled: a frame read through a pooled buffer comes out whole
// and as its own copy, whatever the sizes of the reads and of the frame
// (an empty one, one that fills a pooled buffer exactly, one larger than
// any kept), and a read that fails returns what came before it and the
// error, as io.ReadAll does.
func TestReadAllPooled(t *testing.T) {
	for _, n := range []int{0, 1, 600, 1024, 1025, 4096, maxPooledFrame + 1} {
		frame := make([]byte, n)
		for i := range frame {
			frame[i] = byte(i * 7)
		}
		for _, r := range []io.Reader{bytes.NewReader(frame), iotest.OneByteReader(bytes.NewReader(frame)), iotest.HalfReader(bytes.NewReader(frame))} {
			got, err := readAllPooled(r)
			if err != nil || !bytes.Equal(got, frame) || got == nil {
				t.Fatalf("%d bytes: got %d bytes (nil: %v), %v", n, len(got), got == nil, err)
			}
			// The next frame must not write into this one: its buffer went
			// back to the pool.
			next, _ := readAllPooled(bytes.NewReader(bytes.Repeat([]byte{0xff}, n)))
			if !bytes.Equal(got, frame) || len(next) != n {
				t.Fatalf("%d bytes: the frame changed when the next was read", n)
			}
		}
	}
	boom := errors.New("connection reset")
	got, err := readAllPooled(io.MultiReader(bytes.NewReader([]byte("half a frame")), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || string(got) != "half a frame" {
		t.Fatalf("got %q, %v; want the bytes before the error and the error", got, err)
	}
}
