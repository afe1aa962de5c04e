//go:build !js

package mailbox

import (
	"bytes"
	"testing"
)

// TestNextCarried: carried envelopes are used only when they are exactly
// what follows the cursor; anything else sends the pump to the mailbox.
// A binary stream writes a wake-up's own frame only when it takes exactly
// that wake-up's envelopes, in the order it carried them.
func TestNextCarried(t *testing.T) {
	wake := func(device string, seqs ...int64) *carriedWake {
		es := make([]Envelope, len(seqs))
		for i, s := range seqs {
			es[i] = Envelope{ID: "e", Seq: s, Recipient: device}
		}
		b, err := appendWake(nil, es)
		if err != nil {
			t.Fatal(err)
		}
		w, err := decodeWake(device, b)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	fanned := func(device string, seq int64) *carriedWake {
		return &carriedWake{envs: []Envelope{{ID: "e", Seq: seq, Recipient: device}}}
	}
	cases := []struct {
		name    string
		carried []*carriedWake
		after   int64
		room    int
		want    []int64 // nil with ok false: read the mailbox
		ok      bool
		frame   int // the index of the wake-up whose frame is written, or -1
	}{
		{"next in order", []*carriedWake{wake("d", 5)}, 4, 10, []int64{5}, true, 0},
		{"two in order", []*carriedWake{wake("d", 5, 6)}, 4, 10, []int64{5, 6}, true, 0},
		{"two, carried out of order", []*carriedWake{wake("d", 6, 5)}, 4, 10, []int64{5, 6}, true, -1},
		{"two wake-ups, overtaken", []*carriedWake{wake("d", 6), wake("d", 5)}, 4, 10, []int64{5, 6}, true, -1},
		{"duplicate", []*carriedWake{wake("d", 5), wake("d", 5)}, 4, 10, []int64{5}, true, -1},
		{"partly sent", []*carriedWake{wake("d", 4, 5)}, 4, 10, []int64{5}, true, -1},
		{"already sent", []*carriedWake{wake("d", 3, 4)}, 4, 10, nil, true, -1},
		{"gap", []*carriedWake{wake("d", 6)}, 4, 10, nil, false, -1},
		{"more than the room", []*carriedWake{wake("d", 5, 6, 7)}, 4, 2, nil, false, -1},
		{"another device's", []*carriedWake{wake("x", 5)}, 4, 10, nil, false, -1},
		{"a fan-out's, no frame", []*carriedWake{fanned("d", 5)}, 4, 10, []int64{5}, true, -1},
	}
	for _, c := range cases {
		got, frame, ok := nextCarried("d", c.carried, c.after, c.room)
		if ok != c.ok || len(got) != len(c.want) {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
			continue
		}
		for i, e := range got {
			if e.Seq != c.want[i] {
				t.Errorf("%s: seq %d at %d, want %d", c.name, e.Seq, i, c.want[i])
			}
		}
		switch {
		case c.frame < 0 && frame != nil:
			t.Errorf("%s: a wake-up's frame for a batch it is not", c.name)
		case c.frame >= 0 && !bytes.Equal(frame, c.carried[c.frame].frame):
			t.Errorf("%s: not the wake-up's frame", c.name)
		}
	}
}
