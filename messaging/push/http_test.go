package push_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/push"
)

type client struct {
	t   *testing.T
	url string
}

func (c client) do(method, device, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+"/v1/push/subscription", strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if device != "" {
		req.Header.Set("X-Test-Device", device)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		c.t.Fatalf("%s: %d with %s", method, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, out
}

func subJSON(endpoint, p256dh, auth string) string {
	b, _ := json.Marshal(map[string]any{"endpoint": endpoint, "expirationTime": nil, "keys": map[string]string{"p256dh": p256dh, "auth": auth}})
	return string(b)
}

// TestSubscriptionRoutes: register, replace, read and remove one's own
// subscription; every malformed subscription is refused with a
// problem+json type and stores nothing.
func TestSubscriptionRoutes(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d, func(o *push.Options) { o.AllowedHosts = push.HostList{"127.0.0.1", "*.push.example"} })
		mux := http.NewServeMux()
		f.svc.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		c := client{t, srv.URL}

		good := f.ps.Subscribe(t).Request()
		p, a := good.Keys.P256dh, good.Keys.Auth
		enc := base64.RawURLEncoding
		pRaw, _ := enc.DecodeString(p)
		aRaw, _ := enc.DecodeString(a)
		notOnCurve := bytes.Clone(pRaw)
		notOnCurve[64] ^= 1
		compressed := append([]byte{2 + pRaw[64]&1}, pRaw[1:33]...)
		bad := []struct {
			name, body, typ string
		}{
			{"http endpoint", subJSON(strings.Replace(good.Endpoint, "https:", "http:", 1), p, a), "invalid-subscription"},
			{"no endpoint", subJSON("", p, a), "invalid-subscription"},
			{"relative endpoint", subJSON("/push/abc", p, a), "invalid-subscription"},
			{"over-long endpoint", subJSON(good.Endpoint+"/"+strings.Repeat("a", push.MaxEndpoint), p, a), "invalid-subscription"},
			{"endpoint with user", subJSON("https://u:pw@127.0.0.1/x", p, a), "invalid-subscription"},
			{"endpoint with space", subJSON("https://127.0.0.1/a b", p, a), "invalid-subscription"},
			{"host not allowed", subJSON("https://fcm.googleapis.com/fcm/send/x", p, a), "push-host-not-allowed"},
			{"private address", subJSON("https://10.0.0.1/x", p, a), "push-host-not-allowed"},
			{"p256dh short", subJSON(good.Endpoint, enc.EncodeToString(pRaw[:64]), a), "invalid-subscription"},
			{"p256dh compressed", subJSON(good.Endpoint, enc.EncodeToString(compressed), a), "invalid-subscription"},
			{"p256dh not on curve", subJSON(good.Endpoint, enc.EncodeToString(notOnCurve), a), "invalid-subscription"},
			{"p256dh std base64", subJSON(good.Endpoint, base64.StdEncoding.EncodeToString(pRaw)+"+", a), "invalid-subscription"},
			{"auth 15 bytes", subJSON(good.Endpoint, p, enc.EncodeToString(aRaw[:15])), "invalid-subscription"},
			{"auth 17 bytes", subJSON(good.Endpoint, p, enc.EncodeToString(append(aRaw, 0))), "invalid-subscription"},
			{"auth missing", subJSON(good.Endpoint, p, ""), "invalid-subscription"},
			{"unknown field", `{"endpoint":"` + good.Endpoint + `","keys":{"p256dh":"` + p + `","auth":"` + a + `"},"preview":true}`, "invalid-json"},
			{"not JSON", `endpoint=x`, "invalid-json"},
			{"two values", subJSON(good.Endpoint, p, a) + `{}`, "invalid-json"},
			{"too large", `{"endpoint":"` + strings.Repeat("a", 5000) + `"}`, "too-large"},
		}
		for _, b := range bad {
			st, prob := c.do("PUT", "dev-a", b.body)
			if st < 400 || prob["type"] != "urn:kanal:problem:"+b.typ {
				t.Errorf("%s: %d %v, want %s", b.name, st, prob, b.typ)
			}
		}
		if st, prob := c.do("GET", "dev-a", ""); st != 404 || prob["type"] != "urn:kanal:problem:no-subscription" {
			t.Fatalf("after bad input: %d %v", st, prob)
		}

		if st, _ := c.do("PUT", "", subJSON(good.Endpoint, p, a)); st != 401 {
			t.Fatalf("without a session: %d", st)
		}
		if st, _ := c.do("PUT", "dev-a", subJSON(good.Endpoint, p, a)); st != 201 {
			t.Fatalf("register: %d", st)
		}
		// Padded base64url is what some clients send; it is accepted.
		other := f.ps.Subscribe(t).Request()
		padded := base64.URLEncoding.EncodeToString(func() []byte { b, _ := enc.DecodeString(other.Keys.Auth); return b }())
		if st, _ := c.do("PUT", "dev-a", subJSON(other.Endpoint, other.Keys.P256dh, padded)); st != 200 {
			t.Fatalf("replace: %d", st)
		}
		if st, out := c.do("GET", "dev-a", ""); st != 200 || out["endpoint"] != other.Endpoint {
			t.Fatalf("get: %d %v", st, out)
		}
		// Another device sees only its own (none).
		if st, _ := c.do("GET", "dev-b", ""); st != 404 {
			t.Fatalf("another device's get: %d", st)
		}
		if st, _ := c.do("DELETE", "dev-b", ""); st != 204 {
			t.Fatalf("another device's delete: %d", st)
		}
		if st, _ := c.do("GET", "dev-a", ""); st != 200 {
			t.Fatalf("dev-b's delete removed dev-a's subscription: %d", st)
		}
		if st, _ := c.do("DELETE", "dev-a", ""); st != 204 {
			t.Fatalf("delete: %d", st)
		}
		if st, _ := c.do("GET", "dev-a", ""); st != 404 {
			t.Fatalf("after delete: %d", st)
		}

		resp, err := http.Get(srv.URL + "/v1/push/vapid-key")
		if err != nil {
			t.Fatal(err)
		}
		var key push.VAPIDKeyResponse
		json.NewDecoder(resp.Body).Decode(&key)
		resp.Body.Close()
		if key.PublicKey != f.svc.PublicKey() || len(key.PublicKey) != 87 {
			t.Fatalf("vapid key %q", key.PublicKey)
		}
	})
}

