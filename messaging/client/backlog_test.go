package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestBacklogLongerThanTheWindow: more messages wait for bob than the
// server hands a stream unacknowledged (mailbox.MaxInFlight). The server
// says "synced" only once the backlog is through, and holds the rest back
// until acknowledgements make room; Backlog must make that room itself,
// or it waits for a "synced" that never comes. bob gets every message,
// once, in order.
func TestBacklogLongerThanTheWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startKanald(t, false, "KANAL_SEND_LIMIT=10000")
	_, bob, aliceSDK, bobSDK := pair(t, s.Server)
	n := mailbox.MaxInFlight + 40
	for i := range n {
		m, err := kind.New(fmt.Sprintf("m-%04d", i), time.Now(), &kind.TextBody{Text: fmt.Sprintf("Nachricht %04d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := aliceSDK.Send(ctx, client.Peer{AccountID: bob.AccountID}, m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	st, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Not the test's whole time: a Backlog that waits for a "synced"
	// that cannot come ends here with the context's error.
	bctx, bcancel := context.WithTimeout(ctx, 60*time.Second)
	defer bcancel()
	got, bad, err := st.Backlog(bctx)
	if err != nil || len(bad) > 0 {
		t.Fatalf("backlog of %d: %d messages, %v, %v", n, len(got), bad, err)
	}
	if len(got) != n {
		t.Fatalf("backlog: %d messages, want %d", len(got), n)
	}
	for i, in := range got {
		if want := fmt.Sprintf("Nachricht %04d", i); in.Message.Body.(*kind.TextBody).Text != want {
			t.Fatalf("message %d is %q, want %q", i, in.Message.Body.(*kind.TextBody).Text, want)
		}
	}
	// Everything was acknowledged: a new stream has nothing waiting.
	st.Close()
	st2, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if again, bad, err := st2.Backlog(ctx); err != nil || len(again)+len(bad) != 0 {
		t.Fatalf("second backlog: %d messages, %v, %v", len(again), bad, err)
	}
}
