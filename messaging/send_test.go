package messaging_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

var sendSets = []db.Migrations{messaging.Migrations(), mailbox.Migrations()}

// sendEnv is a send service over httptest with a recording notify.
type sendEnv struct {
	t     testing.TB
	d     *db.DB
	dir   *fakeDir
	mb    *mailbox.Store
	svc   *messaging.Service
	ts    *httptest.Server
	now   *time.Time
	mu    sync.Mutex
	woken [][]string
}

func newSendEnv(t testing.TB, d *db.DB, limit int, batch bool, opts ...func(*messaging.Options)) *sendEnv {
	now := testNow
	e := &sendEnv{t: t, d: d, dir: newFakeDir(t), now: &now}
	e.mb = mailbox.NewStore(d, mailbox.StoreOptions{Now: func() time.Time { return *e.now }})
	o := messaging.Options{DB: d, Directory: e.dir, Auth: testAuth(), Now: func() time.Time { return *e.now },
		Mailbox: e.mb, MaxSendsPerWindow: limit, Notary: e.dir.notary(t), Roots: e.dir.ca.Pool(),
		Notify: func(devices ...string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.woken = append(e.woken, devices)
		}}
	for _, f := range opts {
		f(&o)
	}
	if batch {
		b := d.NewBatcher(8)
		t.Cleanup(b.Close)
		o.Batcher = b
	}
	s, err := messaging.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = s
	mux := http.NewServeMux()
	s.Register(mux)
	mux.Handle("/", web.NotFound())
	e.ts = httptest.NewServer(web.Handler(mux, web.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(e.ts.Close)
	return e
}

func (e *sendEnv) post(dev *device, body any) (int, http.Header, map[string]any) {
	e.t.Helper()
	return e.request(dev, "POST", "/v1/messages", body)
}

// request sends body (JSON, or a string as is; nil: none) to any route and
// decodes the JSON answer; an error must be problem+json.
func (e *sendEnv) request(dev *device, method, path string, body any) (int, http.Header, map[string]any) {
	e.t.Helper()
	status, h, b := e.requestRaw(dev, method, path, body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("%s %s: %d: %s: %v", method, path, status, b, err)
	}
	if status >= 400 && h.Get("Content-Type") != "application/problem+json" {
		e.t.Errorf("%d with content type %q", status, h.Get("Content-Type"))
	}
	return status, h, out
}

// requestRaw is request with the answer's bytes as they came.
func (e *sendEnv) requestRaw(dev *device, method, path string, body any) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, e.ts.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Test "+dev.account+" "+dev.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// stored counts the mailbox rows and send rows.
func (e *sendEnv) stored() (envelopes, sends int) {
	e.t.Helper()
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM mailbox`).Scan(&envelopes); err != nil {
		e.t.Fatal(err)
	}
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM messaging_sends`).Scan(&sends); err != nil {
		e.t.Fatal(err)
	}
	return envelopes, sends
}

func envelopesFor(ids ...string) []messaging.SendEnvelope {
	out := make([]messaging.SendEnvelope, len(ids))
	for i, id := range ids {
		out[i] = messaging.SendEnvelope{DeviceID: id, Ciphertext: base64.StdEncoding.EncodeToString([]byte("ct for " + id))}
	}
	return out
}

func toAccount(a, clientID string, ids ...string) messaging.SendRequest {
	return messaging.SendRequest{To: messaging.SendTo{AccountID: a}, ClientID: clientID, Class: "message", Envelopes: envelopesFor(ids...)}
}

func wantProblem(t *testing.T, status int, out map[string]any, wantStatus int, wantType web.ProblemType) {
	t.Helper()
	if status != wantStatus || out["type"] != string(wantType) {
		t.Fatalf("got %d %v, want %d %s", status, out, wantStatus, wantType)
	}
}

func strs(v any) []string {
	out := []string{}
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestSendDirect(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		for _, batch := range []bool{false, true} {
			e := newSendEnv(t, d, 0, batch)
			p := "b0"
			if batch {
				p = "b1"
			}
			alice := e.enroll(p+"alice", p+"alice-phone", true)
			e.enroll(p+"alice", p+"alice-laptop", false)
			e.enroll(p+"bob", p+"bob-phone", false)
			e.enroll(p+"bob", p+"bob-tablet", false)
			e0, s0 := e.stored()

			// Missing: bob's tablet and alice's laptop. Nothing stored.
			st, _, out := e.post(alice, toAccount(p+"bob", "m1", p+"bob-phone"))
			wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
			if got := strs(out["missing"]); !reflect.DeepEqual(got, []string{p + "alice-laptop", p + "bob-tablet"}) {
				t.Fatalf("missing %v", got)
			}
			if got := strs(out["stale"]); len(got) != 0 {
				t.Fatalf("stale %v", got)
			}
			if got := strs(out["devices"]); !reflect.DeepEqual(got, []string{p + "alice-laptop", p + "bob-phone", p + "bob-tablet"}) {
				t.Fatalf("devices %v", got)
			}
			// Stale: a revoked device and the sending device itself.
			e.enroll(p+"bob", p+"bob-old", false)
			e.dir.revoke(p + "bob-old")
			st, _, out = e.post(alice, toAccount(p+"bob", "m1", p+"bob-phone", p+"bob-tablet", p+"alice-laptop", p+"bob-old", p+"alice-phone"))
			wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
			if got := strs(out["stale"]); !reflect.DeepEqual(got, []string{p + "alice-phone", p + "bob-old"}) {
				t.Fatalf("stale %v", got)
			}
			if got := strs(out["missing"]); len(got) != 0 {
				t.Fatalf("missing %v", got)
			}
			if en, sn := e.stored(); en != e0 || sn != s0 {
				t.Fatalf("409 stored something: %d %d", en-e0, sn-s0)
			}

			// The exact set: one envelope per device, one send row.
			req := toAccount(p+"bob", "m1", p+"bob-tablet", p+"bob-phone", p+"alice-laptop")
			st, _, out = e.post(alice, req)
			if st != 201 {
				t.Fatalf("send: %d %v", st, out)
			}
			conv := messaging.DirectConversation(p+"alice", p+"bob")
			if out["conversation_id"] != conv || conv != messaging.DirectConversation(p+"bob", p+"alice") ||
				!strings.HasPrefix(conv, "d_") || len(conv) != 34 || out["client_id"] != "m1" {
				t.Fatalf("answer %v", out)
			}
			ids := out["envelope_ids"].(map[string]any)
			if len(ids) != 3 {
				t.Fatalf("envelope ids %v", ids)
			}
			for _, dev := range []string{p + "bob-phone", p + "bob-tablet", p + "alice-laptop"} {
				got, err := e.mb.Fetch(context.Background(), dev, 0, 10)
				if err != nil || len(got) != 1 {
					t.Fatalf("%s: %v %v", dev, got, err)
				}
				g := got[0]
				if g.ID != ids[dev] || g.Conversation != conv || g.Sender != alice.id || g.Class != "message" ||
					string(g.Ciphertext) != "ct for "+dev {
					t.Fatalf("%s: %+v", dev, g)
				}
			}
			if en, sn := e.stored(); en != e0+3 || sn != s0+1 {
				t.Fatalf("stored %d envelopes %d sends", en-e0, sn-s0)
			}
			e.mu.Lock()
			woken := e.woken
			e.mu.Unlock()
			if len(woken) != 1 || !slices.Equal(woken[0], []string{p + "alice-laptop", p + "bob-phone", p + "bob-tablet"}) {
				t.Fatalf("notified %v", woken)
			}

			// A retry, even with other ciphertexts, answers the first
			// result with 200 and stores nothing.
			req.Envelopes[0].Ciphertext = base64.StdEncoding.EncodeToString([]byte("other"))
			st2, _, out2 := e.post(alice, req)
			if st2 != 200 || !reflect.DeepEqual(out2, out) {
				t.Fatalf("retry: %d %v, first %v", st2, out2, out)
			}
			if en, sn := e.stored(); en != e0+3 || sn != s0+1 {
				t.Fatalf("retry stored %d envelopes %d sends", en-e0, sn-s0)
			}
			// The same client id to another conversation is a conflict.
			e.enroll(p+"carol", p+"carol-phone", false)
			st, _, out = e.post(alice, toAccount(p+"carol", "m1", p+"carol-phone", p+"alice-laptop"))
			wantProblem(t, st, out, 409, messaging.TypeClientIDReused)
			// Another client id is another message.
			st, _, out = e.post(alice, toAccount(p+"bob", "m2", p+"bob-tablet", p+"bob-phone", p+"alice-laptop"))
			if st != 201 || out["conversation_id"] != conv {
				t.Fatalf("second: %d %v", st, out)
			}
			if en, sn := e.stored(); en != e0+6 || sn != s0+2 {
				t.Fatalf("stored %d envelopes %d sends", en-e0, sn-s0)
			}
		}
	})
}

