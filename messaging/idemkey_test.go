package messaging_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
)

// TestSendIdempotencyKeyHeader: an Idempotency-Key header on a send must
// be its client_id. One that is — in JSON or binary —
// is stored once and answered with the first answer on a retry; one that
// is not (another key, the id quoted, two of them) is a 400 validation
// problem that stores nothing, also for a client_id that was stored
// before.
func TestSendIdempotencyKeyHeader(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		send := func(clientID string) messaging.SendRequest {
			return messaging.SendRequest{To: messaging.SendTo{AccountID: "bob"}, ClientID: clientID, Class: "message",
				Envelopes: []messaging.SendEnvelope{{DeviceID: "bob-phone", Data: []byte("ct of " + clientID)}}}
		}
		key := func(vs ...string) http.Header { return http.Header{messaging.IdempotencyKeyHeader: vs} }
		jsonBody := func(r messaging.SendRequest) []byte {
			r.Envelopes = envelopesFor("bob-phone")
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}

		for _, tc := range []struct {
			name string
			h    http.Header
		}{
			{"another message's key", key("k2")},
			{"the id quoted", key(`"k1"`)},
			{"a key that begins with the id", key("k1x")},
			{"an empty key", key("")},
			{"two headers", key("k1", "k1")},
			{"a list in one header", key("k1, k1")},
		} {
			for _, form := range []struct {
				ct   string
				body []byte
			}{
				{messaging.BinarySendType, binarySend(t, "", send("k1"))},
				{"application/json", jsonBody(send("k1"))},
			} {
				st, out := e.postHeader(alice, form.ct, form.body, tc.h)
				if st != http.StatusBadRequest || out["type"] != "urn:kanal:problem:validation" {
					t.Errorf("%s (%s): %d %v, want 400 validation", tc.name, form.ct, st, out)
				}
			}
		}
		if en, sn := e.stored(); en != 0 || sn != 0 {
			t.Fatalf("refused sends stored %d envelopes, %d sends", en, sn)
		}

		// The key that matches: stored once, the retry answered with the
		// first answer, in either form.
		st, first := e.postHeader(alice, messaging.BinarySendType, binarySend(t, "", send("k1")), key("k1"))
		if st != http.StatusCreated {
			t.Fatalf("send with its key: %d %v", st, first)
		}
		st, again := e.postHeader(alice, "application/json", jsonBody(send("k1")), key("k1"))
		if st != http.StatusOK || again["envelope_ids"].(map[string]any)["bob-phone"] != first["envelope_ids"].(map[string]any)["bob-phone"] {
			t.Fatalf("retry with its key: %d %v, first %v", st, again, first)
		}
		// A stored send's retry with a wrong key is refused as well, not
		// answered: the header and the body must agree on every request.
		if st, out := e.postHeader(alice, messaging.BinarySendType, binarySend(t, "", send("k1")), key("k3")); st != http.StatusBadRequest {
			t.Fatalf("retry with another key: %d %v", st, out)
		}
		if en, sn := e.stored(); en != 1 || sn != 1 {
			t.Fatalf("stored %d envelopes, %d sends; want 1, 1", en, sn)
		}
	})
}
