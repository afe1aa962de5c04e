package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/push"
	"github.com/kanal-server/kanal/messaging/push/pushtest"
)

// These tests run the real kanald binary against the test push service:
// kanald trusts its certificate through KANAL_PUSH_CA_FILE and allows its
// loopback address through KANAL_PUSH_HOSTS, as an operator would for a
// private push service.

// pushEnv is the environment that points kanald at ps.
func pushEnv(t *testing.T, ps *pushtest.Server) []string {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "push-ca.pem")
	if err := os.WriteFile(caFile, ps.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"KANAL_PUSH_HOSTS=127.0.0.1", "KANAL_PUSH_CA_FILE=" + caFile, "KANAL_PUSH_SUBJECT=mailto:ops@example.org"}
}

// pushUser is an account with one enrolled, logged-in device and its SDK.
type pushUser struct {
	*kanaldtest.Device
	sdk *client.Client
}

// pushSignUp signs email up with a P-256 device and publishes its prekeys.
func pushSignUp(t *testing.T, s *kanaldtest.Server, email string) *pushUser {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := s.SignUp(t, email, key)
	sdk := d.SDK(t, s.URL, client.NewMemoryStore())
	if _, err := sdk.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &pushUser{Device: d, sdk: sdk}
}

// call makes an authenticated JSON request and returns status and body.
func (u *pushUser) call(t *testing.T, base, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u != nil {
		req.Header.Set("Authorization", "Bearer "+u.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// startSession has from claim to's bundle and start a session with it.
func startSession(t *testing.T, from, to *pushUser) {
	t.Helper()
	claim, err := from.sdk.ClaimAccount(context.Background(), to.AccountID)
	if err != nil || len(claim.Bundles) != 1 {
		t.Fatalf("claim %s: %v %+v", to.AccountID, err, claim)
	}
	if err := from.sdk.StartSession(claim.Bundles[0]); err != nil {
		t.Fatal(err)
	}
}

// sealed encrypts text from from to to and returns the send request.
func sealed(t *testing.T, from, to *pushUser, clientID, text string) messaging.SendRequest {
	t.Helper()
	m, err := from.sdk.Encrypt(to.DeviceID, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	wire, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return messaging.SendRequest{To: messaging.SendTo{AccountID: to.AccountID}, ClientID: clientID, Class: "message",
		Envelopes: []messaging.SendEnvelope{{DeviceID: to.DeviceID, Ciphertext: base64.StdEncoding.EncodeToString(wire)}}}
}

func (u *pushUser) send(t *testing.T, base string, req messaging.SendRequest) {
	t.Helper()
	if st, body := u.call(t, base, "POST", "/v1/messages", req); st != 201 {
		t.Fatalf("send: %d %s", st, body)
	}
}

// subscribe registers a subscription of ps for u's device.
func (u *pushUser) subscribe(t *testing.T, base string, ps *pushtest.Server) *pushtest.Subscriber {
	t.Helper()
	sub := ps.Subscribe(t)
	if st, body := u.call(t, base, "PUT", "/v1/push/subscription", sub.Request()); st != 201 {
		t.Fatalf("subscribe: %d %s", st, body)
	}
	return sub
}

// stream is a device's live /v1/stream.
type stream struct {
	t  *testing.T
	ws *websocket.Conn
}

func (u *pushUser) connect(t *testing.T, base string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/stream",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + u.Token}}})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &stream{t, ws}
}

// envelopes reads frames until n envelopes arrived and acknowledges them.
func (s *stream) envelopes(n int) []mailbox.Envelope {
	s.t.Helper()
	return s.read(n, true)
}

// read reads frames until n envelopes arrived, acknowledging them if ack.
func (s *stream) read(n int, ack bool) []mailbox.Envelope {
	s.t.Helper()
	var got []mailbox.Envelope
	for len(got) < n {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, data, err := s.ws.Read(ctx)
		cancel()
		if err != nil {
			s.t.Fatalf("stream read after %d of %d envelopes: %v", len(got), n, err)
		}
		var f struct {
			Type      string
			Envelopes []mailbox.Envelope
		}
		json.Unmarshal(data, &f)
		if len(f.Envelopes) == 0 {
			continue
		}
		got = append(got, f.Envelopes...)
		if !ack {
			continue
		}
		ids := make([]string, len(f.Envelopes))
		for i, e := range f.Envelopes {
			ids[i] = e.ID
		}
		ack, _ := json.Marshal(map[string]any{"type": "ack", "ids": ids})
		if err := s.ws.Write(context.Background(), websocket.MessageText, ack); err != nil {
			s.t.Fatal(err)
		}
	}
	return got
}

func (s *stream) close() { s.ws.Close(websocket.StatusNormalClosure, "") }

// metric reads one counter or gauge from kanald's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) != 1 {
		t.Fatalf("/metrics has no %s", name)
	}
	m := f.GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func waitMetric(t *testing.T, base, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for v := metric(t, base, name); v != want; v = metric(t, base, name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func delivered(ps []pushtest.Push, sub *pushtest.Subscriber) (out []pushtest.Push) {
	for _, p := range ps {
		if p.Subscriber == sub.ID && p.Status == http.StatusCreated {
			out = append(out, p)
		}
	}
	return out
}

func forSub(ps []pushtest.Push, sub *pushtest.Subscriber) (out []pushtest.Push) {
	for _, p := range ps {
		if p.Subscriber == sub.ID {
			out = append(out, p)
		}
	}
	return out
}

// TestPushWakesOfflineDevice is what the issue must show (1 and 2), on
// the real kanald: an offline device with a subscription gets exactly one
// push for a message — VAPID-signed with the key kanald serves, holding no
// content and no sender — and then gets the message when it connects; a
// hundred messages bring a bounded number of pushes, not a hundred.
func TestPushWakesOfflineDevice(t *testing.T) {
	ctx := context.Background()
	ps := pushtest.New(t)
	srv := kanaldtest.Start(t, kanaldBin, pushEnv(t, ps)...)
	alice, bob, carol := pushSignUp(t, srv, "alice@example.org"), pushSignUp(t, srv, "bob@example.org"), pushSignUp(t, srv, "carol@example.org")
	startSession(t, alice, bob)
	startSession(t, alice, carol)

	st, body := (*pushUser)(nil).call(t, srv.URL, "GET", "/v1/push/vapid-key", nil)
	var key push.VAPIDKeyResponse
	if st != 200 || json.Unmarshal(body, &key) != nil || len(key.PublicKey) != 87 {
		t.Fatalf("vapid key: %d %s", st, body)
	}
	// Subscribing takes a session; bad input is refused and stores nothing.
	sub := ps.Subscribe(t)
	if st, _ := (*pushUser)(nil).call(t, srv.URL, "PUT", "/v1/push/subscription", sub.Request()); st != 401 {
		t.Fatalf("subscribe without a session: %d", st)
	}
	bad := sub.Request()
	bad.Endpoint = strings.Replace(bad.Endpoint, "https:", "http:", 1)
	if st, body := bob.call(t, srv.URL, "PUT", "/v1/push/subscription", bad); st != 400 || !strings.Contains(string(body), "urn:kanal:problem:invalid-subscription") {
		t.Fatalf("http endpoint: %d %s", st, body)
	}
	if st, _ := bob.call(t, srv.URL, "GET", "/v1/push/subscription", nil); st != 404 {
		t.Fatalf("a refused subscription was stored: %d", st)
	}
	bobSub := bob.subscribe(t, srv.URL, ps)

	// 1. Bob is offline; alice writes; exactly one push.
	marker := "Ihr Antrag ist genehmigt " + bob.DeviceID[:6]
	alice.send(t, srv.URL, sealed(t, alice, bob, "m-1", marker))
	ps.WaitFor(t, 20*time.Second, "bob's push", func(all []pushtest.Push) bool { return len(forSub(all, bobSub)) >= 1 })
	p := forSub(ps.Pushes(), bobSub)[0]
	if p.Err != nil || p.Status != 201 {
		t.Fatalf("push refused: %+v", p)
	}
	if p.VAPIDKey != key.PublicKey || p.Claims.Sub != "mailto:ops@example.org" || p.Claims.Aud != ps.URL {
		t.Fatalf("VAPID: key %s (served %s), claims %+v", p.VAPIDKey, key.PublicKey, p.Claims)
	}
	if string(p.Payload) != `{"v":1,"t":"wake"}` {
		t.Fatalf("payload %q", p.Payload)
	}
	for _, secret := range []string{marker, "genehmigt", alice.DeviceID, alice.AccountID, "alice"} {
		if bytes.Contains(p.Payload, []byte(secret)) {
			t.Fatalf("payload %q reveals %q", p.Payload, secret)
		}
	}
	waitMetric(t, srv.URL, "kanal_push_queue_depth", 0)
	s := bob.connect(t, srv.URL)
	got := s.envelopes(1)
	var m client.Message
	if err := m.UnmarshalBinary(got[0].Ciphertext); err != nil {
		t.Fatal(err)
	}
	if pt, err := bob.sdk.Decrypt(ctx, alice.DeviceID, &m); err != nil || string(pt) != marker {
		t.Fatalf("bob decrypted %q, %v", pt, err)
	}
	s.close()
	time.Sleep(3500 * time.Millisecond) // past the grace period and a poll
	if n := len(forSub(ps.Pushes(), bobSub)); n != 1 {
		t.Fatalf("%d pushes for one message", n)
	}
	if v := metric(t, srv.URL, "kanal_push_sent_total"); v != 1 {
		t.Fatalf("kanal_push_sent_total = %v", v)
	}

	// 2. A hundred messages to offline carol: a bounded number of pushes.
	carolSub := carol.subscribe(t, srv.URL, ps)
	reqs := make([]messaging.SendRequest, 100)
	for i := range reqs {
		reqs[i] = sealed(t, alice, carol, fmt.Sprintf("c-%d", i), fmt.Sprintf("Nachricht %d", i))
	}
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan messaging.SendRequest)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				alice.send(t, srv.URL, r)
			}
		}()
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()
	burst := time.Since(start)
	ps.WaitFor(t, 20*time.Second, "carol's push", func(all []pushtest.Push) bool { return len(delivered(all, carolSub)) >= 1 })
	waitMetric(t, srv.URL, "kanal_push_queue_depth", 0)
	// One push after the grace period, then at most one per minimum
	// interval while messages keep arriving.
	n := len(forSub(ps.Pushes(), carolSub))
	if limit := 2 + int(burst/push.DefaultMinInterval); n > limit {
		t.Fatalf("%d pushes for 100 messages sent over %s, want at most %d", n, burst, limit)
	}
	t.Logf("100 messages over %s: %d push(es)", burst.Round(time.Millisecond), n)
	if got := carol.connect(t, srv.URL).envelopes(100); len(got) != 100 {
		t.Fatalf("carol got %d envelopes", len(got))
	}

	// Revoking a device deletes its subscription.
	if err := carol.Identity.RevokeDevice(ctx, carol.DeviceID); err != nil {
		t.Fatal(err)
	}
	d, err := db.Open(ctx, "", srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var subs int
	if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM push_subscriptions WHERE device_id = $1`, carol.DeviceID).Scan(&subs); err != nil || subs != 0 {
		t.Fatalf("revoked device keeps %d subscriptions (%v)", subs, err)
	}
}

// TestPushRetriesAcrossRestart is must-show 3 on the real kanald: a 429 and
// then 500s are retried with backoff; kanald is stopped while the push
// waits for its next attempt, and the restarted kanald delivers it; a 410
// removes the subscription.
func TestPushRetriesAcrossRestart(t *testing.T) {
	ps := pushtest.New(t)
	env := pushEnv(t, ps)
	srv := kanaldtest.Start(t, kanaldBin, env...)
	alice, bob, dave := pushSignUp(t, srv, "alice@example.org"), pushSignUp(t, srv, "bob@example.org"), pushSignUp(t, srv, "dave@example.org")
	startSession(t, alice, bob)
	startSession(t, alice, dave)
	bobSub := bob.subscribe(t, srv.URL, ps)
	daveSub := dave.subscribe(t, srv.URL, ps)

	ps.Answer(http.StatusTooManyRequests)
	ps.AnswerAlways(http.StatusInternalServerError)
	alice.send(t, srv.URL, sealed(t, alice, bob, "m-1", "Termin bestätigt"))
	all := ps.WaitFor(t, 20*time.Second, "a 429 and a 500", func(all []pushtest.Push) bool { return len(forSub(all, bobSub)) >= 2 })
	tries := forSub(all, bobSub)
	if tries[0].Status != 429 || tries[1].Status != 500 {
		t.Fatalf("answers %d, %d", tries[0].Status, tries[1].Status)
	}
	if gap := tries[1].At.Sub(tries[0].At); gap < time.Second {
		t.Fatalf("retried %s after a 429 with Retry-After: 1", gap)
	}
	// The push service records an answer before kanald has counted it.
	for deadline := time.Now().Add(10 * time.Second); metric(t, srv.URL, "kanal_push_retried_total") < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("kanal_push_retried_total = %v, want ≥ 2", metric(t, srv.URL, "kanal_push_retried_total"))
		}
	}
	if err, _ := srv.Stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	before := len(forSub(ps.Pushes(), bobSub))
	ps.AnswerAlways(http.StatusCreated)

	again := kanaldtest.Start(t, kanaldBin, append(env, "KANAL_DATA_DIR="+srv.DataDir)...)
	ps.WaitFor(t, 30*time.Second, "the push after the restart", func(all []pushtest.Push) bool { return len(delivered(all, bobSub)) == 1 })
	p := delivered(ps.Pushes(), bobSub)[0]
	if p.Err != nil || string(p.Payload) != `{"v":1,"t":"wake"}` || p.VAPIDKey != tries[0].VAPIDKey {
		t.Fatalf("push after restart: %+v (VAPID key before: %s)", p, tries[0].VAPIDKey)
	}
	t.Logf("%d failed attempts before the restart, delivered after it", before)
	waitMetric(t, again.URL, "kanal_push_queue_depth", 0)

	// 410: the push service says dave's subscription is gone.
	ps.Answer(http.StatusGone)
	alice.send(t, again.URL, sealed(t, alice, dave, "d-1", "Noch eine Frage"))
	ps.WaitFor(t, 20*time.Second, "the 410", func(all []pushtest.Push) bool { return len(forSub(all, daveSub)) == 1 })
	waitMetric(t, again.URL, "kanal_push_pruned_total", 1)
	if st, _ := dave.call(t, again.URL, "GET", "/v1/push/subscription", nil); st != 404 {
		t.Fatalf("subscription after 410: %d", st)
	}
	if st, _ := bob.call(t, again.URL, "GET", "/v1/push/subscription", nil); st != 200 {
		t.Fatalf("bob's subscription, retried and delivered, is gone: %d", st)
	}
}

// TestPushSettingsRejected: bad push settings stop kanald with one line
// naming the setting.
func TestPushSettingsRejected(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	for env, val := range map[string]string{
		"KANAL_PUSH_HOSTS":   "https://fcm.googleapis.com",
		"KANAL_PUSH_SUBJECT": "ops@example.org",
		"KANAL_PUSH_CA_FILE": junk,
	} {
		_, err := parseConfig(nil, envOf(map[string]string{env: val}), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), env+": ") {
			t.Errorf("%s=%s: %v", env, val, err)
		}
	}
	c, err := parseConfig(nil, envOf(map[string]string{"KANAL_PUSH_HOSTS": "fcm.googleapis.com,*.push.apple.com", "KANAL_MAIL_FROM": "Stadt <kanal@stadt.example>"}), io.Discard)
	if err != nil || len(c.PushHosts) != 2 || c.pushSubject() != "mailto:kanal@stadt.example" {
		t.Fatalf("%+v %v", c, err)
	}
}

// TestHangingPushServiceDoesNotDelayDelivery is must-show 4: while the
// push service holds kanald's push request open, sends return, an online
// device gets its message live, the offline device gets its messages on
// connecting, and kanald still stops promptly.
func TestHangingPushServiceDoesNotDelayDelivery(t *testing.T) {
	ps := pushtest.New(t)
	srv := kanaldtest.Start(t, kanaldBin, pushEnv(t, ps)...)
	alice, bob, erin := pushSignUp(t, srv, "alice@example.org"), pushSignUp(t, srv, "bob@example.org"), pushSignUp(t, srv, "erin@example.org")
	startSession(t, alice, bob)
	startSession(t, alice, erin)
	bob.subscribe(t, srv.URL, ps)
	erin.subscribe(t, srv.URL, ps)
	online := erin.connect(t, srv.URL)

	// Delivery to an online device before the hang, for comparison.
	var before []time.Duration
	for i := range 5 {
		t0 := time.Now()
		alice.send(t, srv.URL, sealed(t, alice, erin, fmt.Sprintf("e-pre-%d", i), "vorher"))
		online.envelopes(1)
		before = append(before, time.Since(t0))
	}

	ps.AnswerAlways(pushtest.Hang)
	alice.send(t, srv.URL, sealed(t, alice, bob, "b-1", "eins"))
	deadline := time.Now().Add(20 * time.Second)
	for ps.Hanging() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("kanald sent no push to the hanging push service")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var during []time.Duration
	for i := range 5 {
		t0 := time.Now()
		alice.send(t, srv.URL, sealed(t, alice, erin, fmt.Sprintf("e-%d", i), "während"))
		online.envelopes(1)
		during = append(during, time.Since(t0))
	}
	alice.send(t, srv.URL, sealed(t, alice, bob, "b-2", "zwei"))
	if got := bob.connect(t, srv.URL).envelopes(2); len(got) != 2 {
		t.Fatalf("bob got %d envelopes", len(got))
	}
	if ps.Hanging() == 0 {
		t.Fatal("the push request stopped hanging before the deliveries were done; the test shows nothing")
	}
	t.Logf("send-to-delivery, online device: before the hang %v, during it %v", before, during)
	if err, took := srv.Stop(t); err != nil {
		t.Fatalf("stop with a hanging push: %v after %s", err, took)
	}
}

// TestPushAcrossNodes: two kanald nodes on one PostgreSQL and NATS share
// the VAPID key; a device whose stream is on the other node than the send
// gets no push; an offline device written to through both nodes gets one.
func TestPushAcrossNodes(t *testing.T) {
	base := dbtest.PostgresURL(t)
	natsURL := kanaldtest.NATSURL(t)
	ps := pushtest.New(t)
	env := append(pushEnv(t, ps), "KANAL_DATABASE_URL="+dbtest.WithSchema(t, base, dbtest.NewSchema(t, base)),
		"KANAL_NATS_URL="+natsURL, "KANAL_CA_DIR="+filepath.Join(t.TempDir(), "ca"))
	a := kanaldtest.Start(t, kanaldBin, env...)
	b := kanaldtest.Start(t, kanaldBin, env...)
	_, keyA := (*pushUser)(nil).call(t, a.URL, "GET", "/v1/push/vapid-key", nil)
	_, keyB := (*pushUser)(nil).call(t, b.URL, "GET", "/v1/push/vapid-key", nil)
	if !bytes.Equal(keyA, keyB) {
		t.Fatalf("nodes serve different VAPID keys: %s and %s", keyA, keyB)
	}
	alice, bob := pushSignUp(t, a, "alice@example.org"), pushSignUp(t, a, "bob@example.org")
	startSession(t, alice, bob)
	bobSub := bob.subscribe(t, a.URL, ps)

	// Bob's stream is on node b; alice writes through node a, whose hub
	// does not see bob. Bob takes the message at once: no push.
	s := bob.connect(t, b.URL)
	alice.send(t, a.URL, sealed(t, alice, bob, "m-1", "live"))
	s.envelopes(1)
	time.Sleep(push.DefaultGrace + 2*push.DefaultPollInterval + time.Second)
	waitMetric(t, a.URL, "kanal_push_queue_depth", 0)
	if n := len(forSub(ps.Pushes(), bobSub)); n != 0 {
		t.Fatalf("%d pushes to a device live on the other node", n)
	}
	s.close()

	// Offline: a message through each node, one push from the two workers.
	alice.send(t, a.URL, sealed(t, alice, bob, "m-2", "eins"))
	alice.send(t, b.URL, sealed(t, alice, bob, "m-3", "zwei"))
	ps.WaitFor(t, 20*time.Second, "bob's push", func(all []pushtest.Push) bool { return len(forSub(all, bobSub)) >= 1 })
	waitMetric(t, b.URL, "kanal_push_queue_depth", 0)
	time.Sleep(push.DefaultPollInterval)
	if n := len(delivered(ps.Pushes(), bobSub)); n != 1 {
		t.Fatalf("%d pushes from two nodes, want 1", n)
	}
	if got := bob.connect(t, a.URL).envelopes(2); len(got) != 2 {
		t.Fatalf("bob got %d envelopes", len(got))
	}
}

// TestPushAfterStreamEnds: on the real kanald, a device connected when its
// message is stored gets no push while its stream is live (web push skips
// it), and one that closes its stream without acknowledging what the
// stream sent it still gets a push for it; one that took everything gets
// none.
func TestPushAfterStreamEnds(t *testing.T) {
	ps := pushtest.New(t)
	srv := kanaldtest.Start(t, kanaldBin, pushEnv(t, ps)...)
	alice, bob, carol := pushSignUp(t, srv, "alice@example.org"), pushSignUp(t, srv, "bob@example.org"), pushSignUp(t, srv, "carol@example.org")
	startSession(t, alice, bob)
	startSession(t, alice, carol)
	bobSub, carolSub := bob.subscribe(t, srv.URL, ps), carol.subscribe(t, srv.URL, ps)

	// Both are connected; bob reads his message and does not acknowledge
	// it, carol takes hers. No push while the streams are live.
	bs, cs := bob.connect(t, srv.URL), carol.connect(t, srv.URL)
	alice.send(t, srv.URL, sealed(t, alice, bob, "b-1", "für bob"))
	alice.send(t, srv.URL, sealed(t, alice, carol, "c-1", "für carol"))
	bs.read(1, false)
	cs.envelopes(1)
	waitMetric(t, srv.URL, "kanal_push_queue_depth", 0)
	time.Sleep(push.DefaultGrace + 2*push.DefaultPollInterval)
	if n := len(ps.Pushes()); n != 0 {
		t.Fatalf("%d pushes to connected devices", n)
	}

	// The streams end: bob's message waits in his mailbox, and brings
	// his push; carol's was taken.
	bs.close()
	cs.close()
	ps.WaitFor(t, 20*time.Second, "bob's push", func(all []pushtest.Push) bool { return len(delivered(all, bobSub)) == 1 })
	waitMetric(t, srv.URL, "kanal_push_queue_depth", 0)
	time.Sleep(push.DefaultPollInterval)
	if n := len(forSub(ps.Pushes(), carolSub)); n != 0 {
		t.Fatalf("%d pushes to a device that took its message", n)
	}
	if got := bob.connect(t, srv.URL).envelopes(1); len(got) != 1 {
		t.Fatalf("bob got %d envelopes", len(got))
	}
}

// TestSubjectWarning: the default contact mailto:noreply@localhost, and
// others no push service can write to, are warned about at start.
func TestSubjectWarning(t *testing.T) {
	for subject, warn := range map[string]bool{
		"mailto:noreply@localhost":       true,
		"mailto:ops@kanal.localhost":     true,
		"mailto:ops@intranet":            true,
		"mailto:ops@host.local":          true,
		"mailto:ops@stadt-worms.de":      false,
		"https://stadt-worms.de/kontakt": false,
	} {
		if got := subjectWarning(subject) != ""; got != warn {
			t.Errorf("%s: warned %v, want %v", subject, got, warn)
		}
	}
}
