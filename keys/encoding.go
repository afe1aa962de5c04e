package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// encodingVersion is the first byte of every binary encoding in this package.
// A future format gets a new version byte; old decoders then fail loudly
// instead of misreading the new layout.
const encodingVersion = 1

// kind is the second byte of every binary encoding. It makes each encoding
// self-describing, so bytes of one type handed to another type's decoder are
// rejected rather than reinterpreted.
type kind byte

const (
	kindIdentityPublic        kind = 0x01
	kindIdentityPrivate       kind = 0x02
	kindSignedPrekeyPublic    kind = 0x03
	kindSignedPrekeyPrivate   kind = 0x04
	kindPQPrekeyPublic        kind = 0x05
	kindPQPrekeyPrivate       kind = 0x06
	kindOneTimePrekeyPublic   kind = 0x07
	kindOneTimePrekeyPrivate  kind = 0x08
	kindBundle                kind = 0x10
	kindInitialMessage        kind = 0x11
	kindRatchetMessage        kind = 0x12
	kindSession               kind = 0x13
	kindSenderKeyDistribution kind = 0x20
	kindSenderKeyMessage      kind = 0x21
	kindSenderKeySender       kind = 0x22
	kindSenderKeyReceiver     kind = 0x23
)

// b64 is the text alphabet: URL-safe so keys survive query strings and file
// names, unpadded, and strict so that every key has exactly one text form.
var b64 = base64.RawURLEncoding.Strict()

func header(k kind) []byte { return []byte{encodingVersion, byte(k)} }

// encodingError wraps ErrInvalidEncoding with the operation and the reason.
func encodingError(op, reason string) error {
	return fmt.Errorf("keys.%s: %s: %w", op, reason, ErrInvalidEncoding)
}

// marshalText renders a binary encoding as prefix + base64url.
func marshalText(prefix string, bin []byte) []byte {
	out := make([]byte, 0, len(prefix)+b64.EncodedLen(len(bin)))
	out = append(out, prefix...)
	return b64.AppendEncode(out, bin)
}

// unmarshalText checks the prefix before anything else: the prefix is what
// tells a user they pasted an identity key where a prekey belongs.
func unmarshalText(op, prefix string, text []byte) ([]byte, error) {
	if len(text) > MaxTextKeyLen {
		return nil, fmt.Errorf("keys.%s: text key too long: %w", op, ErrInvalidEncoding)
	}
	if !bytes.HasPrefix(text, []byte(prefix)) {
		return nil, encodingError(op, fmt.Sprintf("expected prefix %q", prefix))
	}
	body := text[len(prefix):]
	// encoding/base64 skips '\r' and '\n'; a key has exactly one text form,
	// so anything outside the URL-safe alphabet is rejected first.
	for _, c := range body {
		if !isBase64URL(c) {
			return nil, encodingError(op, "invalid character in text key")
		}
	}
	bin, err := b64.AppendDecode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("keys.%s: %w: %w", op, ErrInvalidEncoding, err)
	}
	return bin, nil
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// decoder reads a binary encoding with bounds checks. The first failure
// sticks, so a decode function can read every field and check err once;
// no read ever indexes past the input, which is what keeps decoders from
// panicking on hostile bytes.
type decoder struct {
	op  string
	b   []byte
	err error
}

func newDecoder(op string, b []byte, k kind) *decoder {
	d := &decoder{op: op, b: b}
	v := d.u8()
	kk := d.u8()
	switch {
	case d.err != nil:
	case v != encodingVersion:
		d.fail(fmt.Sprintf("unsupported version %d", v))
	case kind(kk) != k:
		d.fail(fmt.Sprintf("wrong kind 0x%02x, want 0x%02x", kk, byte(k)))
	}
	return d
}

func (d *decoder) fail(reason string) {
	if d.err == nil {
		d.err = encodingError(d.op, reason)
	}
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) array32() (a [32]byte) {
	copy(a[:], d.bytes(32))
	return a
}

func (d *decoder) u8() byte {
	b := d.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) bool() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("invalid boolean")
		return false
	}
}

func (d *decoder) u16() uint16 {
	b := d.bytes(2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (d *decoder) u32() uint32 {
	b := d.bytes(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (d *decoder) u64() uint64 {
	b := d.bytes(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// vec16 reads a uint16-length-prefixed byte string of at most max bytes.
func (d *decoder) vec16(max int) []byte {
	n := int(d.u16())
	if n > max {
		d.fail("field too long")
		return nil
	}
	return d.bytes(n)
}

// rest returns the remaining bytes (the ciphertext of a message).
func (d *decoder) rest() []byte {
	if d.err != nil {
		return nil
	}
	out := d.b
	d.b = nil
	return out
}

// finish rejects trailing bytes: an encoding is canonical or it is invalid.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

func appendVec16(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

func be64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