func TestSendOrg(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		citizen := e.enroll("citizen", "citizen-phone", true)
		a1 := e.enroll("agent1", "agent1-desk", false)
		a2 := e.enroll("agent2", "agent2-desk", false)
		e.dir.addOrg(t, "org-1", a1, a2)

		st, _, out := e.post(citizen, messaging.SendRequest{To: messaging.SendTo{OrgID: "org-1"}, ClientID: "x",
			Class: "transaction", Envelopes: envelopesFor("agent1-desk")})
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		if got := strs(out["missing"]); !slices.Equal(got, []string{"agent2-desk"}) {
			t.Fatalf("missing %v", got)
		}
		st, _, out = e.post(citizen, messaging.SendRequest{To: messaging.SendTo{OrgID: "org-1"}, ClientID: "x",
			Class: "transaction", Envelopes: envelopesFor("agent1-desk", "agent2-desk")})
		conv := messaging.OrgConversation("org-1", "citizen")
		if st != 201 || out["conversation_id"] != conv || !strings.HasPrefix(conv, "o_") || len(conv) != 34 {
			t.Fatalf("org send: %d %v", st, out)
		}
		got, err := e.mb.Fetch(context.Background(), "agent2-desk", 0, 10)
		if err != nil || len(got) != 1 || got[0].Class != "transaction" || got[0].Conversation != conv {
			t.Fatalf("agent mailbox: %+v %v", got, err)
		}
		// An agent answers the citizen in the same conversation; the other
		// agent gets a copy. A non-agent may not.
		e.enroll("citizen", "citizen-laptop", false)
		st, _, out = e.post(a1, messaging.SendRequest{To: messaging.SendTo{OrgID: "org-1", AccountID: "citizen"}, ClientID: "x",
			Class: "message", Envelopes: envelopesFor("citizen-phone", "citizen-laptop")})
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		if got := strs(out["missing"]); !slices.Equal(got, []string{"agent2-desk"}) {
			t.Fatalf("agent reply missing %v", got)
		}
		st, _, out = e.post(a1, messaging.SendRequest{To: messaging.SendTo{OrgID: "org-1", AccountID: "citizen"}, ClientID: "x",
			Class: "message", Envelopes: envelopesFor("citizen-phone", "citizen-laptop", "agent2-desk")})
		if st != 201 || out["conversation_id"] != conv {
			t.Fatalf("agent reply: %d %v", st, out)
		}
		outsider := e.enroll("outsider", "outsider-phone", false)
		st, _, out = e.post(outsider, messaging.SendRequest{To: messaging.SendTo{OrgID: "org-1", AccountID: "citizen"}, ClientID: "x",
			Class: "message", Envelopes: envelopesFor("citizen-phone", "citizen-laptop", "agent1-desk", "agent2-desk")})
		wantProblem(t, st, out, 403, web.TypeForbidden)
		if en, sn := e.stored(); en != 5 || sn != 2 {
			t.Fatalf("stored %d %d", en, sn)
		}
		// An unknown organisation.
		st, _, out = e.post(citizen, messaging.SendRequest{To: messaging.SendTo{OrgID: "org-nope"}, ClientID: "y",
			Class: "message", Envelopes: envelopesFor("agent1-desk")})
		wantProblem(t, st, out, 404, messaging.TypeUnknownRecipient)
		if en, sn := e.stored(); en != 5 || sn != 2 {
			t.Fatalf("stored %d %d", en, sn)
		}
	})
}

