package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Attacks by the holder of a stolen session token (or of a whole login:
// session and refresh token). They open /v1/stream with it — on whichever
// node the load balancer picks — and keep it open. The owner notices and
// ends the login: logs out, or the refresh token's reuse gives the thief
// away, or changes the password, or revokes the device. The thief's stream
// must close with its close code on every node, and whatever the thief
// writes afterwards (an ack) must change nothing.

// twoNodes starts two kanald on one PostgreSQL schema and the test NATS.
func twoNodes(t *testing.T) (a, b *kanaldtest.Server) {
	t.Helper()
	base := dbtest.PostgresURL(t)
	natsURL := kanaldtest.NATSURL(t)
	env := []string{"KANAL_DATABASE_URL=" + dbtest.WithSchema(t, base, dbtest.NewSchema(t, base)),
		"KANAL_NATS_URL=" + natsURL, "KANAL_CA_DIR=" + filepath.Join(t.TempDir(), "ca")}
	return kanaldtest.Start(t, kanaldBin, env...), kanaldtest.Start(t, kanaldBin, env...)
}

// openStream dials base's /v1/stream with token and waits for "synced".
func openStream(t *testing.T, base, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/stream",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatalf("stream on %s: %v", base, err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// frames reads frames until the stream closes and returns the envelopes
// it was sent and the close code.
func closedWith(t *testing.T, ws *websocket.Conn) ([]mailbox.Envelope, websocket.StatusCode) {
	t.Helper()
	var got []mailbox.Envelope
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return got, websocket.CloseStatus(err)
		}
		var f struct {
			Type      string
			Envelopes []mailbox.Envelope
		}
		json.Unmarshal(data, &f)
		got = append(got, f.Envelopes...)
	}
}

// nextEnvelopes reads frames until one brings envelopes.
func nextEnvelopes(t *testing.T, ws *websocket.Conn) []mailbox.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		var f struct {
			Type      string
			Envelopes []mailbox.Envelope
		}
		json.Unmarshal(data, &f)
		if len(f.Envelopes) > 0 {
			return f.Envelopes
		}
	}
}

func ack(ws *websocket.Conn, ids ...string) error {
	b, _ := json.Marshal(map[string]any{"type": "ack", "ids": ids})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, b)
}

// victim is an account with a password, one device, and the owner's own
// substantial login of that device.
type victim struct {
	*pushUser
	password string
}

func signUpWithPassword(t *testing.T, s *kanaldtest.Server, email string) *victim {
	t.Helper()
	ic, v := s.Verify(t, email)
	setup := ic.WithToken(v.SetupToken)
	const pw = "correct horse battery staple"
	if err := setup.SetPassword(context.Background(), pw, ""); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := s.Enrol(t, v.AccountID, setup, "phone", key, pw)
	sdk := d.SDK(t, s.URL, client.NewMemoryStore())
	if _, err := sdk.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &victim{&pushUser{Device: d, sdk: sdk}, pw}
}

// login logs the victim's device in once more: a login of its own (a
// family), as the thief's stolen copy is.
func (v *victim) login(t *testing.T, base string) (token, refresh string) {
	t.Helper()
	s, err := idclient.New(base, nil).Login(context.Background(), v.DeviceID, v.Key, v.password)
	if err != nil {
		t.Fatal(err)
	}
	return s.Token, s.RefreshToken
}

