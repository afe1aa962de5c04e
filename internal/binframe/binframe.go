// Package binframe holds the primitives of the stream's binary frames
// (the websocket subprotocol kanal.bin.v1, docs/api-messaging.md "Binary
// frames"): big-endian integers, short strings with a one-byte length,
// byte strings with a four-byte length, and times as Unix nanoseconds.
// The frames themselves are built in messaging/mailbox (envelopes, acks)
// and messaging (sends and their answers) from these.
//
// A Reader is strict: every read checks that the bytes are there, a
// string is UTF-8, and Done fails on bytes left over. The first failure
// sticks, so a decoder reads its fields and checks Err once.
package binframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Subprotocol is the websocket subprotocol that selects binary frames.
const Subprotocol = "kanal.bin.v1"

// MaxString is the longest string a frame carries (its length is one byte).
const MaxString = 255

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed binary frame")

// AppendU16 appends v big-endian.
func AppendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

// AppendI64 appends v big-endian, two's complement.
func AppendI64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

// AppendTime appends t as Unix nanoseconds (an i64).
func AppendTime(b []byte, t time.Time) []byte { return AppendI64(b, t.UnixNano()) }

// AppendString appends a length byte and s; s must be at most MaxString
// bytes (the frame encoders check with CheckString first).
func AppendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// AppendBytes appends a four-byte length and p.
func AppendBytes(b []byte, p []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}

// CheckString says whether s fits a string field.
func CheckString(field, s string) error {
	if len(s) > MaxString {
		return fmt.Errorf("binframe: %s: %d bytes, at most %d", field, len(s), MaxString)
	}
	return nil
}

// Reader reads a frame's fields in order.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads b, which the reader does not copy: byte strings it
// returns alias b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err is the first failure, wrapping ErrMalformed.
func (r *Reader) Err() error { return r.err }

func (r *Reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	r.b = nil
}

// Remaining is how many bytes are left.
func (r *Reader) Remaining() int { return len(r.b) }

// U8 reads one byte.
func (r *Reader) U8(what string) byte {
	if len(r.b) < 1 {
		r.fail(what + ": truncated")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// U16 reads a big-endian uint16.
func (r *Reader) U16(what string) uint16 {
	if len(r.b) < 2 {
		r.fail(what + ": truncated")
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

// I64 reads a big-endian int64.
func (r *Reader) I64(what string) int64 {
	if len(r.b) < 8 {
		r.fail(what + ": truncated")
		return 0
	}
	v := int64(binary.BigEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// Time reads Unix nanoseconds as a UTC time.
func (r *Reader) Time(what string) time.Time {
	n := r.I64(what)
	if r.err != nil {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// String reads a one-byte length and that many bytes of UTF-8.
func (r *Reader) String(what string) string { return string(r.StringBytes(what)) }

// StringBytes reads a string as String does, without copying it: the
// result aliases the frame. For fields a decoder only compares or looks
// up.
func (r *Reader) StringBytes(what string) []byte {
	n := int(r.U8(what))
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail(what + ": truncated")
		return nil
	}
	p := r.b[:n:n]
	if !utf8.Valid(p) {
		r.fail(what + ": not UTF-8")
		return nil
	}
	r.b = r.b[n:]
	return p
}

// Bytes reads a four-byte length and that many bytes, at most max. The
// result aliases the frame.
func (r *Reader) Bytes(what string, max int) []byte {
	if len(r.b) < 4 {
		r.fail(what + ": truncated")
		return nil
	}
	n := binary.BigEndian.Uint32(r.b)
	if uint64(n) > uint64(max) {
		r.fail(fmt.Sprintf("%s: %d bytes, at most %d", what, n, max))
		return nil
	}
	if uint64(len(r.b)-4) < uint64(n) {
		r.fail(what + ": truncated")
		return nil
	}
	p := r.b[4 : 4+n : 4+n]
	r.b = r.b[4+n:]
	return p
}

// Count reads a u16 count of items each at least min bytes long, and
// fails if the frame cannot hold that many: a decoder then never
// allocates for items that are not there.
func (r *Reader) Count(what string, min int) int {
	n := int(r.U16(what))
	if r.err == nil && n*min > len(r.b) {
		r.fail(what + ": more items than bytes")
		return 0
	}
	return n
}

// Done fails if bytes are left after the last field, and returns Err.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) > 0 {
		r.fail(fmt.Sprintf("%d bytes after the last field", len(r.b)))
	}
	return r.err
}