func TestSendBadInput(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		good := func() messaging.SendRequest { return toAccount("bob", "c1", "bob-phone") }
		many := make([]string, messaging.MaxSendDevices+1)
		for i := range many {
			many[i] = "dev-" + strconv.Itoa(i)
		}
		for _, tc := range []struct {
			name   string
			body   any
			status int
			typ    web.ProblemType
		}{
			{"unknown field", `{"to":{"account_id":"bob"},"client_id":"c1","class":"message","envelopes":[{"device_id":"bob-phone","ciphertext":"AA=="}],"extra":1}`, 400, web.TypeInvalidJSON},
			{"unknown nested field", `{"to":{"account_id":"bob","device":"x"},"client_id":"c1","class":"message","envelopes":[{"device_id":"bob-phone","ciphertext":"AA=="}]}`, 400, web.TypeInvalidJSON},
			{"trailing data", `{"to":{"account_id":"bob"},"client_id":"c1","class":"message","envelopes":[{"device_id":"bob-phone","ciphertext":"AA=="}]} {}`, 400, web.TypeInvalidJSON},
			{"bad base64", func() any { r := good(); r.Envelopes[0].Ciphertext = "not base64!"; return r }(), 400, web.TypeValidation},
			{"unpadded base64", func() any { r := good(); r.Envelopes[0].Ciphertext = "AAA"; return r }(), 400, web.TypeValidation},
			{"empty ciphertext", func() any { r := good(); r.Envelopes[0].Ciphertext = ""; return r }(), 400, web.TypeValidation},
			{"oversized ciphertext", func() any {
				r := good()
				r.Envelopes[0].Ciphertext = base64.StdEncoding.EncodeToString(make([]byte, mailbox.MaxCiphertext+1))
				return r
			}(), 413, web.TypeTooLarge},
			{"too many envelopes", func() any {
				r := good()
				r.Envelopes = envelopesFor(many...)
				return r
			}(), 413, web.TypeTooLarge},
			{"duplicate device", func() any { r := good(); r.Envelopes = envelopesFor("bob-phone", "bob-phone"); return r }(), 400, web.TypeValidation},
			{"bad device id", func() any { r := good(); r.Envelopes = envelopesFor("bob phone"); return r }(), 400, web.TypeValidation},
			// No envelopes asks for the device list: a 409 naming every device, nothing stored.
			{"no envelopes", func() any { r := good(); r.Envelopes = nil; return r }(), 409, messaging.TypeStaleDevices},
			{"empty client id", func() any { r := good(); r.ClientID = ""; return r }(), 400, web.TypeValidation},
			{"bad client id", func() any { r := good(); r.ClientID = "a/b"; return r }(), 400, web.TypeValidation},
			{"long client id", func() any { r := good(); r.ClientID = strings.Repeat("a", 65); return r }(), 400, web.TypeValidation},
			{"bad class", func() any { r := good(); r.Class = "text"; return r }(), 400, web.TypeValidation},
			{"no recipient", func() any { r := good(); r.To = messaging.SendTo{}; return r }(), 400, web.TypeValidation},
			{"long org id", func() any { r := good(); r.To = messaging.SendTo{OrgID: strings.Repeat("o", 129)}; return r }(), 400, web.TypeValidation},
			{"to self", func() any { r := good(); r.To.AccountID = "alice"; return r }(), 400, web.TypeValidation},
			{"unknown account", func() any { r := good(); r.To.AccountID = "nobody"; return r }(), 404, messaging.TypeUnknownRecipient},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, _, out := e.post(alice, tc.body)
				wantProblem(t, st, out, tc.status, tc.typ)
				if en, sn := e.stored(); en != 0 || sn != 0 {
					t.Fatalf("stored %d %d", en, sn)
				}
			})
		}
		// And the good request goes through.
		if st, _, out := e.post(alice, good()); st != 201 {
			t.Fatalf("good: %d %v", st, out)
		}
	})
}

