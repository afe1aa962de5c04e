//go:build !js

package mailbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

func fanoutRefs(n int) (Envelope, []Envelope) {
	e := Envelope{ID: "bc_1", Conversation: "b_council", Sender: "dev_clerk", Class: ClassBroadcast,
		Ciphertext: []byte("the announcement"), ServerTime: time.Unix(1764777600, 123456789).UTC()}
	refs := make([]Envelope, n)
	for i := range refs {
		refs[i] = Envelope{Recipient: fmt.Sprintf("dev_%d", i), Seq: int64(i + 1)}
	}
	return e, refs
}

// TestFanoutRoundTrip: what appendFanout encodes, decodeFanout gives back
// field for field, with the layout docs/api-messaging.md gives: 0xa0, the
// envelope as an envelopes frame of one (a u32 length first), a u16
// count, then each device and its seq.
func TestFanoutRoundTrip(t *testing.T) {
	e, refs := fanoutRefs(maxFanoutDevices)
	b, err := appendFanout(nil, e, refs)
	if err != nil {
		t.Fatal(err)
	}
	frame, _ := wire.AppendEnvelopes(nil, []Envelope{e})
	want := append([]byte{0xa0}, binframe.AppendBytes(nil, frame)...)
	if !bytes.HasPrefix(b, want) || b[len(want)] != 0x10 || b[len(want)+1] != 0x00 {
		t.Fatalf("layout: % x…", b[:min(len(b), len(want)+2)])
	}
	if rest := b[len(want)+2:]; !bytes.HasPrefix(rest, append([]byte{5}, "dev_0\x00\x00\x00\x00\x00\x00\x00\x01"...)) {
		t.Fatalf("the first device: % x", rest[:14])
	}
	got, devices, err := decodeFanout(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Conversation != e.Conversation || got.Sender != e.Sender || got.Class != e.Class ||
		!got.ServerTime.Equal(e.ServerTime) || !bytes.Equal(got.Ciphertext, e.Ciphertext) || got.Recipient != "" || got.Seq != 0 {
		t.Fatalf("envelope %+v, want %+v", got, e)
	}
	if len(devices) != len(refs) {
		t.Fatalf("%d devices, want %d", len(devices), len(refs))
	}
	for i, d := range devices {
		if string(d.name) != refs[i].Recipient || d.seq != refs[i].Seq {
			t.Fatalf("device %d: %s %d, want %s %d", i, d.name, d.seq, refs[i].Recipient, refs[i].Seq)
		}
	}
	if len(b) > 100<<10 {
		t.Fatalf("%d bytes for %d devices", len(b), maxFanoutDevices)
	}
}

// TestAppendFanoutRefuses: what cannot be a fan-out makes none.
func TestAppendFanoutRefuses(t *testing.T) {
	e, refs := fanoutRefs(1)
	long := []Envelope{{Recipient: strings.Repeat("d", 256), Seq: 1}}
	badClass := e
	badClass.Class = strings.Repeat("c", 256)
	_, tooMany := fanoutRefs(maxFanoutDevices + 1)
	for name, c := range map[string]struct {
		e    Envelope
		refs []Envelope
	}{
		"no device":               {e, nil},
		"more than 4,096 devices": {e, tooMany},
		"a device over 255 bytes": {e, long},
		"a class over 255 bytes":  {badClass, refs},
	} {
		if b, err := appendFanout([]byte("tag"), c.e, c.refs); err == nil || !bytes.HasPrefix(b, []byte("tag")) {
			t.Errorf("%s: %d bytes, %v; want an error", name, len(b), err)
		}
	}
}

// TestDecodeFanoutRefuses: a payload that is not exactly a fan-out is
// refused as a whole; its devices' streams are offered nothing.
func TestDecodeFanoutRefuses(t *testing.T) {
	e, refs := fanoutRefs(2)
	good, err := appendFanout(nil, e, refs)
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*Envelope), refs []Envelope) []byte {
		x := e
		f(&x)
		b, err := appendFanout(nil, x, refs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	_, tooMany := fanoutRefs(maxFanoutDevices + 1)
	// The envelope, before the count and the two devices ("dev_0", "dev_1": 1+5+8 bytes each).
	head := good[:len(good)-2-2*(1+5+8)]
	over := binframe.AppendU16(bytes.Clone(head), maxFanoutDevices+1)
	for _, r := range tooMany {
		over = binframe.AppendI64(binframe.AppendString(over, r.Recipient), r.Seq)
	}
	two, _ := wire.AppendEnvelopes(nil, []Envelope{e, e})
	two = append(binframe.AppendBytes([]byte{0xa0}, two), good[len(head):]...)
	huge := make([]byte, maxFanoutMessage+1)
	copy(huge, good)
	for name, p := range map[string][]byte{
		"empty":                  {},
		"another type":           append([]byte{wire.FrameEnvelopes}, good[1:]...),
		"truncated":              good[:len(good)-1],
		"a byte after the last":  append(bytes.Clone(good), 0),
		"no devices":             append(bytes.Clone(head), 0, 0),
		"more than 4,096":        over,
		"a device without name":  with(func(*Envelope) {}, []Envelope{{Recipient: "", Seq: 1}}),
		"a device without seq":   with(func(*Envelope) {}, []Envelope{{Recipient: "dev_a", Seq: 0}}),
		"an envelope without id": with(func(x *Envelope) { x.ID = "" }, refs),
		"a recipient in it":      with(func(x *Envelope) { x.Recipient = "dev_x" }, refs),
		"two envelopes in it":    two,
		"a seq in it":            with(func(x *Envelope) { x.Seq = 7 }, refs),
		"over maxCarried":        with(func(x *Envelope) { x.Ciphertext = make([]byte, maxCarried+1) }, refs),
		"over maxFanoutMessage":  huge,
	} {
		got, devices, err := decodeFanout(p)
		if err == nil || devices != nil || got.ID != "" {
			t.Errorf("%s: decoded %+v, %d devices", name, got, len(devices))
		}
		if !errors.Is(err, binframe.ErrMalformed) {
			t.Errorf("%s: %v does not wrap ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeFanout: no payload makes decodeFanout panic or allocate
// beyond its bytes, and what it accepts is exactly a fan-out: encoding it
// again gives the payload byte for byte.
func FuzzDecodeFanout(f *testing.F) {
	e, refs := fanoutRefs(3)
	good, err := appendFanout(nil, e, refs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	e.Ciphertext = nil
	plain, _ := appendFanout(nil, e, refs[:1])
	f.Add(plain)
	old, _ := json.Marshal(map[string]any{"envelope": e, "devices": []map[string]any{{"d": "dev_a", "s": 1}}})
	f.Add(old)
	f.Fuzz(func(t *testing.T, p []byte) {
		got, devices, err := decodeFanout(p)
		if err != nil {
			if devices != nil {
				t.Fatal("an error and devices")
			}
			return
		}
		if got.ID == "" || got.Recipient != "" || got.Seq != 0 || len(got.Ciphertext) > maxCarried || len(devices) == 0 {
			t.Fatalf("accepted %+v with %d devices", got, len(devices))
		}
		refs := make([]Envelope, len(devices))
		for i, d := range devices {
			if len(d.name) == 0 || d.seq < 1 {
				t.Fatalf("accepted device %q seq %d", d.name, d.seq)
			}
			refs[i] = Envelope{Recipient: string(d.name), Seq: d.seq}
		}
		again, err := appendFanout(nil, got, refs)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("encoded again: %v, %x\nwas %x", err, again, p)
		}
	})
}

// BenchmarkTakeFanout: what a node spends on one fan-out of 4,096
// devices, a third of which have a stream on it (three nodes share the
// followers), from the sealed message to each held stream offered the
// envelope; per device named. The streams are registered but not started,
// so the offer only queues. format=json is the payload of earlier
// versions, which nodes still read.
func BenchmarkTakeFanout(b *testing.B) {
	e, refs := fanoutRefs(maxFanoutDevices)
	e.Ciphertext = make([]byte, 3200) // a signed announcement
	key := bytes.Repeat([]byte("k"), MinBusKey)
	binPayload, err := appendFanout(nil, e, refs)
	if err != nil {
		b.Fatal(err)
	}
	type jsonDevice struct {
		Device string `json:"d"`
		Seq    int64  `json:"s"`
	}
	old := struct {
		Envelope Envelope     `json:"envelope"`
		Devices  []jsonDevice `json:"devices"`
	}{Envelope: e}
	for _, r := range refs {
		old.Devices = append(old.Devices, jsonDevice{r.Recipient, r.Seq})
	}
	jsonPayload, _ := json.Marshal(old)
	for _, c := range []struct {
		format  string
		payload []byte
	}{{"json", jsonPayload}, {"binary", binPayload}} {
		b.Run("format="+c.format, func(b *testing.B) {
			h := &Hub{o: HubOptions{BusKey: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, conns: map[string][]*conn{}}
			for i, r := range refs {
				if i%3 == 0 {
					h.conns[r.Recipient] = []*conn{{hub: h, device: r.Recipient}}
				}
			}
			m := &bus.Msg{Subject: subjectFanout, Data: sealBus(key, purposeFanout, subjectFanout, c.payload)}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				h.takeFanout(m)
				b.StopTimer()
				for _, cs := range h.conns {
					cs[0].carried, cs[0].fetch = nil, false
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(refs)), "ns/device")
			b.ReportMetric(float64(len(c.payload)), "payload-bytes")
			if h.wakeUps.Load() != uint64(b.N*len(h.conns)) {
				b.Fatalf("%d streams offered, want %d", h.wakeUps.Load(), b.N*len(h.conns))
			}
		})
	}
}
