package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// listener is a LiveStream and the connection changes it reported.
type listener struct {
	t    *testing.T
	live *client.LiveStream

	mu      sync.Mutex
	changes []client.LiveChange
	handed  map[string]int // message id → times handed out
}

func listen(t *testing.T, sdk *client.Client, o client.ListenOptions) *listener {
	t.Helper()
	l := &listener{t: t, handed: map[string]int{}}
	o.OnChange = func(c client.LiveChange) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.changes = append(l.changes, c)
	}
	if o.MinDelay == 0 {
		o.MinDelay = 50 * time.Millisecond
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = time.Second
	}
	l.live = sdk.Listen(context.Background(), o)
	t.Cleanup(func() { l.live.Close() })
	return l
}

// waitChange waits until the LiveStream has reported n changes matching ok.
func (l *listener) waitChange(n int, ok func(client.LiveChange) bool) {
	l.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		got := 0
		for _, c := range l.changes {
			if ok(c) {
				got++
			}
		}
		all := append([]client.LiveChange(nil), l.changes...)
		l.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("LiveStream changes %v: want %d more", all, n-got)
		}
	}
}

func connected(c client.LiveChange) bool   { return c.Connected }
func reconnected(c client.LiveChange) bool { return c.Connected && c.Reconnected }
func lost(c client.LiveChange) bool        { return !c.Connected }

// next returns the next text handed out, skipping receipts.
func (l *listener) next() string {
	l.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		in, err := l.live.Receive(ctx)
		cancel()
		if err != nil {
			l.t.Fatalf("receive: %v", err)
		}
		l.mu.Lock()
		l.handed[in.Message.ID]++
		n := l.handed[in.Message.ID]
		l.mu.Unlock()
		if n > 1 {
			l.t.Fatalf("message %s handed out %d times", in.Message.ID, n)
		}
		if tb, ok := in.Message.Body.(*kind.TextBody); ok {
			return tb.Text
		}
	}
}

// pair signs alice and bob up on srv and gives each an SDK with published
// keys.
func pair(t *testing.T, s *kanaldtest.Server) (alice, bob *user, aliceSDK, bobSDK *client.Client) {
	t.Helper()
	alice = signUp(t, &server{Server: s}, "alice@example.org", true)
	bob = signUp(t, &server{Server: s}, "bob@example.org", false)
	aliceSDK, bobSDK = alice.SDK(t, s.URL, client.NewMemoryStore()), bob.SDK(t, s.URL, client.NewMemoryStore())
	for _, c := range []*client.Client{aliceSDK, bobSDK} {
		if _, err := c.Publish(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return alice, bob, aliceSDK, bobSDK
}

func liveSend(t *testing.T, from *client.Client, to string, text string) {
	t.Helper()
	// Right after a restart the first request may find the old
	// connection gone: try a few times.
	var err error
	for range 5 {
		if _, err = from.Send(context.Background(), client.Peer{AccountID: to}, textMsg(t, text)); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("send %q: %v", text, err)
}

// TestLiveStreamHandsOutNothingTwice: bob's LiveStream has handed out a
// message it has not acknowledged yet when kanald restarts (SIGTERM, as a
// deploy) and again when it crashes (SIGKILL). The message comes again as
// the new stream's backlog; the LiveStream acknowledges it without handing
// it out again, and hands out what was sent meanwhile. In the end the
// mailbox is empty.
func TestLiveStreamHandsOutNothingTwice(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		s := startKanald(t, postgres)
		srv := s.Server
		_, bob, aliceSDK, bobSDK := pair(t, srv)
		l := listen(t, bobSDK, client.ListenOptions{})
		l.waitChange(1, connected)

		liveSend(t, aliceSDK, bob.AccountID, "eins")
		liveSend(t, aliceSDK, bob.AccountID, "zwei")
		if got := l.next(); got != "eins" {
			t.Fatalf("first: %q", got)
		}
		if got := l.next(); got != "zwei" { // "eins" acknowledged; "zwei" handed out, not yet
			t.Fatalf("second: %q", got)
		}
		srv = srv.Restart(t)
		l.waitChange(1, lost)
		liveSend(t, aliceSDK, bob.AccountID, "drei, während des Neustarts")
		if got := l.next(); got != "drei, während des Neustarts" {
			t.Fatalf("after the restart: %q (a message came twice?)", got)
		}
		l.waitChange(1, reconnected)

		srv.Kill(t)
		srv = srv.StartAgain(t)
		liveSend(t, aliceSDK, bob.AccountID, "vier, nach dem Absturz")
		if got := l.next(); got != "vier, nach dem Absturz" {
			t.Fatalf("after the crash: %q", got)
		}
		l.waitChange(2, reconnected)
		if err := l.live.Ack(context.Background()); err != nil {
			t.Fatal(err)
		}
		store := mailbox.NewStore(openServerDB(t, s, srv), mailbox.StoreOptions{})
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			// Alice's receipts are not sent by this test: bob's mailbox
			// holds only what alice sent.
			n, err := store.Depth(context.Background(), bob.DeviceID)
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob's mailbox still holds %d envelopes (%v)", n, err)
			}
		}
	})
}