func TestSendRateLimit(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 3, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		for i, id := range []string{"a", "b", "c"} {
			if st, _, out := e.post(alice, toAccount("bob", id, "bob-phone")); st != 201 {
				t.Fatalf("send %d: %d %v", i, st, out)
			}
		}
		// A retry is answered from the idempotency table, not counted.
		if st, _, _ := e.post(alice, toAccount("bob", "a", "bob-phone")); st != 200 {
			t.Fatalf("retry: %d", st)
		}
		st, h, out := e.post(alice, toAccount("bob", "d", "bob-phone"))
		wantProblem(t, st, out, 429, web.TypeRateLimited)
		if h.Get("Retry-After") != "60" {
			t.Fatalf("Retry-After %q", h.Get("Retry-After"))
		}
		if en, sn := e.stored(); en != 3 || sn != 3 {
			t.Fatalf("stored %d %d", en, sn)
		}
		// Another device has its own budget; the next window resets.
		e.enroll("carol", "carol-phone", false)
		carol := &device{id: "carol-phone", account: "carol"}
		if st, _, out := e.post(carol, toAccount("bob", "d", "bob-phone")); st != 201 {
			t.Fatalf("carol: %d %v", st, out)
		}
		*e.now = e.now.Add(messaging.SendWindow)
		if st, _, out := e.post(alice, toAccount("bob", "d", "bob-phone")); st != 201 {
			t.Fatalf("next window: %d %v", st, out)
		}
	})
}

