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

// TestReceiveGathersAcks: twenty messages wait for bob; his stream hands
// them out one Receive after the other. Each Receive acknowledges the
// message before, but the acknowledgements go out together: kanald reads
// far fewer ack frames than messages, and the nineteen are deleted all
// the same. Five more are handed out and the stream closed at once: Close
// writes the four gathered acknowledgements, so on the next stream only
// the last message, handed out and never acknowledged, comes again — from
// bob's store, not decrypted twice — and an explicit Ack empties the
// mailbox.
func TestReceiveGathersAcks(t *testing.T) {
	ctx := context.Background()
	s := startKanald(t, false)
	srv := s.Server
	alice, bob, aliceSDK, bobSDK := pair(t, srv)
	to := client.Peer{AccountID: bob.AccountID}
	sendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			if _, err := aliceSDK.Send(ctx, to, textMsg(t, fmt.Sprint("Nachricht ", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := mailbox.NewStore(openServerDB(t, s, srv), mailbox.StoreOptions{})
	waitDepth := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			n, err := store.Depth(ctx, bob.DeviceID)
			if err == nil && n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob's mailbox holds %d envelopes (%v), want %d", n, err, want)
			}
		}
	}
	receive := func(st *client.Stream, want string) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		in, err := st.Receive(rctx)
		if err != nil {
			t.Fatal(err)
		}
		if in.SenderAccount != alice.AccountID {
			t.Fatalf("from %s", in.SenderAccount)
		}
		if tb, ok := in.Message.Body.(*kind.TextBody); !ok || tb.Text != want {
			t.Fatalf("got %v, want %q", in.Message.Body, want)
		}
	}

	sendN(0, 20)
	waitDepth(20)
	frames0 := ackFrames(t, srv.URL)
	st, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		receive(st, fmt.Sprint("Nachricht ", i))
	}
	// Nineteen acknowledged, the twentieth handed out and not yet.
	waitDepth(1)
	frames := ackFrames(t, srv.URL) - frames0
	if frames < 1 || frames >= 10 {
		t.Fatalf("%v ack frames for 19 acknowledged messages, want them gathered", frames)
	}

	sendN(20, 5)
	for i := 20; i < 25; i++ {
		receive(st, fmt.Sprint("Nachricht ", i))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Close wrote the acknowledgements of 19–23 (the four after 19
	// included); 24 stays.
	waitDepth(1)

	st, err = bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	receive(st, "Nachricht 24")
	if err := st.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	waitDepth(0)
}

// ackFrames reads kanal_stream_ack_frames_total from kanald's /metrics.
func ackFrames(t *testing.T, base string) float64 {
	t.Helper()
	series := metricSeries(t, base, "kanal_stream_ack_frames_total")
	if len(series) != 1 {
		t.Fatalf("/metrics has %d kanal_stream_ack_frames_total series, want 1", len(series))
	}
	return series[0]
}
