package wire_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

func sameEnvelopes(a, b []wire.Envelope) bool {
	return slices.EqualFunc(a, b, func(x, y wire.Envelope) bool {
		return x.ID == y.ID && x.Seq == y.Seq && x.Conversation == y.Conversation && x.Sender == y.Sender &&
			x.Recipient == y.Recipient && x.Class == y.Class && x.ServerTime.Equal(y.ServerTime) &&
			bytes.Equal(x.Ciphertext, y.Ciphertext)
	})
}

// TestEnvelopesFrameVector pins the byte layout docs/api-messaging.md
// gives as its example.
func TestEnvelopesFrameVector(t *testing.T) {
	e := wire.Envelope{ID: "e1", Seq: 7, Conversation: "d_1", Sender: "dev_a", Recipient: "dev_b", Class: "message",
		ServerTime: time.Unix(0, 1764763200123000000).UTC(), Ciphertext: []byte{0xca, 0xfe}}
	b, err := wire.AppendEnvelopes(nil, []wire.Envelope{e})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x81, 0x00, 0x01,
		0x02, 'e', '1',
		0, 0, 0, 0, 0, 0, 0, 7,
		0x03, 'd', '_', '1',
		0x05, 'd', 'e', 'v', '_', 'a',
		0x05, 'd', 'e', 'v', '_', 'b',
		0x07, 'm', 'e', 's', 's', 'a', 'g', 'e',
		0x18, 0x7d, 0xb2, 0xc7, 0xc8, 0x03, 0x54, 0xc0,
		0, 0, 0, 2, 0xca, 0xfe}
	if !bytes.Equal(b, want) {
		t.Fatalf("envelopes frame\n got % x\nwant % x", b, want)
	}
	ack, err := wire.AppendAck(nil, []string{"e1", "e2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x01, 0x00, 0x02, 0x02, 'e', '1', 0x02, 'e', '2'}; !bytes.Equal(ack, want) {
		t.Fatalf("ack frame % x, want % x", ack, want)
	}
}

// TestBinaryFramesStrict: what does not decode exactly is refused —
// truncated, trailing bytes, another type, an oversize ciphertext, a
// string that is not UTF-8, a count the frame cannot hold.
func TestBinaryFramesStrict(t *testing.T) {
	e := wire.Envelope{ID: "e1", Seq: 1, Conversation: "c", Sender: "s", Recipient: "r", Class: "message",
		ServerTime: time.Unix(1, 0), Ciphertext: []byte("x")}
	good, _ := wire.AppendEnvelopes(nil, []wire.Envelope{e})
	huge := append([]byte(nil), good[:len(good)-5]...)
	huge = append(huge, 0, 1, 0, 1) // 65537 bytes of ciphertext claimed
	bad := map[string][]byte{
		"empty":          {},
		"truncated":      good[:len(good)-1],
		"trailing":       append(slices.Clone(good), 0),
		"ack type":       append([]byte{wire.FrameAck}, good[1:]...),
		"oversize":       huge,
		"no envelopes":   {wire.FrameEnvelopes, 0, 0},
		"count too high": {wire.FrameEnvelopes, 0xff, 0xff, 0},
		"not UTF-8":      bytes.Replace(slices.Clone(good), []byte("e1"), []byte{'e', 0xff}, 1),
	}
	for name, p := range bad {
		if _, err := wire.DecodeEnvelopes(p); !errors.Is(err, binframe.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	for name, p := range map[string][]byte{
		"trailing":  {wire.FrameAck, 0, 1, 1, 'a', 0},
		"truncated": {wire.FrameAck, 0, 2, 1, 'a'},
		"type":      {wire.FrameSend, 0, 0},
	} {
		if _, err := wire.DecodeAck(p); !errors.Is(err, binframe.ErrMalformed) {
			t.Errorf("ack %s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeEnvelopes: decoding never panics, and what decodes encodes to
// exactly the same bytes (one spelling per frame).
func FuzzDecodeEnvelopes(f *testing.F) {
	e := wire.Envelope{ID: "e1", Seq: 7, Conversation: "d_1", Sender: "dev_a", Recipient: "dev_b", Class: "message",
		ServerTime: time.Unix(0, 1764763200123000000).UTC(), Ciphertext: []byte{0xca, 0xfe}}
	good, _ := wire.AppendEnvelopes(nil, []wire.Envelope{e, e})
	f.Add(good)
	f.Add([]byte{wire.FrameEnvelopes, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		envs, err := wire.DecodeEnvelopes(p)
		if err != nil {
			return
		}
		again, err := wire.AppendEnvelopes(nil, envs)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("re-encoded % x (%v), decoded from % x", again, err, p)
		}
	})
}

// FuzzEnvelopesRoundTrip: decode(encode(x)) == x for any envelope whose
// strings fit.
func FuzzEnvelopesRoundTrip(f *testing.F) {
	f.Add("e1", int64(7), "d_1", "dev_a", "dev_b", "message", int64(1764763200123000000), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, id string, seq int64, conv, sender, rcpt, class string, ns int64, ct []byte) {
		if len(ct) > wire.MaxCiphertext {
			ct = ct[:wire.MaxCiphertext]
		}
		in := []wire.Envelope{{ID: id, Seq: seq, Conversation: conv, Sender: sender, Recipient: rcpt, Class: class,
			ServerTime: time.Unix(0, ns).UTC(), Ciphertext: ct}}
		b, err := wire.AppendEnvelopes(nil, in)
		if err != nil {
			return // a string over 255 bytes
		}
		out, err := wire.DecodeEnvelopes(b)
		if err != nil {
			if !slices.ContainsFunc([]string{id, conv, sender, rcpt, class}, func(s string) bool { return !utf8Valid(s) }) {
				t.Fatalf("decode: %v", err)
			}
			return
		}
		if in[0].Ciphertext == nil {
			in[0].Ciphertext = []byte{}
		}
		if !sameEnvelopes(in, out) {
			t.Fatalf("round trip %+v → %+v", in, out)
		}
	})
}

// FuzzDecodeAck: decoding never panics; what decodes encodes the same.
func FuzzDecodeAck(f *testing.F) {
	good, _ := wire.AppendAck(nil, []string{"e1", "e2"})
	f.Add(good)
	f.Fuzz(func(t *testing.T, p []byte) {
		ids, err := wire.DecodeAck(p)
		if err != nil {
			return
		}
		again, err := wire.AppendAck(nil, ids)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("re-encoded % x (%v), decoded from % x", again, err, p)
		}
	})
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }
