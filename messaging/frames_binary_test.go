package messaging_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

func sampleSend() *messaging.SendRequest {
	return &messaging.SendRequest{To: messaging.SendTo{AccountID: "acc_b"}, ClientID: "c1", Class: "message",
		Envelopes: []messaging.SendEnvelope{{DeviceID: "dev_b1", Data: []byte{1, 2, 3}}, {DeviceID: "dev_a2", Data: []byte{4}}}}
}

// TestSendFrameVector pins the byte layout of the send frame that
// docs/api-messaging.md gives as its example, and that a base64
// Ciphertext is sent as its bytes.
func TestSendFrameVector(t *testing.T) {
	req := &messaging.SendRequest{To: messaging.SendTo{AccountID: "acc_b"}, ClientID: "c1", Class: "message",
		Envelopes: []messaging.SendEnvelope{{DeviceID: "dev_b", Ciphertext: "yv4="}}}
	b, err := messaging.AppendSendFrame(nil, "r1", req)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x02,
		0x02, 'r', '1',
		0x05, 'a', 'c', 'c', '_', 'b',
		0x00,
		0x00,
		0x02, 'c', '1',
		0x07, 'm', 'e', 's', 's', 'a', 'g', 'e',
		0x00, 0x01,
		0x05, 'd', 'e', 'v', '_', 'b',
		0, 0, 0, 2, 0xca, 0xfe}
	if !bytes.Equal(b, want) {
		t.Fatalf("send frame\n got % x\nwant % x", b, want)
	}
}

// TestBinarySendFrameStrict: a send frame with a byte too many or too few,
// of another type, or with a ciphertext over the limit does not decode.
func TestBinarySendFrameStrict(t *testing.T) {
	good, err := messaging.AppendSendFrame(nil, "r1", sampleSend())
	if err != nil {
		t.Fatal(err)
	}
	over, _ := messaging.AppendSendFrame(nil, "r1", &messaging.SendRequest{ClientID: "c", Class: "message",
		Envelopes: []messaging.SendEnvelope{{DeviceID: "d", Data: make([]byte, mailbox.MaxCiphertext+1)}}})
	for name, p := range map[string][]byte{
		"trailing":  append(slices.Clone(good), 0),
		"truncated": good[:len(good)-1],
		"type":      append([]byte{wire.FrameAck}, good[1:]...),
		"oversize":  over,
		"empty":     {},
	} {
		if _, _, err := messaging.DecodeSendFrame(p); !errors.Is(err, binframe.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeSendFrame: decoding never panics; what decodes encodes to the
// same bytes.
func FuzzDecodeSendFrame(f *testing.F) {
	good, _ := messaging.AppendSendFrame(nil, "r1", sampleSend())
	f.Add(good)
	f.Fuzz(func(t *testing.T, p []byte) {
		ref, req, err := messaging.DecodeSendFrame(p)
		if err != nil {
			return
		}
		again, err := messaging.AppendSendFrame(nil, ref, req)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("re-encoded % x (%v), decoded from % x", again, err, p)
		}
	})
}

// FuzzSendFrameRoundTrip: decode(encode(x)) == x.
func FuzzSendFrameRoundTrip(f *testing.F) {
	f.Add("r1", "acc_b", "", "", "c1", "message", "dev_b1", []byte{1, 2, 3}, "dev_a2", []byte{4})
	f.Fuzz(func(t *testing.T, ref, acc, org, group, cid, class, d1 string, c1 []byte, d2 string, c2 []byte) {
		c1, c2 = c1[:min(len(c1), mailbox.MaxCiphertext)], c2[:min(len(c2), mailbox.MaxCiphertext)]
		in := &messaging.SendRequest{To: messaging.SendTo{AccountID: acc, OrgID: org, GroupID: group}, ClientID: cid, Class: class,
			Envelopes: []messaging.SendEnvelope{{DeviceID: d1, Data: nonNil(c1)}, {DeviceID: d2, Data: nonNil(c2)}}}
		b, err := messaging.AppendSendFrame(nil, ref, in)
		if err != nil {
			return
		}
		gotRef, out, err := messaging.DecodeSendFrame(b)
		if err != nil {
			if allUTF8(ref, acc, org, group, cid, class, d1, d2) {
				t.Fatalf("decode: %v", err)
			}
			return
		}
		if gotRef != ref || !reflect.DeepEqual(in, out) {
			t.Fatalf("round trip %q %+v → %q %+v", ref, in, gotRef, out)
		}
	})
}

// FuzzSentFrameRoundTrip: decode(encode(x)) == x for the answer to a send;
// decoding any bytes never panics.
func FuzzSentFrameRoundTrip(f *testing.F) {
	f.Add("r1", "d_1", "c1", int64(1764763200123000000), "dev_b", "e1", "dev_a", "e2")
	f.Fuzz(func(t *testing.T, ref, conv, cid string, ns int64, d1, e1, d2, e2 string) {
		resp := &messaging.SendResponse{ConversationID: conv, ClientID: cid, ServerTime: time.Unix(0, ns).UTC(),
			EnvelopeIDs: map[string]string{d1: e1, d2: e2}}
		b, err := messaging.SentFrame{Type: "sent", Ref: ref, Response: resp}.AppendBinary(nil)
		if err != nil {
			return
		}
		_, _, _ = messaging.DecodeSentFrame(b[:len(b)/2])
		gotRef, out, err := messaging.DecodeSentFrame(b)
		if err != nil {
			if allUTF8(ref, conv, cid, d1, e1, d2, e2) {
				t.Fatalf("decode: %v", err)
			}
			return
		}
		if gotRef != ref || !reflect.DeepEqual(resp, out) {
			t.Fatalf("round trip %q %+v → %q %+v", ref, resp, gotRef, out)
		}
	})
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func allUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}
