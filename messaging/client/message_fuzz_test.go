package client_test

import (
	"reflect"
	"testing"

	"github.com/kanal-server/kanal/messaging/client"
)

// FuzzDecodeMessage: the envelope decoder never panics, refuses anything
// incomplete, and what it accepts encodes back to the same message.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"ciphertext":"AQI="}`,
		`{"initial":"AQ==","certificate":"Ag==","binding":"Aw==","ciphertext":"BA=="}`,
		`{"initial":"AQ==","ciphertext":"BA=="}`,
		`{"ciphertext":""}`,
		`{"ciphertext":"AQI=","extra":1}`,
		`{"ciphertext":"AQI="} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m client.Message
		if err := m.UnmarshalBinary(data); err != nil {
			return
		}
		if len(m.Ciphertext) == 0 || (m.Initial == nil) != (m.Certificate == nil) || (m.Initial == nil) != (m.Binding == nil) {
			t.Fatalf("incomplete message accepted: %+v", m)
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var again client.Message
		if err := again.UnmarshalBinary(b); err != nil || !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip: %+v → %+v (%v)", m, again, err)
		}
	})
}
