package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestOfflineDeviceCatchesUp: a device is offline while 100 messages
// arrive for it, and the node that stored the first half is killed with
// SIGKILL in between. When the device connects, it gets all 100, in order.
// Embedded: the one node is killed and started again on its data
// directory. Two nodes: node 0 is killed and node 1 carries on.
func TestOfflineDeviceCatchesUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		twoNodes bool
	}{{"embedded", false}, {"two-nodes-postgres-nats", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := startDeployment(t, tc.twoNodes)
			alice := newAccount(t, d, "alice@example.org", 1)[0]
			bob := newAccount(t, d, "bob@example.org", 1)[0]
			aliceStore, bobStore := client.NewMemoryStore(), client.NewMemoryStore()
			// bob publishes his keys, then goes offline.
			newPhone(t, "bob", bob, d.node(0).URL, bobStore)

			sendAll := func(sdk *client.Client, from, to int) {
				t.Helper()
				for i := from; i < to; i++ {
					m, err := kind.New(fmt.Sprintf("msg-%03d", i), time.Now(), &kind.TextBody{Text: fmt.Sprintf("Nachricht %03d", i)})
					if err != nil {
						t.Fatal(err)
					}
					if _, err := sdk.Send(ctx, client.Peer{AccountID: bob.AccountID}, m); err != nil {
						t.Fatalf("send %d: %v", i, err)
					}
				}
			}
			sendAll(alice.SDK(t, d.node(0).URL, aliceStore), 0, 50)

			d.nodes[0].Kill(t)
			live := d.node(1).URL
			if !tc.twoNodes {
				d.nodes[0] = kanaldtest.Start(t, kanaldBin, "KANAL_DATA_DIR="+d.nodes[0].DataDir)
				live = d.nodes[0].URL
			}
			sendAll(alice.SDK(t, live, aliceStore), 50, 100)

			st, err := bob.SDK(t, live, bobStore).Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			got, bad, err := st.Backlog(ctx)
			if err != nil || len(bad) > 0 {
				t.Fatalf("backlog: %v %v", err, bad)
			}
			if len(got) != 100 {
				t.Fatalf("%d messages after reconnect, want 100", len(got))
			}
			for i, in := range got {
				if want := fmt.Sprintf("Nachricht %03d", i); in.Message.Body.(*kind.TextBody).Text != want || in.SenderAccount != alice.AccountID {
					t.Fatalf("message %d: %q from %s, want %q from %s", i, in.Message.Body.(*kind.TextBody).Text, in.SenderAccount, want, alice.AccountID)
				}
			}
		})
	}
}
