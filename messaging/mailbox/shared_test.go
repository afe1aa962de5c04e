//go:build !js

package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestAppendSharedReferences: a shared envelope to more devices than one
// multi-row statement takes, given in no particular order, some with
// envelopes already: every device gets exactly one reference, next in its
// own sequence, returned in the order the devices were given; reading a
// mailbox puts the body back; each head counts one more envelope of
// len(id) bytes. A bad device id or a device named twice is refused and
// writes nothing — neither the body nor any reference.
func TestAppendSharedReferences(t *testing.T) {
	dbtest.Run(t, []db.Migrations{mailbox.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s := mailbox.NewStore(d, mailbox.StoreOptions{})
		const n = 700
		devs := make([]string, n)
		for i := range devs {
			devs[i] = fmt.Sprintf("dev_sh_%03d", (i*389)%n) // a permutation of 0..n-1
		}
		// Every seventh device has two envelopes already.
		for i := 0; i < n; i += 7 {
			if err := s.Append(ctx, []mailbox.Envelope{env(devs[i], "dev_x", "one"), env(devs[i], "dev_x", "two")}); err != nil {
				t.Fatal(err)
			}
		}
		body := []byte("the council's announcement")
		e := mailbox.Envelope{ID: "bc_shared_1", Sender: "dev_clerk", Conversation: "b_council", Ciphertext: body}
		refs, err := s.AppendShared(ctx, e, devs)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != n {
			t.Fatalf("%d references for %d devices", len(refs), n)
		}
		for i, r := range refs {
			want := int64(1)
			if i%7 == 0 {
				want = 3
			}
			if r.Recipient != devs[i] || r.Seq != want || r.ID != e.ID || r.Class != mailbox.ClassBroadcast || r.ServerTime.IsZero() {
				t.Fatalf("reference %d: %+v, want device %s seq %d", i, r, devs[i], want)
			}
			got, err := s.Fetch(ctx, devs[i], want-1, 10)
			if err != nil || len(got) != 1 || got[0].ID != e.ID || string(got[0].Ciphertext) != string(body) || got[0].Seq != want {
				t.Fatalf("%s reads %+v (%v)", devs[i], got, err)
			}
			var depth, size int64
			if err := d.QueryRow(ctx, `SELECT depth, bytes FROM mailbox_heads WHERE device_id = $1`, devs[i]).Scan(&depth, &size); err != nil {
				t.Fatal(err)
			}
			if wantDepth := want; depth != wantDepth || size != int64(len("one")+len("two"))*(want-1)/2+int64(len(e.ID)) {
				t.Fatalf("%s: head counts %d envelopes of %d bytes", devs[i], depth, size)
			}
		}
		for _, bad := range []struct {
			name    string
			devices []string
		}{
			{"bad device id", []string{"dev_sh_000", "dev sh"}},
			{"device twice", []string{"dev_sh_001", "dev_sh_002", "dev_sh_001"}},
		} {
			e2 := mailbox.Envelope{ID: "bc_shared_bad", Sender: "dev_clerk", Conversation: "b_council", Ciphertext: body}
			_, err := s.AppendShared(ctx, e2, bad.devices)
			if err == nil {
				t.Fatalf("%s: accepted", bad.name)
			}
			if bad.name == "bad device id" && !errors.Is(err, mailbox.ErrInvalid) {
				t.Fatalf("%s: %v, want ErrInvalid", bad.name, err)
			}
			var rows int
			if err := d.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM mailbox WHERE envelope_id = $1) + (SELECT COUNT(*) FROM mailbox_shared WHERE id = $1)`, e2.ID).Scan(&rows); err != nil || rows != 0 {
				t.Fatalf("%s: %d rows written (%v)", bad.name, rows, err)
			}
			for _, dev := range bad.devices[:1] {
				var last int64
				if err := d.QueryRow(ctx, `SELECT last_seq FROM mailbox_heads WHERE device_id = $1`, dev).Scan(&last); err != nil || last > 3 {
					t.Fatalf("%s: %s's head at %d (%v)", bad.name, dev, last, err)
				}
			}
		}
	})
}
