package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestReceiveBatchAckAfterStore: bob's device takes a batch with
// ReceiveBatch and dies before it has kept it (no Ack). The device comes
// back on the same store: the batch comes again, then the rest; every
// message is handed out once in the second life, none is missing, and once
// acknowledged nothing is waiting any more.
func TestReceiveBatchAckAfterStore(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
	bobStore := client.NewMemoryStore()
	aliceSDK, bobSDK := alice.SDK(t, srv.URL, client.NewMemoryStore()), bob.SDK(t, srv.URL, bobStore)
	for _, s := range []*client.Client{aliceSDK, bobSDK} {
		if _, err := s.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const total = 30
	for i := range total {
		m, err := kind.New(fmt.Sprintf("msg-%03d", i), time.Now(), &kind.TextBody{Text: fmt.Sprintf("Nachricht %03d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := aliceSDK.Send(ctx, client.Peer{AccountID: bob.AccountID}, m); err != nil {
			t.Fatal(err)
		}
	}

	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// First life: one batch handed out, never acknowledged.
	st, err := bobSDK.Connect(rctx)
	if err != nil {
		t.Fatal(err)
	}
	first, bad, err := st.ReceiveBatch(rctx, 10)
	if err != nil || len(bad) > 0 || len(first) == 0 || len(first) > 10 {
		t.Fatalf("first batch: %d messages, %v, %v", len(first), bad, err)
	}
	st.Close() // the device dies before it has kept the batch

	// Second life, on the same store (the ratchets have moved on, so only
	// the SDK's decrypted copies can give the batch back).
	again := bob.SDK(t, srv.URL, bobStore)
	st, err = again.Connect(rctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]int{}
	var order []string
	for len(order) < total {
		msgs, bad, err := st.ReceiveBatch(rctx, 7)
		if err != nil || len(bad) > 0 {
			t.Fatalf("after %d messages: %v %v", len(order), bad, err)
		}
		for _, in := range msgs {
			kept[in.Message.ID]++
			order = append(order, in.Message.ID)
		}
		if err := st.Ack(rctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range order {
		if want := fmt.Sprintf("msg-%03d", i); id != want || kept[id] != 1 {
			t.Fatalf("message %d is %s (handed out %d times), want %s once", i, id, kept[id], want)
		}
	}
	for _, in := range first {
		if kept[in.Message.ID] != 1 {
			t.Fatalf("%s of the unacknowledged batch did not come again", in.Message.ID)
		}
	}
	st.Close()

	// Acknowledged: a third life is handed out nothing (an envelope whose
	// ack the server had not applied when the stream closed comes again,
	// is known as handed out before and is acknowledged without being
	// handed out), and the mailbox empties.
	st, err = bob.SDK(t, srv.URL, bobStore).Connect(rctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	<-st.Synced()
	qctx, qcancel := context.WithTimeout(rctx, 3*time.Second)
	defer qcancel()
	if msgs, bad, err := st.ReceiveBatch(qctx, 10); len(msgs) > 0 || len(bad) > 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after the acknowledgements: %d messages handed out again, %v, %v", len(msgs), bad, err)
	}
	d, err := db.Open(ctx, srv.dbURL, srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	store := mailbox.NewStore(d, mailbox.StoreOptions{})
	for n, _ := store.Depth(ctx, bob.DeviceID); n != 0; n, _ = store.Depth(ctx, bob.DeviceID) {
		if rctx.Err() != nil {
			t.Fatalf("%d envelopes still in the mailbox", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
