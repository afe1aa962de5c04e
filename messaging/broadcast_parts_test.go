package messaging_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// partsEnv is a council whose posts are written in parts of two devices,
// and n follower devices dev_f00, dev_f01, … on accounts of their own.
func partsEnv(t *testing.T, d *db.DB, n int) (*broadcastEnv, *device, []*device) {
	b := newBroadcastEnv(t, d, func(o *messaging.Options) { o.BroadcastPart = 2 })
	agent := b.dir.enroll(t, "acc_clerk", "dev_clerk", true)
	b.dir.addOrg(t, "org_council", agent)
	var followers []*device
	for i := range n {
		f := b.dir.enroll(t, fmt.Sprintf("acc_f%02d", i), fmt.Sprintf("dev_f%02d", i), false)
		if st, _, out := b.request(f, "PUT", "/v1/broadcasts/org_council/follower", nil); st != 200 {
			t.Fatalf("follow: %d %v", st, out)
		}
		followers = append(followers, f)
	}
	return b, agent, followers
}

// refsOf counts the references to post in each device's mailbox.
func (b *broadcastEnv) refsOf(t *testing.T, post string) map[string]int {
	t.Helper()
	rows, err := b.d.Query(context.Background(), `SELECT device_id, COUNT(*) FROM mailbox WHERE envelope_id = $1 GROUP BY device_id`, post)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var dev string
		var n int
		if err := rows.Scan(&dev, &n); err != nil {
			t.Fatal(err)
		}
		got[dev] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// wantRefsOnce fails unless exactly devices hold one reference to post each.
func (b *broadcastEnv) wantRefsOnce(t *testing.T, post string, devices []*device) {
	t.Helper()
	got := b.refsOf(t, post)
	for _, d := range devices {
		if got[d.id] != 1 {
			t.Errorf("%s holds %d references to %s, want 1", d.id, got[d.id], post)
		}
	}
	if len(got) != len(devices) {
		t.Errorf("references to %s in %d mailboxes, want %d: %v", post, len(got), len(devices), got)
	}
}

// fannedDevices is every device of fan-outs, sorted, once per time woken.
func fannedDevices(fanned [][]mailbox.Envelope) []string {
	var out []string
	for _, refs := range fanned {
		for _, r := range refs {
			out = append(out, r.Recipient)
		}
	}
	slices.Sort(out)
	return out
}

func ids(ds []*device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.id
	}
	slices.Sort(out)
	return out
}

// TestBroadcastInParts: a post to more devices than one part is written
// in parts, each fanned out once as it commits; every follower device
// gets exactly one reference, nothing is left pending, and a retry
// writes and wakes nothing more.
func TestBroadcastInParts(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b, agent, followers := partsEnv(t, d, 7)
		jws := b.announce(t, agent, "org_council", "a1", "Wahllokale sind von 8 bis 18 Uhr geöffnet.")
		st, _, out := b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: jws})
		if st != 201 || out["devices"] != float64(7) {
			t.Fatalf("post: %d %v", st, out)
		}
		post := out["post_id"].(string)
		b.wantRefsOnce(t, post, followers)
		if n := b.count(t, "messaging_broadcast_parts"); n != 0 {
			t.Fatalf("%d parts left after the post was answered", n)
		}
		// Four parts (2, 2, 2, 1), each woken once, every device once.
		fanned := b.waitFanned(t, 4)
		if got := fannedDevices(fanned); !slices.Equal(got, ids(followers)) {
			t.Fatalf("woken %v, want %v", got, ids(followers))
		}
		for _, refs := range fanned {
			if len(refs) == 0 || len(refs) > 2 {
				t.Fatalf("a fan-out of %d references, want 1..2", len(refs))
			}
		}
		// Every follower reads the announcement itself.
		for _, f := range followers {
			envs, err := b.mb.Fetch(context.Background(), f.id, 0, 10)
			if err != nil || len(envs) != 1 || string(envs[0].Ciphertext) != jws {
				t.Fatalf("%s reads %v, %v", f.id, envs, err)
			}
		}
		st, _, again := b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: jws})
		if st != 200 || again["post_id"] != post || again["devices"] != float64(7) {
			t.Fatalf("retry: %d %v", st, again)
		}
		b.wantRefsOnce(t, post, followers)
		b.waitFanned(t, 4)
	})
}

