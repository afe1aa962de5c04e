package messaging_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// postRaw sends body to POST /v1/messages with the content type ct and
// decodes the JSON answer; an error must be problem+json.
func (e *sendEnv) postRaw(dev *device, ct string, body []byte) (int, map[string]any) {
	e.t.Helper()
	return e.postHeader(dev, ct, body, nil)
}

// postHeader is postRaw with the request headers of h added.
func (e *sendEnv) postHeader(dev *device, ct string, body []byte, h http.Header) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "POST", e.ts.URL+"/v1/messages", bytes.NewReader(body))
	for k, vs := range h {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Test "+dev.account+" "+dev.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("%d: %s: %v", resp.StatusCode, b, err)
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		e.t.Errorf("%d with content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, out
}

// binarySend encodes req as the binary body of POST /v1/messages.
func binarySend(t *testing.T, ref string, req messaging.SendRequest) []byte {
	t.Helper()
	b, err := messaging.AppendSendFrame(nil, ref, &req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSendBinaryBody: a send in binary form (messaging.BinarySendType)
// stores the same envelopes and gets the same answers as in JSON — 201,
// then 200 with the first answer for a retry in either form — and the
// ciphertext arrives as the bytes sent.
func TestSendBinaryBody(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, true)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		ct := []byte{0x00, 0xca, 0xfe, 0xff}
		req := messaging.SendRequest{To: messaging.SendTo{AccountID: "bob"}, ClientID: "b1", Class: "message",
			Envelopes: []messaging.SendEnvelope{{DeviceID: "bob-phone", Data: ct}}}
		st, first := e.postRaw(alice, messaging.BinarySendType, binarySend(t, "", req))
		if st != http.StatusCreated {
			t.Fatalf("binary send: %d %v", st, first)
		}
		// A retry, in binary with parameters or in JSON, gets the first answer.
		st, again := e.postRaw(alice, messaging.BinarySendType+"; v=1", binarySend(t, "", req))
		if st != http.StatusOK || again["envelope_ids"].(map[string]any)["bob-phone"] != first["envelope_ids"].(map[string]any)["bob-phone"] {
			t.Fatalf("binary retry: %d %v, first %v", st, again, first)
		}
		jreq := req
		jreq.Envelopes = []messaging.SendEnvelope{{DeviceID: "bob-phone", Ciphertext: base64.StdEncoding.EncodeToString(ct)}}
		if st, _, out := e.post(alice, jreq); st != http.StatusOK {
			t.Fatalf("JSON retry of a binary send: %d %v", st, out)
		}
		if en, sn := e.stored(); en != 1 || sn != 1 {
			t.Fatalf("stored %d envelopes, %d sends", en, sn)
		}
		envs, err := e.mb.Fetch(context.Background(), "bob-phone", 0, 10)
		if err != nil || len(envs) != 1 || !bytes.Equal(envs[0].Ciphertext, ct) || envs[0].Sender != "alice-phone" {
			t.Fatalf("bob's mailbox: %+v, %v", envs, err)
		}
	})
}

// TestSendBinaryBadBodies: a binary body that is malformed, carries a ref,
// breaks a limit or fails a check the JSON form has gets the same kind of
// problem+json answer, and nothing is stored.
func TestSendBinaryBadBodies(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		good := func() messaging.SendRequest {
			return messaging.SendRequest{To: messaging.SendTo{AccountID: "bob"}, ClientID: "c1", Class: "message",
				Envelopes: []messaging.SendEnvelope{{DeviceID: "bob-phone", Data: []byte("ct")}}}
		}
		valid := binarySend(t, "", good())
		for _, tc := range []struct {
			name   string
			ct     string
			body   []byte
			status int
			typ    web.ProblemType
		}{
			{"empty body", messaging.BinarySendType, nil, 400, web.TypeValidation},
			{"ends early", messaging.BinarySendType, valid[:len(valid)-1], 400, web.TypeValidation},
			{"trailing byte", messaging.BinarySendType, append(bytes.Clone(valid), 0), 400, web.TypeValidation},
			{"not a send frame", messaging.BinarySendType, append([]byte{0x01}, valid[1:]...), 400, web.TypeValidation},
			{"a ref", messaging.BinarySendType, binarySend(t, "r1", good()), 400, web.TypeValidation},
			{"JSON declared binary", messaging.BinarySendType, []byte(`{"to":{"account_id":"bob"}}`), 400, web.TypeValidation},
			{"binary declared JSON", "application/json", valid, 400, web.TypeInvalidJSON},
			{"another media type", "application/octet-stream", valid, 415, web.TypeUnsupportedMedia},
			{"empty ciphertext", messaging.BinarySendType, binarySend(t, "", func() messaging.SendRequest {
				r := good()
				r.Envelopes[0].Data = []byte{}
				return r
			}()), 400, web.TypeValidation},
			{"oversized ciphertext", messaging.BinarySendType, binarySend(t, "", func() messaging.SendRequest {
				r := good()
				r.Envelopes[0].Data = make([]byte, mailbox.MaxCiphertext+1)
				return r
			}()), 400, web.TypeValidation},
			{"duplicate device", messaging.BinarySendType, binarySend(t, "", func() messaging.SendRequest {
				r := good()
				r.Envelopes = append(r.Envelopes, r.Envelopes[0])
				return r
			}()), 400, web.TypeValidation},
			{"bad client id", messaging.BinarySendType, binarySend(t, "", func() messaging.SendRequest {
				r := good()
				r.ClientID = "a/b"
				return r
			}()), 400, web.TypeValidation},
			{"to self", messaging.BinarySendType, binarySend(t, "", func() messaging.SendRequest {
				r := good()
				r.To.AccountID = "alice"
				return r
			}()), 400, web.TypeValidation},
			{"over the body limit", messaging.BinarySendType, append(bytes.Clone(valid), make([]byte, 16<<20)...), 413, web.TypeTooLarge},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, out := e.postRaw(alice, tc.ct, tc.body)
				wantProblem(t, st, out, tc.status, tc.typ)
				if en, sn := e.stored(); en != 0 || sn != 0 {
					t.Fatalf("stored %d %d", en, sn)
				}
			})
		}
		if st, out := e.postRaw(alice, messaging.BinarySendType, valid); st != http.StatusCreated {
			t.Fatalf("good: %d %v", st, out)
		}
	})
}
