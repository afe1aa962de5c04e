package messaging_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

func (e *sendEnv) depth(device string) (n int, bytes int64) {
	e.t.Helper()
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(*), COALESCE(SUM(LENGTH(ciphertext)), 0) FROM mailbox WHERE device_id = $1`, device).Scan(&n, &bytes); err != nil {
		e.t.Fatal(err)
	}
	return n, bytes
}

func sized(device string, size int) messaging.SendEnvelope {
	return messaging.SendEnvelope{DeviceID: device, Ciphertext: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'x'}, size))}
}

// TestAttackMailboxFlood: another citizen (one device, a session, the
// victim's public device list) floods a victim's device with envelopes to
// park as much as it can in the victim's mailbox. The per-device quota
// holds, counted in envelopes and in bytes, also when the flood comes all
// at once; a send refused for a full mailbox stores nothing for any of its
// recipients. Fairness, as decided: the quota is the device's, so while it
// is full other senders are refused too (507 mailbox-full) — and are
// accepted again as soon as the device has read its mailbox.
func TestAttackMailboxFlood(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		for _, batch := range []bool{false, true} {
			const maxEnv, maxBytes = 10, 256 << 10
			e := newSendEnv(t, d, 0, batch, func(o *messaging.Options) {
				o.MailboxQuota = mailbox.Quota{MaxEnvelopes: maxEnv, MaxBytes: maxBytes}
			})
			p := fmt.Sprintf("b%v-", batch)
			mallory := e.enroll(p+"mallory", p+"mallory-phone", true)
			e.enroll(p+"bob", p+"bob-phone", false)
			carol := e.enroll(p+"carol", p+"carol-phone", false)
			e.enroll(p+"carol", p+"carol-tablet", false)

			// The flood, at once: exactly the quota gets in.
			const racers = 2 * maxEnv
			statuses := make([]int, racers)
			types := make([]any, racers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					st, _, out := e.post(mallory, toAccount(p+"bob", fmt.Sprintf("flood-%d", i), p+"bob-phone"))
					statuses[i], types[i] = st, out["type"]
				}()
			}
			close(start)
			wg.Wait()
			won := 0
			for i, st := range statuses {
				switch {
				case st == 201:
					won++
				case st != 507 || types[i] != string(messaging.TypeMailboxFull):
					t.Fatalf("a flooding send got %d %v", st, types[i])
				}
			}
			if n, _ := e.depth(p + "bob-phone"); won != maxEnv || n != maxEnv {
				t.Fatalf("%d of %d flooding sends accepted, %d envelopes in the victim's mailbox; want %d", won, racers, n, maxEnv)
			}

			// Another sender is refused whole: its own tablet's copy is not
			// stored either, and no send row is written.
			env0, sends0 := e.stored()
			st, _, out := e.post(carol, toAccount(p+"bob", "hello", p+"bob-phone", p+"carol-tablet"))
			wantProblem(t, st, out, 507, messaging.TypeMailboxFull)
			if got := strs(out["devices"]); !reflect.DeepEqual(got, []string{p + "bob-phone"}) {
				t.Fatalf("full devices %v", got)
			}
			if en, sn := e.stored(); en != env0 || sn != sends0 {
				t.Fatalf("a refused send stored %d envelopes and %d send rows", en-env0, sn-sends0)
			}

			// The victim reads (acks) half; the other sender gets through.
			envs, err := e.mb.Fetch(context.Background(), p+"bob-phone", 0, maxEnv/2)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]string, len(envs))
			for i, env := range envs {
				ids[i] = env.ID
			}
			if n, err := e.mb.Ack(context.Background(), p+"bob-phone", ids); err != nil || n != maxEnv/2 {
				t.Fatalf("ack: %d %v", n, err)
			}
			if st, _, out := e.post(carol, toAccount(p+"bob", "hello", p+"bob-phone", p+"carol-tablet")); st != 201 {
				t.Fatalf("after the victim read its mailbox: %d %v", st, out)
			}

			// In bytes: envelopes of 60 KB fill 256 KiB after four.
			dave := e.enroll(p+"dave", p+"dave-phone", true)
			e.enroll(p+"eve", p+"eve-phone", false)
			for i := range 5 {
				req := messaging.SendRequest{To: messaging.SendTo{AccountID: p + "eve"}, ClientID: fmt.Sprintf("big-%d", i), Class: "message",
					Envelopes: []messaging.SendEnvelope{sized(p+"eve-phone", 60000)}}
				st, _, out := e.post(dave, req)
				if i < 4 && st != 201 || i == 4 && (st != 507 || out["type"] != string(messaging.TypeMailboxFull)) {
					t.Fatalf("big send %d: %d %v", i, st, out)
				}
			}
			if n, b := e.depth(p + "eve-phone"); n != 4 || b > maxBytes {
				t.Fatalf("eve's mailbox holds %d envelopes, %d bytes", n, b)
			}
		}
	})
}