// openServerDB opens the database of the kanald srv (s restarted).
func openServerDB(t *testing.T, s *server, srv *kanaldtest.Server) *db.DB {
	t.Helper()
	if s.dbURL != "" {
		return openURL(t, s.dbURL)
	}
	return openURL(t, "sqlite:"+filepath.Join(srv.DataDir, "kanal.db"))
}

// TestLiveStreamSurvivesRestartAndSessionEnd: two LiveStreams of bob's one
// device are open at once (two streams of one device), both get every
// message, both survive a kanald restart. When bob's login is logged out,
// the stream with a Refresh logs in again and goes on; the one without
// stops for good and says why in plain words, and does not try again.
func TestLiveStreamSurvivesRestartAndSessionEnd(t *testing.T) {
	s := startKanald(t, false)
	srv := s.Server
	_, bob, aliceSDK, bobSDK := pair(t, srv)
	var refreshes int
	var rmu sync.Mutex
	withRefresh := listen(t, bobSDK, client.ListenOptions{Refresh: func(ctx context.Context) (string, error) {
		rmu.Lock()
		refreshes++
		rmu.Unlock()
		sess, err := idclient.New(srv.URL, nil).Login(ctx, bob.DeviceID, bob.Key, "")
		if err != nil {
			return "", err
		}
		return sess.Token, nil
	}})
	without := listen(t, bobSDK, client.ListenOptions{})
	// Receipts answer chat messages from others only.
	for _, c := range []struct {
		in   client.Incoming
		want bool
	}{
		{client.Incoming{SenderAccount: "acc_other", Message: textMsg(t, "hallo")}, true},
		{client.Incoming{SenderAccount: bob.AccountID, Message: textMsg(t, "from my phone")}, false},
		{client.Incoming{FromServer: true, Message: textMsg(t, "notice")}, false},
		{client.Incoming{SenderAccount: "acc_other", Message: &kind.Message{Kind: kind.Receipt}}, false},
		{client.Incoming{SenderAccount: "acc_other", Message: &kind.Message{Kind: kind.GroupChange}}, false},
		{client.Incoming{SenderAccount: "acc_other", Message: &kind.Message{Kind: "profile.update"}}, false},
	} {
		if got := bobSDK.WantsReceipt(&c.in); got != c.want {
			t.Errorf("WantsReceipt(%s from %s, server %v) = %v", c.in.Message.Kind, c.in.SenderAccount, c.in.FromServer, got)
		}
	}
	withRefresh.waitChange(1, connected)
	without.waitChange(1, connected)

	liveSend(t, aliceSDK, bob.AccountID, "vor dem Neustart")
	for _, l := range []*listener{withRefresh, without} {
		if got := l.next(); got != "vor dem Neustart" {
			t.Fatalf("before the restart: %q", got)
		}
	}
	srv = srv.Restart(t)
	liveSend(t, aliceSDK, bob.AccountID, "nach dem Neustart")
	for _, l := range []*listener{withRefresh, without} {
		if got := l.next(); got != "nach dem Neustart" {
			t.Fatalf("after the restart: %q", got)
		}
		l.waitChange(1, reconnected)
	}

	// Bob's login is logged out: both streams close with 4002.
	if err := idclient.New(srv.URL, nil).WithToken(bob.Token).Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := without.live.Receive(ctx)
	var stopped *client.StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(stopped.Reason, "logged out") || !strings.Contains(stopped.Reason, "log in again") {
		t.Fatalf("the stream without a refresh: %v, want it stopped saying you were logged out", err)
	}
	if strings.Contains(stopped.Reason, "4002") || strings.Contains(stopped.Reason, "websocket") {
		t.Errorf("reason is not in plain words: %q", stopped.Reason)
	}
	if !errors.As(without.live.Err(), &stopped) {
		t.Fatalf("Err after the stop: %v", without.live.Err())
	}
	without.mu.Lock()
	attempts := len(without.changes)
	without.mu.Unlock()

	liveSend(t, aliceSDK, bob.AccountID, "nach dem Abmelden")
	if got := withRefresh.next(); got != "nach dem Abmelden" {
		t.Fatalf("after the logout: %q", got)
	}
	rmu.Lock()
	if refreshes != 1 {
		t.Errorf("%d refreshes, want 1", refreshes)
	}
	rmu.Unlock()
	without.mu.Lock()
	if len(without.changes) != attempts {
		t.Errorf("the stopped LiveStream went on: %v", without.changes[attempts:])
	}
	without.mu.Unlock()
}