// TestRevokedDeviceLosesSubscription: DeleteDeviceTx, run by identity's
// revocation hook, removes the subscription and the pending push.
func TestRevokedDeviceLosesSubscription(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		f := newFixture(t, d, func(o *push.Options) { o.Grace = 1 << 40 })
		f.subscribe(t, "dev-a")
		f.deliver(t, "dev-a", "message")
		waitDepth(t, f.svc, 1)
		if err := d.Tx(ctx, func(tx *sql.Tx) error { return push.DeleteDeviceTx(ctx, tx, "dev-a") }); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Subscription(ctx, "dev-a"); err != push.ErrNoSubscription {
			t.Fatalf("subscription after revocation: %v", err)
		}
		waitDepth(t, f.svc, 0)
	})
}

// TestDialGuard: the default client refuses to reach a loopback push
// service unless the allow-list names its address.
func TestDialGuard(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	if _, err := push.NewHTTPClient(pool, nil).Post(srv.URL, "text/plain", nil); err == nil || !strings.Contains(err.Error(), "not public") {
		t.Fatalf("loopback reached without being allowed: %v", err)
	}
	resp, err := push.NewHTTPClient(pool, push.HostList{"127.0.0.1"}).Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestParseHostList(t *testing.T) {
	l, err := push.ParseHostList(" FCM.googleapis.com, *.push.apple.com ,,127.0.0.1")
	if err != nil || len(l) != 3 || l[0] != "fcm.googleapis.com" {
		t.Fatalf("%v %v", l, err)
	}
	for _, bad := range []string{"https://fcm.googleapis.com", "a b", "host:443", "*"} {
		if _, err := push.ParseHostList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