// TestSendConcurrentRetries races attempts with one client_id: exactly one
// is stored, and every attempt answers the same envelope ids.
func TestSendConcurrentRetries(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		for _, batch := range []bool{false, true} {
			e := newSendEnv(t, d, 0, batch)
			p := "r" + strconv.FormatBool(batch)
			alice := e.enroll(p+"alice", p+"alice-phone", true)
			e.enroll(p+"bob", p+"bob-phone", false)
			e0, s0 := e.stored()
			const n = 8
			var wg sync.WaitGroup
			statuses := make([]int, n)
			ids := make([]any, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, _, out := e.post(alice, toAccount(p+"bob", "same", p+"bob-phone"))
					statuses[i], ids[i] = st, out["envelope_ids"]
				}()
			}
			wg.Wait()
			created := 0
			for i := range n {
				if statuses[i] == 201 {
					created++
				} else if statuses[i] != 200 {
					t.Fatalf("attempt %d: %d", i, statuses[i])
				}
				if !reflect.DeepEqual(ids[i], ids[0]) {
					t.Fatalf("attempt %d answered %v, attempt 0 %v", i, ids[i], ids[0])
				}
			}
			if created != 1 {
				t.Fatalf("%d attempts created", created)
			}
			if en, sn := e.stored(); en != e0+1 || sn != s0+1 {
				t.Fatalf("stored %d envelopes %d sends", en-e0, sn-s0)
			}
		}
	})
}

// TestSendRetryAfterDevicesChanged: the idempotency check rides on the
// insert, so a retry whose device list has gone stale since its first
// attempt (the recipient enrolled a device) must still get its first
// answer, not 409, and store nothing; a new send with that list is
// refused as stale.
func TestSendRetryAfterDevicesChanged(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 100, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		st, _, first := e.post(alice, toAccount("bob", "m1", "bob-phone"))
		if st != 201 {
			t.Fatalf("send: %d %v", st, first)
		}
		e.enroll("bob", "bob-tablet", false)
		st, _, again := e.post(alice, toAccount("bob", "m1", "bob-phone"))
		if st != 200 || !reflect.DeepEqual(again, first) {
			t.Fatalf("retry: %d %v, first %v", st, again, first)
		}
		st, _, out := e.post(alice, toAccount("bob", "m2", "bob-phone"))
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		if en, sn := e.stored(); en != 1 || sn != 1 {
			t.Fatalf("stored %d envelopes %d sends", en, sn)
		}
	})
}