// TestStolenStreamEndsWithTheSession: for each way a login ends, the
// thief's streams on both nodes close with StatusSessionEnded (a revoked
// device: StatusRevoked), an ack the thief sends afterwards deletes
// nothing, the token opens no new stream, and the envelope the thief held
// unacknowledged still waits for the owner.
func TestStolenStreamEndsWithTheSession(t *testing.T) {
	a, b := twoNodes(t)
	sender := pushSignUp(t, a, "sender@example.org")
	ctx := context.Background()
	for i, c := range []struct {
		name string
		code websocket.StatusCode
		// end ends the thief's login (token, refresh) through node a.
		end func(t *testing.T, v *victim, token, refresh string)
	}{
		{"logout", mailbox.StatusSessionEnded, func(t *testing.T, v *victim, token, _ string) {
			if err := idclient.New(a.URL, nil).WithToken(token).Logout(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"refresh token reused", mailbox.StatusSessionEnded, func(t *testing.T, v *victim, _, refresh string) {
			ic := idclient.New(a.URL, nil)
			if _, err := ic.Refresh(ctx, refresh); err != nil {
				t.Fatal(err)
			}
			if _, err := ic.Refresh(ctx, refresh); err == nil {
				t.Fatal("a reused refresh token was accepted")
			}
		}},
		{"password changed", mailbox.StatusSessionEnded, func(t *testing.T, v *victim, _, _ string) {
			// The owner, on their own login, changes the password.
			if err := v.Identity.SetPassword(ctx, v.password+" new", v.password); err != nil {
				t.Fatal(err)
			}
			v.password += " new"
			// The owner's own login, which made the change, goes on.
			if _, err := v.Identity.Me(ctx); err != nil {
				t.Fatalf("the owner's session ended with the password change: %v", err)
			}
		}},
		{"device revoked", mailbox.StatusRevoked, func(t *testing.T, v *victim, _, _ string) {
			if err := v.Identity.RevokeDevice(ctx, v.DeviceID); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := signUpWithPassword(t, a, fmt.Sprintf("victim%d@example.org", i))
			startSession(t, sender, v.pushUser)
			token, refresh := v.login(t, a.URL)
			onA, onB := openStream(t, a.URL, token), openStream(t, b.URL, token)
			// An envelope reaches the thief's streams; they hold it unacked.
			sender.send(t, a.URL, sealed(t, sender, v.pushUser, fmt.Sprint("m-held-", i), "held"))
			held := nextEnvelopes(t, onB)
			nextEnvelopes(t, onA)

			c.end(t, v, token, refresh)

			for node, ws := range map[string]*websocket.Conn{"a": onA, "b": onB} {
				if _, code := closedWith(t, ws); code != c.code {
					t.Fatalf("the thief's stream on node %s closed with %d, want %d", node, code, c.code)
				}
				if err := ack(ws, held[0].ID); err == nil {
					t.Fatalf("an ack was written on node %s's closed stream", node)
				}
			}
			// The token opens no new stream.
			_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/v1/stream",
				&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("the ended token opened a stream again: %v %v", resp, err)
			}
			if c.code == mailbox.StatusRevoked {
				return // a revoked device's mailbox is gone with it
			}
			// The held envelope was not acknowledged: the owner gets it.
			owner, _ := v.login(t, b.URL)
			if got := nextEnvelopes(t, openStream(t, b.URL, owner)); got[0].ID != held[0].ID {
				t.Fatalf("the owner got %s, want the held envelope %s", got[0].ID, held[0].ID)
			}
		})
	}
}

// TestNATSPublisherForgesNothing: a NATS publisher — a client of the
// deployment's NATS without the CA key — forges a wake-up carrying an
// envelope of their making for a device whose stream is on one of two
// real nodes, and the messages that close streams (the old revocation
// subject, a session end naming the device, its account and its login).
// The device's socket gets only its real envelopes and stays open.
func TestNATSPublisherForgesNothing(t *testing.T) {
	a, b := twoNodes(t)
	nc, err := nats.Connect(kanaldtest.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sender := pushSignUp(t, a, "sender@example.org")
	v := pushSignUp(t, a, "victim@example.org")
	startSession(t, sender, v)
	ws := openStream(t, b.URL, v.Token)
	// One real envelope first: once it has arrived, node b's wake-up
	// subscription for the device is live at the NATS server, so every
	// forgery below reaches the node and is counted.
	sender.send(t, a.URL, sealed(t, sender, v, "warm-up", "real"))
	if got := nextEnvelopes(t, ws); len(got) != 1 {
		t.Fatalf("warm-up: got %d envelopes", len(got))
	} else if err := ack(ws, got[0].ID); err != nil {
		t.Fatal(err)
	}

	publish := func(subject string, data []byte) {
		t.Helper()
		if err := nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		fake, _ := json.Marshal([]mailbox.Envelope{{ID: fmt.Sprint("forged-", i), Seq: int64(i + 1), Conversation: "conv_x",
			Sender: sender.DeviceID, Recipient: v.DeviceID, Class: "message", Ciphertext: []byte("forged"), ServerTime: time.Now().UTC()}})
		if i == 1 {
			fake = append(make([]byte, 32), fake...)
		}
		publish("kanal.mbox.wake."+v.DeviceID, fake)
		end, _ := json.Marshal(map[string]any{"reason": "logged out", "device": v.DeviceID, "account": v.AccountID, "at": time.Now().UnixMilli()})
		publish("kanal.mbox.end", append(make([]byte, 32), end...))
		publish("kanal.mbox.disconnect."+v.DeviceID, nil)

		sender.send(t, a.URL, sealed(t, sender, v, fmt.Sprint("real-", i), "real"))
		got := nextEnvelopes(t, ws)
		if len(got) != 1 || got[0].Sender != sender.DeviceID || strings.HasPrefix(got[0].ID, "forged") || string(got[0].Ciphertext) == "forged" {
			t.Fatalf("round %d: the socket got %+v, want only the real envelope", i, got)
		}
		if err := ack(ws, got[0].ID); err != nil {
			t.Fatalf("round %d: the stream was closed: %v", i, err)
		}
	}
	// Node b saw every forgery for what it is: three wake-ups, three
	// session ends (more if other deployments share the test NATS).
	// They are counted as they come, each kind on its own subscription.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n := metric(t, b.URL, "kanal_bus_rejected_total")
		if n >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kanal_bus_rejected_total = %v on the stream's node, want at least 6", n)
		}
	}
}
