package messaging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
)

// TestHTTP drives the real handlers through web.Handler over httptest.
// Authentication is the test stand-in; the SDK tests in messaging/client
// run the same routes behind identity's real middleware in kanald.
func TestHTTP(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		now := testNow
		dir := newFakeDir(t)
		s := newService(t, d, dir, &now)
		mux := http.NewServeMux()
		s.Register(mux)
		mux.Handle("/", web.NotFound())
		ts := httptest.NewServer(web.Handler(mux, web.Options{Logger: slog.New(slog.DiscardHandler)}))
		defer ts.Close()
		bob := dir.enroll(t, "bob", "bob-phone", false)
		alice := dir.enroll(t, "alice", "alice-phone", true)

		call := func(dev *device, method, path string, body any) (int, http.Header, map[string]any) {
			t.Helper()
			var rd io.Reader
			switch b := body.(type) {
			case nil:
			case string:
				rd = strings.NewReader(b)
			default:
				j, _ := json.Marshal(b)
				rd = bytes.NewReader(j)
			}
			req, _ := http.NewRequestWithContext(context.Background(), method, ts.URL+path, rd)
			if rd != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			if dev != nil {
				req.Header.Set("Authorization", "Test "+dev.account+" "+dev.id)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			raw, _ := io.ReadAll(resp.Body)
			json.Unmarshal(raw, &out)
			if resp.StatusCode != 200 && resp.Header.Get("Content-Type") != "application/problem+json" && dev != nil {
				t.Errorf("%s %s: %d with content type %q", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			return resp.StatusCode, resp.Header, out
		}
		problem := func(status int, out map[string]any, wantStatus int, wantType web.ProblemType) {
			t.Helper()
			if status != wantStatus || out["type"] != string(wantType) {
				t.Fatalf("got %d %v, want %d %s", status, out, wantStatus, wantType)
			}
		}
		stored := func() {
			t.Helper()
			st, _ := s.Status(context.Background(), bob.id)
			if st.Published {
				t.Fatalf("bad input stored: %+v", st)
			}
		}

		// No session: the auth wrapper refuses before any handler runs.
		if st, _, _ := call(nil, "GET", "/v1/prekeys/status", nil); st != http.StatusUnauthorized {
			t.Fatalf("unauthenticated status: %d", st)
		}

		// Bad bodies: problem+json, nothing stored.
		good := bob.publishRequest(t)
		j, _ := json.Marshal(good)
		unknown := strings.Replace(string(j), "{", `{"extra":1,`, 1)
		st, _, out := call(bob, "PUT", "/v1/prekeys", unknown)
		problem(st, out, 400, web.TypeInvalidJSON)
		stored()
		st, _, out = call(bob, "PUT", "/v1/prekeys", string(j)+"{}")
		problem(st, out, 400, web.TypeInvalidJSON)
		bad := *good
		bad.Identity = bad.Identity[:30]
		st, _, out = call(bob, "PUT", "/v1/prekeys", &bad)
		problem(st, out, 400, messaging.TypeInvalidKey)
		if !strings.Contains(out["detail"].(string), "identity") {
			t.Fatalf("detail does not name the field: %v", out["detail"])
		}
		bad = *good
		bad.IdentityBinding = alice.publishRequest(t).IdentityBinding
		st, _, out = call(bob, "PUT", "/v1/prekeys", &bad)
		problem(st, out, 400, messaging.TypeBadBinding)
		bad = *good
		bad.SignedPrekeySig = bad.LastResortSig
		st, _, out = call(bob, "PUT", "/v1/prekeys", &bad)
		problem(st, out, 400, messaging.TypeBadSignature)
		stored()
		st, _, out = call(bob, "POST", "/v1/prekeys/one-time", bob.batch(t, 1, 1, 1))
		problem(st, out, 409, messaging.TypeNoIdentity)

		// The happy path.
		st, _, out = call(bob, "PUT", "/v1/prekeys", good)
		if st != 200 || out["published"] != true || out["low"] != true {
			t.Fatalf("publish: %d %v", st, out)
		}
		st, _, out = call(bob, "POST", "/v1/prekeys/one-time", bob.batch(t, 1, 30, 30))
		if st != 200 || out["one_time_prekeys"] != 30.0 || out["pq_prekeys"] != 30.0 || out["low"] != false {
			t.Fatalf("batch: %d %v", st, out)
		}
		st, _, out = call(bob, "POST", "/v1/prekeys/one-time", bob.batch(t, 100, messaging.MaxPrekeyBatch+1, 0))
		problem(st, out, 413, web.TypeTooLarge)
		st, _, out = call(bob, "POST", "/v1/prekeys/one-time", bob.batch(t, 1, 1, 0))
		problem(st, out, 409, messaging.TypeDuplicateKeyID)
		st, _, out = call(bob, "GET", "/v1/prekeys/status", nil)
		if st != 200 || out["one_time_prekeys"] != 30.0 || out["signed_prekey_id"] != 1.0 {
			t.Fatalf("status: %d %v", st, out)
		}

		// Claims.
		st, _, out = call(alice, "POST", "/v1/prekeys/claim", `{"account_id":"bob","extra":true}`)
		problem(st, out, 400, web.TypeInvalidJSON)
		st, _, out = call(alice, "POST", "/v1/prekeys/claim", `{"account_id":"bob","org_id":"amt"}`)
		problem(st, out, 400, web.TypeValidation)
		st, _, out = call(alice, "POST", "/v1/prekeys/claim", `{"org_id":"amt"}`)
		problem(st, out, 404, messaging.TypeUnknownRecipient)
		var h http.Header
		st, h, out = call(alice, "POST", "/v1/prekeys/claim", `{"account_id":"bob"}`)
		if st != 200 || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("claim: %d %v", st, out)
		}
		raw, _ := json.Marshal(out)
		var cr messaging.ClaimResponse
		if err := json.Unmarshal(raw, &cr); err != nil || len(cr.Bundles) != 1 {
			t.Fatalf("claim answer does not decode: %v %s", err, raw)
		}
		checkBundle(t, dir, &cr.Bundles[0], bob)

		for i := 0; ; i++ {
			st, h, out = call(alice, "POST", "/v1/prekeys/claim", `{"account_id":"bob"}`)
			if st == 429 {
				break
			}
			if st != 200 || i > messaging.MaxClaimsPerWindow {
				t.Fatalf("claim %d: %d %v", i, st, out)
			}
		}
		problem(st, out, 429, web.TypeRateLimited)
		if h.Get("Retry-After") != fmt.Sprint(int(messaging.ClaimWindow.Seconds())) {
			t.Fatalf("Retry-After %q", h.Get("Retry-After"))
		}
	})
}