// TestSendAnswerBytes: the answer to a send over HTTP is, byte for byte,
// what json.Encoder writes for the response it decodes to — when the send
// is stored (written from the bytes its idempotency row keeps) and when a
// retry is answered from that row — with the headers of every JSON answer.
func TestSendAnswerBytes(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 100, false)
		alice := e.enroll("alice", "alice-phone", true)
		e.enroll("bob", "bob-phone", false)
		e.enroll("bob", "bob-tablet", false)
		var first []byte
		for _, want := range []int{201, 200} {
			st, h, raw := e.requestRaw(alice, "POST", "/v1/messages", toAccount("bob", "m1", "bob-phone", "bob-tablet"))
			var r messaging.SendResponse
			if err := json.Unmarshal(raw, &r); err != nil || st != want || len(r.EnvelopeIDs) != 2 {
				t.Fatalf("send: %d %s (%v), want %d with two envelope ids", st, raw, err, want)
			}
			var enc bytes.Buffer
			if err := json.NewEncoder(&enc).Encode(&r); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, enc.Bytes()) {
				t.Fatalf("answer\n%q\nis not what json.Encoder writes for it\n%q", raw, enc.Bytes())
			}
			if h.Get("Content-Type") != "application/json" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v", h)
			}
			if first == nil {
				first = raw
			} else if !bytes.Equal(raw, first) {
				t.Fatalf("retry's answer %s, first %s", raw, first)
			}
		}
	})
}

// TestSendGroupCommit: sends that share a group commit are written
// together (one append, one insert of their idempotency rows), and each
// keeps what a send promises: every answer names the envelope stored for
// it, a sender's messages reach a device in the order it sent them, a
// retry gets its first answer, and a send into a full mailbox fails alone
// while the others of its commit are stored.
func TestSendGroupCommit(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, true, func(o *messaging.Options) {
			o.MailboxQuota = mailbox.Quota{MaxEnvelopes: 40}
		})
		e.enroll("bob", "bob-phone", false)
		const senders, each = 12, 5
		devs := make([]*device, senders)
		for i := range devs {
			devs[i] = e.enroll("s"+strconv.Itoa(i), "s"+strconv.Itoa(i)+"-phone", true)
		}
		answers := make([][]map[string]any, senders)
		var wg sync.WaitGroup
		for i, dev := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range each {
					// bob's mailbox takes 40 of the 60: some sends near
					// the end fail with mailbox-full, the rest go through.
					st, _, out := e.post(dev, toAccount("bob", "m"+strconv.Itoa(k), "bob-phone"))
					if st != 201 && !(st == 507 && out["type"] == string(messaging.TypeMailboxFull)) {
						t.Errorf("%s send %d: %d %v", dev.id, k, st, out)
					}
					if st == 201 {
						answers[i] = append(answers[i], out)
					}
				}
			}()
		}
		wg.Wait()
		got, err := e.mb.Fetch(context.Background(), "bob-phone", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		stored := 0
		for _, a := range answers {
			stored += len(a)
		}
		if len(got) != 40 || stored != 40 {
			t.Fatalf("bob holds %d envelopes, %d sends were answered 201; want 40 and 40", len(got), stored)
		}
		// Each answer's envelope id is in the mailbox, from its sender,
		// and each sender's envelopes come in the order it sent them.
		pos := map[string]int{}
		for i, g := range got {
			pos[g.ID] = i
		}
		for i, as := range answers {
			last := -1
			for _, a := range as {
				id := a["envelope_ids"].(map[string]any)["bob-phone"].(string)
				p, ok := pos[id]
				if !ok || got[p].Sender != devs[i].id {
					t.Fatalf("%s: answer %v names no envelope of its own", devs[i].id, a)
				}
				if p <= last {
					t.Fatalf("%s: envelopes out of send order", devs[i].id)
				}
				last = p
			}
			if len(as) > 0 {
				st, _, again := e.post(devs[i], toAccount("bob", as[0]["client_id"].(string), "bob-phone"))
				if st != 200 || !reflect.DeepEqual(again, as[0]) {
					t.Fatalf("%s: retry answered %d %v, first %v", devs[i].id, st, again, as[0])
				}
			}
		}
	})
}
