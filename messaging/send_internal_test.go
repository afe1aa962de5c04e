package messaging

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// The idempotency row's result is what a retry gets back: written without
// encoding/json, it must be exactly what json.Marshal writes, and decode
// to the same answer, whatever the ids hold.
func TestSendResultJSONIsJSONMarshal(t *testing.T) {
	at := time.UnixMilli(1764800000123).UTC()
	cases := []struct {
		name string
		r    *SendResponse
		envs []mailbox.Envelope
	}{
		{"one device", &SendResponse{ConversationID: DirectConversation("alice", "bob"), ClientID: "c-1_x"},
			[]mailbox.Envelope{{Recipient: "bob-phone", ID: mailbox.NewEnvelopeID()}}},
		{"several devices", &SendResponse{ConversationID: "g_group", ClientID: "c2"},
			[]mailbox.Envelope{{Recipient: "a", ID: "e1"}, {Recipient: "b-2", ID: "e2"}, {Recipient: "c_3", ID: "e3"}}},
		{"whole second", &SendResponse{ConversationID: "d_x", ClientID: "c3"},
			[]mailbox.Envelope{{Recipient: "a", ID: "e1"}}},
		// What the plain path does not write falls back to encoding/json.
		{"escaped client id", &SendResponse{ConversationID: "d_x", ClientID: `a"b<c>\&é`},
			[]mailbox.Envelope{{Recipient: "a", ID: "e1"}}},
		{"escaped device", &SendResponse{ConversationID: "d_x", ClientID: "c"},
			[]mailbox.Envelope{{Recipient: "a\x01", ID: "e1"}}},
		{"unsorted", &SendResponse{ConversationID: "d_x", ClientID: "c"},
			[]mailbox.Envelope{{Recipient: "b", ID: "e1"}, {Recipient: "a", ID: "e2"}}},
		{"no envelopes", &SendResponse{ConversationID: "d_x", ClientID: "c"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.ServerTime = at
			if tc.name == "whole second" {
				tc.r.ServerTime = at.Truncate(time.Second)
			}
			tc.r.EnvelopeIDs = map[string]string{}
			for _, e := range tc.envs {
				tc.r.EnvelopeIDs[e.Recipient] = e.ID
			}
			want, err := json.Marshal(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sendResultJSON(tc.r, tc.envs)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("sendResultJSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// The conversation ids are derived as documented: the first 32 hex digits
// of SHA-256 over the two ids joined by a NUL byte, however long the ids.
func TestConversationIDs(t *testing.T) {
	doc := func(prefix, a, b string) string {
		h := sha256.Sum256([]byte(a + "\x00" + b))
		return prefix + hex.EncodeToString(h[:])[:32]
	}
	long := string(make([]byte, 300))
	for _, ab := range [][2]string{{"alice", "bob"}, {"bob", "alice"}, {"", "x"}, {long, "y"}, {"z", long}} {
		a, b := ab[0], ab[1]
		lo, hi := min(a, b), max(a, b)
		if got, want := DirectConversation(a, b), doc("d_", lo, hi); got != want {
			t.Errorf("DirectConversation(%.10q, %.10q) = %s, want %s", a, b, got, want)
		}
		if got, want := OrgConversation(a, b), doc("o_", a, b); got != want {
			t.Errorf("OrgConversation(%.10q, %.10q) = %s, want %s", a, b, got, want)
		}
	}
}

// BenchmarkSendAnswer is what writing an HTTP send's answer costs, encoded
// by encoding/json (a retry's, as every answer's before) and written from
// the bytes the send keeps for its idempotency row (a stored send's), for
// a send to one device and to a group of 50, into a writer that keeps
// nothing. docs/benchmarks.md, "An HTTP send's answer encoded once".
func BenchmarkSendAnswer(b *testing.B) {
	for _, n := range []int{1, 50} {
		r := &SendResponse{ConversationID: DirectConversation("alice", "bob"), ClientID: "c-1_x",
			ServerTime: time.UnixMilli(1764800000123).UTC(), EnvelopeIDs: map[string]string{}}
		envs := make([]mailbox.Envelope, n)
		for i := range envs {
			envs[i] = mailbox.Envelope{Recipient: fmt.Sprintf("device-%03d", i), ID: mailbox.NewEnvelopeID()}
			r.EnvelopeIDs[envs[i].Recipient] = envs[i].ID
		}
		j, err := sendResultJSON(r, envs)
		if err != nil {
			b.Fatal(err)
		}
		w := discardWriter{http.Header{}}
		b.Run(fmt.Sprintf("devices=%d/json", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				web.WriteJSON(w, http.StatusCreated, r)
			}
		})
		b.Run(fmt.Sprintf("devices=%d/encoded", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				web.WriteEncodedJSON(w, http.StatusCreated, j)
			}
		})
	}
}

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (w discardWriter) Header() http.Header         { return w.h }
func (w discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w discardWriter) WriteHeader(int)             {}
