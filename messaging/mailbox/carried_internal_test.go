package mailbox

import (
	"encoding/json"
	"testing"
)

// TestNextCarried: carried envelopes are used only when they are exactly
// what follows the cursor; anything else sends the pump to the mailbox.
func TestNextCarried(t *testing.T) {
	wake := func(device string, seqs ...int64) []byte {
		es := make([]Envelope, len(seqs))
		for i, s := range seqs {
			es[i] = Envelope{ID: "e", Seq: s, Recipient: device}
		}
		b, err := json.Marshal(es)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		carried [][]byte
		after   int64
		room    int
		want    []int64 // nil with ok false: read the mailbox
		ok      bool
	}{
		{"next in order", [][]byte{wake("d", 5)}, 4, 10, []int64{5}, true},
		{"two wake-ups, overtaken", [][]byte{wake("d", 6), wake("d", 5)}, 4, 10, []int64{5, 6}, true},
		{"duplicate", [][]byte{wake("d", 5), wake("d", 5)}, 4, 10, []int64{5}, true},
		{"already sent", [][]byte{wake("d", 3, 4)}, 4, 10, nil, true},
		{"gap", [][]byte{wake("d", 6)}, 4, 10, nil, false},
		{"more than the room", [][]byte{wake("d", 5, 6, 7)}, 4, 2, nil, false},
		{"another device's", [][]byte{wake("x", 5)}, 4, 10, nil, false},
		{"not JSON", [][]byte{[]byte("{")}, 4, 10, nil, false},
	}
	for _, c := range cases {
		got, ok := nextCarried("d", c.carried, c.after, c.room)
		if ok != c.ok || len(got) != len(c.want) {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
			continue
		}
		for i, e := range got {
			if e.Seq != c.want[i] {
				t.Errorf("%s: seq %d at %d, want %d", c.name, e.Seq, i, c.want[i])
			}
		}
	}
}
