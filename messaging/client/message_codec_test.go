package client

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// The direct encoding of a ciphertext-only message is what json.Marshal
// writes, byte for byte, so a peer reads it as before.
func TestMessageMarshalMatchesJSON(t *testing.T) {
	msgs := []Message{
		{Ciphertext: []byte{1, 2}},
		{Ciphertext: []byte{}},
		{Ciphertext: nil},
		{Ciphertext: []byte{1}, Initial: []byte{}, Certificate: []byte{}, Binding: []byte{}},
		{Ciphertext: []byte{1}, Initial: []byte{2}, Certificate: []byte{3}, Binding: []byte{4}},
		{Ciphertext: []byte{1}, Binding: []byte{4}},
	}
	for n := range 70 {
		ct := make([]byte, n)
		rand.Read(ct)
		msgs = append(msgs, Message{Ciphertext: ct})
	}
	for _, m := range msgs {
		got, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v: MarshalBinary %s, json.Marshal %s", m, got, want)
		}
	}
}

// checkSameDecoding fails unless UnmarshalBinary and the JSON decoder
// alone agree on b: the same message, or both an ErrBadMessage.
func checkSameDecoding(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := unmarshalMessageJSON(b)
	var got Message
	err := got.UnmarshalBinary(b)
	if (err == nil) != (wantErr == nil) || err != nil && !errors.Is(err, ErrBadMessage) {
		t.Fatalf("%q: UnmarshalBinary %v, JSON decoder %v", b, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: UnmarshalBinary %+v, JSON decoder %+v", b, got, want)
	}
}

// The direct decoding of a ciphertext-only message accepts nothing the
// JSON decoder refuses and reads what it reads, for the encoder's own
// output and for near misses of it.
func TestMessageUnmarshalMatchesJSON(t *testing.T) {
	for _, s := range []string{
		`{"ciphertext":"AQI="}`,
		`{"ciphertext":"AQI"}`,  // no padding
		`{"ciphertext":"AQJ="}`, // non-zero trailing bits
		`{"ciphertext":"AQ=I"}`, // padding inside
		`{"ciphertext":"AQI=AQI="}`,
		`{"ciphertext":"A"}`,
		`{"ciphertext":""}`,
		`{"ciphertext":"===="}`,
		`{"ciphertext":"AQI=\n"}`,
		`{"ciphertext":"AQI\u003d"}`,
		`{"ciphertext":"AQ\nI="}`,
		`{"ciphertext":"AQ\rI="}`,
		`{"ciphertext":"AQ-_"}`, // URL alphabet
		`{"ciphertext":"AQI="} `,
		` {"ciphertext":"AQI="}`,
		`{"ciphertext": "AQI="}`,
		`{"Ciphertext":"AQI="}`,
		`{"ciphertext":"AQI="}}`,
		`{"ciphertext":"AQI=""}`,
		`{"ciphertext":"AQI="}{}`,
		`{"ciphertext":"AQI=","ciphertext":"AQI="}`,
		`{"ciphertext":null}`,
		`{"ciphertext":"AQI=","initial":"AQ=="}`,
		`{"initial":"AQ==","certificate":"Ag==","binding":"Aw==","ciphertext":"BA=="}`,
		`{"ciphertext":"`, `"}`, `{"ciphertext":"}`, ``,
	} {
		checkSameDecoding(t, []byte(s))
	}
	for n := range 70 {
		ct := make([]byte, n)
		rand.Read(ct)
		b, _ := (&Message{Ciphertext: ct}).MarshalBinary()
		checkSameDecoding(t, b)
		// Each byte of the encoding changed to each character that may
		// matter to either decoder.
		for i := range b {
			for _, c := range []byte("A/+=\"\\ \n\r}{-_") {
				mut := bytes.Clone(b)
				mut[i] = c
				checkSameDecoding(t, mut)
			}
		}
	}
}

// FuzzMessageDecoders: UnmarshalBinary and the JSON decoder alone agree
// on any input.
func FuzzMessageDecoders(f *testing.F) {
	f.Add([]byte(`{"ciphertext":"AQI="}`))
	f.Add([]byte(`{"ciphertext":"AQJ="}`))
	f.Add([]byte(`{"ciphertext":"AQI"}`))
	f.Fuzz(func(t *testing.T, b []byte) { checkSameDecoding(t, b) })
}

// A stored session record is what json.Marshal writes, byte for byte, so
// the Store (and an older SDK reading it) sees the same format.
func TestSessionRecordJSON(t *testing.T) {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	leaf := &sessionRecord{Session: rnd(40), InitialHash: rnd(32), Account: "acct-2"}
	recs := []*sessionRecord{
		{},
		{Session: []byte{}},
		{Session: rnd(300)},
		{Session: rnd(1), Initial: rnd(900), Account: "a0b1c2"},
		{Session: rnd(7), Initial: []byte{}, InitialHash: []byte{}, Archived: []*sessionRecord{}, Started: [][]byte{}},
		{Session: rnd(2), Archived: []*sessionRecord{leaf, nil, {Session: rnd(3)}}, Started: [][]byte{rnd(32), nil, {}, rnd(32)}},
		{Session: rnd(2), Alt: leaf},
		{Session: rnd(2), Alt: &sessionRecord{Alt: leaf}, Archived: []*sessionRecord{{Archived: []*sessionRecord{leaf}}}},
	}
	for _, acct := range []string{"plain", `q"uote`, `back\slash`, "<tag>&amp", "tab\there", "nl\n", "\x00\x1f\x7f", "ünïcødé", "\u2028\u2029", "bad \xff utf-8", "\xed\xa0\x80"} {
		recs = append(recs, &sessionRecord{Session: rnd(5), Account: acct, state: nil})
	}
	for _, r := range recs {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON %s\njson.Marshal %s", got, want)
		}
	}
}
