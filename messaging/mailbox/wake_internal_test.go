//go:build !js

package mailbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

func wakeEnvs(device string, bodies ...string) []Envelope {
	es := make([]Envelope, len(bodies))
	for i, b := range bodies {
		es[i] = Envelope{ID: NewEnvelopeID(), Seq: int64(i + 1), Conversation: "conv_1", Sender: "dev_s",
			Recipient: device, Class: "message", Ciphertext: []byte(b), ServerTime: time.Unix(1764777600, 123456789).UTC()}
	}
	return es
}

// TestWakeRoundTrip: what appendWake encodes, decodeWake gives back
// field for field, and the payload is the stream's envelopes frame.
func TestWakeRoundTrip(t *testing.T) {
	want := wakeEnvs("dev_b", "one", "", strings.Repeat("x", maxCarried-3))
	b, err := appendWake(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	w, err := decodeWake("dev_b", b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeEnvelopes(w.frame)
	if err != nil || !bytes.Equal(w.frame, b) {
		t.Fatalf("the wake-up's frame is not the payload as an envelopes frame: %v", err)
	}
	for i := range want {
		for _, g := range [][]Envelope{w.envs, got} {
			x, y := want[i], g[i]
			if x.ID != y.ID || x.Seq != y.Seq || x.Conversation != y.Conversation || x.Sender != y.Sender ||
				x.Recipient != y.Recipient || x.Class != y.Class || !x.ServerTime.Equal(y.ServerTime) || !bytes.Equal(x.Ciphertext, y.Ciphertext) {
				t.Fatalf("envelope %d: %+v, want %+v", i, y, x)
			}
		}
	}
}

// TestAppendWakeRefuses: envelopes that cannot be carried make no payload
// (Deliver then publishes a plain wake-up).
func TestAppendWakeRefuses(t *testing.T) {
	many := make([]string, 600) // 600 empty ciphertexts: over maxWakeMessage in ids and names
	for i := range many {
		many[i] = ""
	}
	long := wakeEnvs("dev_b", "x")
	long[0].Class = strings.Repeat("c", 256)
	for name, es := range map[string][]Envelope{
		"more than maxCarried of ciphertext": wakeEnvs("dev_b", strings.Repeat("x", maxCarried), "y"),
		"larger than maxWakeMessage":         wakeEnvs(strings.Repeat("d", 100), many...),
		"a string over 255 bytes":            long,
		"no envelope":                        nil,
	} {
		if b, err := appendWake([]byte("tag"), es); err == nil || string(b) != "tag" {
			t.Errorf("%s: %d bytes, %v; want an error and nothing appended", name, len(b), err)
		}
	}
}

// TestDecodeWakeRefuses: a payload that is not exactly a carrying
// wake-up of the device is refused as a whole — then the streams read
// the mailbox.
func TestDecodeWakeRefuses(t *testing.T) {
	good, err := appendWake(nil, wakeEnvs("dev_b", "one", "two"))
	if err != nil {
		t.Fatal(err)
	}
	enc := func(es []Envelope) []byte {
		b, err := wire.AppendEnvelopes(nil, es)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old, _ := json.Marshal(wakeEnvs("dev_b", "one")) // what a node of an earlier version sends
	noID, zeroSeq := wakeEnvs("dev_b", "a"), wakeEnvs("dev_b", "a")
	noID[0].ID, zeroSeq[0].Seq = "", 0
	huge := make([]byte, maxWakeMessage+1)
	copy(huge, good)
	for name, p := range map[string][]byte{
		"empty":                      {},
		"the JSON of earlier nodes":  old,
		"another frame type":         append([]byte{wire.FrameAck}, good[1:]...),
		"no envelopes":               {wire.FrameEnvelopes, 0, 0},
		"truncated":                  good[:len(good)-1],
		"a byte after the last":      append(bytes.Clone(good), 0),
		"a count beyond the bytes":   append([]byte{wire.FrameEnvelopes, 0xff, 0xff}, good[3:]...),
		"another device's envelope":  enc(wakeEnvs("dev_x", "a")),
		"without an id":              enc(noID),
		"without a seq":              enc(zeroSeq),
		"over maxCarried ciphertext": enc(wakeEnvs("dev_b", strings.Repeat("x", maxCarried), "y")),
		"over maxWakeMessage":        huge,
	} {
		w, err := decodeWake("dev_b", p)
		if err == nil || w != nil {
			t.Errorf("%s: decoded %+v", name, w)
		}
		if name != "the JSON of earlier nodes" && !errors.Is(err, binframe.ErrMalformed) {
			t.Errorf("%s: %v does not wrap ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeWake: no payload makes decodeWake panic or allocate beyond its
// bytes, and what it accepts is exactly a carrying wake-up of the device:
// every envelope the device's, at most maxCarried bytes of ciphertext,
// and encoding the envelopes again gives the payload byte for byte (the
// frame a binary stream writes as it came).
func FuzzDecodeWake(f *testing.F) {
	for _, es := range [][]Envelope{wakeEnvs("dev_b", "one"), wakeEnvs("dev_b", "", "two", "three"), wakeEnvs("dev_x", "a")} {
		b, err := appendWake(nil, es)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("dev_b", b)
	}
	old, _ := json.Marshal(wakeEnvs("dev_b", "one"))
	f.Add("dev_b", old)
	f.Add("", []byte{wire.FrameEnvelopes, 0, 1})
	f.Fuzz(func(t *testing.T, device string, p []byte) {
		w, err := decodeWake(device, p)
		if err != nil {
			if w != nil {
				t.Fatal("an error and a wake-up")
			}
			return
		}
		size := 0
		for _, e := range w.envs {
			if e.Recipient != device || e.ID == "" || e.Seq < 1 {
				t.Fatalf("accepted %+v for %q", e, device)
			}
			size += len(e.Ciphertext)
		}
		if size > maxCarried || len(w.envs) == 0 || !bytes.Equal(w.frame, p) {
			t.Fatalf("accepted %d envelopes, %d bytes of ciphertext", len(w.envs), size)
		}
		again, err := appendWake(nil, w.envs)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("encoded again: %v, %x\nwas %x", err, again, p)
		}
	})
}