// leaveParts puts post's followers from devs into pending parts of two,
// numbered from first, as a poster's node that stopped after the post's
// first transaction leaves them.
func (b *broadcastEnv) leaveParts(t *testing.T, post string, first int, devs []*device) {
	t.Helper()
	for i := 0; i < len(devs); i += 2 {
		part := ids(devs[i:min(i+2, len(devs))])
		if _, err := b.d.Exec(context.Background(), `INSERT INTO messaging_broadcast_parts (post_id, part, devices, created_at) VALUES ($1, $2, $3, $4)`,
			post, first+i/2, strings.Join(part, " "), b.now.UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBroadcastPartsLeftBehind: the parts a poster's node left when it
// stopped are written by a retry of the post or, once PartsAbandoned has
// passed, by FinishBroadcasts on any node — each part once, however many
// finish at the same time, and never again for a device that already
// has (or acknowledged) its reference.
func TestBroadcastPartsLeftBehind(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		b, agent, followers := partsEnv(t, d, 2)
		jws := b.announce(t, agent, "org_council", "a1", "Die Müllabfuhr kommt am Samstag.")
		st, _, out := b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: jws})
		if st != 201 {
			t.Fatalf("post: %d %v", st, out)
		}
		post := out["post_id"].(string)
		b.waitFanned(t, 1)
		// The first follower acknowledges its reference.
		if n, err := b.mb.Ack(ctx, followers[0].id, []string{post}); err != nil || n != 1 {
			t.Fatalf("ack: %d %v", n, err)
		}
		var late []*device
		for i := range 9 {
			late = append(late, b.dir.enroll(t, fmt.Sprintf("acc_l%d", i), fmt.Sprintf("dev_l%d", i), false))
		}

		// A retry writes what was left (parts 1 and 2), and not the
		// acknowledged first part again.
		b.leaveParts(t, post, 1, late[:3])
		st, _, again := b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: jws})
		if st != 200 || again["post_id"] != post {
			t.Fatalf("retry: %d %v", st, again)
		}
		b.wantRefsOnce(t, post, append([]*device{followers[1]}, late[:3]...))
		if got := fannedDevices(b.waitFanned(t, 3)[1:]); !slices.Equal(got, ids(late[:3])) {
			t.Fatalf("the retry woke %v, want %v", got, ids(late[:3]))
		}

		// FinishBroadcasts leaves parts younger than PartsAbandoned to
		// their poster, then writes them; five nodes at once write each
		// part once.
		b.leaveParts(t, post, 3, late[3:])
		if n, err := b.svc.FinishBroadcasts(ctx); err != nil || n != 0 {
			t.Fatalf("FinishBroadcasts before PartsAbandoned: %d, %v", n, err)
		}
		if n := b.count(t, "messaging_broadcast_parts"); n != 3 {
			t.Fatalf("%d parts pending, want 3", n)
		}
		*b.now = b.now.Add(messaging.PartsAbandoned)
		var wg sync.WaitGroup
		errs := make(chan error, 5)
		for range 5 {
			wg.Go(func() {
				_, err := b.svc.FinishBroadcasts(ctx)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		b.wantRefsOnce(t, post, append([]*device{followers[1]}, late...))
		if n := b.count(t, "messaging_broadcast_parts"); n != 0 {
			t.Fatalf("%d parts pending after FinishBroadcasts", n)
		}
		if got := fannedDevices(b.waitFanned(t, 6)[3:]); !slices.Equal(got, ids(late[3:])) {
			t.Fatalf("FinishBroadcasts woke %v, want %v", got, ids(late[3:]))
		}
		// The late devices read the announcement as stored.
		envs, err := b.mb.Fetch(ctx, late[8].id, 0, 10)
		if err != nil || len(envs) != 1 || string(envs[0].Ciphertext) != jws {
			t.Fatalf("%s reads %v, %v", late[8].id, envs, err)
		}

		// Parts of a post past retention are not written; expiry
		// deletes them.
		b.leaveParts(t, post, 10, []*device{followers[0]})
		*b.now = b.now.Add(mailbox.DefaultRetention + time.Minute)
		if n, err := b.svc.FinishBroadcasts(ctx); err != nil || n != 0 {
			t.Fatalf("FinishBroadcasts after retention: %d, %v", n, err)
		}
		if got := b.refsOf(t, post)[followers[0].id]; got != 0 {
			t.Fatalf("an expired post's part was written: %d references", got)
		}
		if _, err := b.svc.ExpireBroadcasts(ctx); err != nil {
			t.Fatal(err)
		}
		if n := b.count(t, "messaging_broadcast_parts"); n != 0 {
			t.Fatalf("%d parts of an expired post kept", n)
		}
	})
}
