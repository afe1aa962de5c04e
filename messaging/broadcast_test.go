package messaging_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// broadcastEnv is a send environment whose fan-outs are recorded.
type broadcastEnv struct {
	*sendEnv
	fanMu  sync.Mutex
	fanned [][]mailbox.Envelope
}

func newBroadcastEnv(t *testing.T, d *db.DB) *broadcastEnv {
	b := &broadcastEnv{}
	b.sendEnv = newSendEnv(t, d, 0, false, func(o *messaging.Options) {
		o.Fanout = func(refs []mailbox.Envelope, body []byte) {
			b.fanMu.Lock()
			defer b.fanMu.Unlock()
			b.fanned = append(b.fanned, refs)
		}
	})
	return b
}

// waitFanned waits for n fan-outs (the poster is answered first) and
// returns them.
func (b *broadcastEnv) waitFanned(t *testing.T, n int) [][]mailbox.Envelope {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b.fanMu.Lock()
		fanned := slices.Clone(b.fanned)
		b.fanMu.Unlock()
		if len(fanned) >= n {
			if len(fanned) > n {
				t.Fatalf("%d fan-outs, want %d", len(fanned), n)
			}
			return fanned
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d fan-outs after 10 s, want %d", len(fanned), n)
		}
	}
}

// council is org_council with its clerk's device as agent, and a device
// of acc_ann following it.
func (b *broadcastEnv) council(t *testing.T, follower string) (agent, ann *device) {
	t.Helper()
	agent = b.dir.enroll(t, "acc_clerk", "dev_clerk", true)
	b.dir.addOrg(t, "org_council", agent)
	ann = b.dir.enroll(t, "acc_ann", follower, false)
	if st, _, out := b.request(ann, "PUT", "/v1/broadcasts/org_council/follower", nil); st != 200 {
		t.Fatalf("follow: %d %v", st, out)
	}
	return agent, ann
}

// member is d signing for org.
func (b *broadcastEnv) member(t *testing.T, d *device, org string) orgsig.Member {
	t.Helper()
	b.dir.mu.Lock()
	defer b.dir.mu.Unlock()
	return orgsig.Member{Key: d.key, DeviceCert: d.cert, Membership: b.dir.devices[d.id].Membership, OrgCert: b.dir.orgs[org].Certificate().Raw}
}

func (b *broadcastEnv) announce(t *testing.T, d *device, org, id, text string) string {
	t.Helper()
	jws, err := messaging.SignAnnouncement(b.member(t, d, org), b.dir.ca.Pool(), messaging.Announcement{Version: 1, Org: org, ID: id, SentAt: *b.now, Text: text})
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// status makes a request whose answer may have no body.
func (b *broadcastEnv) status(dev *device, method, path string) int {
	b.t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, b.ts.URL+path, nil)
	req.Header.Set("Authorization", "Test "+dev.account+" "+dev.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (b *broadcastEnv) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := b.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBroadcastFollowPostRead(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b := newBroadcastEnv(t, d)
		ctx := context.Background()
		agent := b.dir.enroll(t, "acc_clerk", "dev_clerk", true)
		b.dir.addOrg(t, "org_council", agent)
		ann := b.dir.enroll(t, "acc_ann", "dev_ann1", false)
		ann2 := b.dir.enroll(t, "acc_ann", "dev_ann2", true)
		bob := b.dir.enroll(t, "acc_bob", "dev_bob", false)
		eve := b.dir.enroll(t, "acc_eve", "dev_eve", false) // follows nobody

		for _, dev := range []*device{ann, bob} {
			st, _, out := b.request(dev, "PUT", "/v1/broadcasts/org_council/follower", nil)
			if st != 200 || out["conversation_id"] != messaging.BroadcastConversation("org_council") {
				t.Fatalf("follow: %d %v", st, out)
			}
		}
		// Following again changes nothing.
		if st, _, out := b.request(bob, "PUT", "/v1/broadcasts/org_council/follower", nil); st != 200 {
			t.Fatalf("follow again: %d %v", st, out)
		}
		if n := b.count(t, "messaging_followers"); n != 2 {
			t.Fatalf("%d follower rows, want 2", n)
		}
		// The account's export (GDPR Art. 15) names what it follows.
		x, err := b.svc.ExportAccount(ctx, "acc_ann", []string{"dev_ann1", "dev_ann2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(x.Following) != 1 || x.Following[0].OrgID != "org_council" || x.Following[0].FollowedAt.IsZero() {
			t.Fatalf("export following = %+v, want org_council", x.Following)
		}
		if x, err := b.svc.ExportAccount(ctx, "acc_eve", []string{"dev_eve"}); err != nil || len(x.Following) != 0 {
			t.Fatalf("eve's export following = %+v, %v; want none", x, err)
		}
		st, _, out := b.request(ann2, "GET", "/v1/broadcasts", nil)
		if l := out["following"].([]any); st != 200 || len(l) != 1 || l[0].(map[string]any)["org_id"] != "org_council" {
			t.Fatalf("following: %d %v", st, out)
		}

		jws := b.announce(t, agent, "org_council", "a1", "Die Brücke am Markt ist ab Montag gesperrt.")
		st, _, out = b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: jws})
		if st != 201 || out["devices"] != float64(3) {
			t.Fatalf("post: %d %v", st, out)
		}
		postID := out["post_id"].(string)
		// Stored once: one body, and a reference the size of its id in
		// each follower device's mailbox.
		if n := b.count(t, "mailbox_shared"); n != 1 {
			t.Fatalf("%d shared bodies, want 1", n)
		}
		var refs, refBytes int
		if err := d.QueryRow(ctx, `SELECT COUNT(*), SUM(LENGTH(ciphertext)) FROM mailbox WHERE envelope_id = $1`, postID).Scan(&refs, &refBytes); err != nil {
			t.Fatal(err)
		}
		if refs != 3 || refBytes != 3*len(postID) {
			t.Fatalf("%d references of %d bytes, want 3 of %d", refs, refBytes, 3*len(postID))
		}
		if fanned := b.waitFanned(t, 1); len(fanned[0]) != 3 {
			t.Fatalf("fanned out %v", fanned)
		}
		// Each follower device reads the announcement itself, and it
		// verifies offline against the CA.
		for _, dev := range []*device{ann, ann2, bob} {
			envs, err := b.mb.Fetch(ctx, dev.id, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(envs) != 1 || envs[0].Class != mailbox.ClassBroadcast || string(envs[0].Ciphertext) != jws ||
				envs[0].Sender != agent.id || envs[0].Conversation != messaging.BroadcastConversation("org_council") {
				t.Fatalf("%s reads %+v", dev.id, envs)
			}
			v, err := messaging.VerifyAnnouncement(string(envs[0].Ciphertext), b.dir.ca.Pool())
			if err != nil || v.Text != "Die Brücke am Markt ist ab Montag gesperrt." || v.Membership.OrgID != "org_council" {
				t.Fatalf("verify: %v %+v", err, v)
			}
		}
		if envs, _ := b.mb.Fetch(ctx, eve.id, 0, 10); len(envs) != 0 {
			t.Fatalf("a non-follower got %v", envs)
		}
		// A retry of the same announcement is answered as the first and
		// stores nothing.
		st, _, again := b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: jws})
		if st != 200 || again["post_id"] != postID {
			t.Fatalf("retry: %d %v", st, again)
		}
		if n := b.count(t, "mailbox"); n != 3 {
			t.Fatalf("%d mailbox rows after the retry, want 3", n)
		}
		// Followers and agents read a post; others do not.
		st, _, p := b.request(bob, "GET", "/v1/broadcasts/org_council/posts/"+postID, nil)
		if st != 200 || p["announcement"] != jws {
			t.Fatalf("read: %d %v", st, p)
		}
		if st, _, p := b.request(agent, "GET", "/v1/broadcasts/org_council/posts/"+postID, nil); st != 200 {
			t.Fatalf("agent read: %d %v", st, p)
		}
		// An acknowledged reference is gone; the body stays for the others.
		if n, err := b.mb.Ack(ctx, bob.id, []string{postID}); err != nil || n != 1 {
			t.Fatalf("ack: %d %v", n, err)
		}
		if envs, _ := b.mb.Fetch(ctx, ann.id, 0, 10); len(envs) != 1 {
			t.Fatalf("ann lost the announcement when bob acknowledged: %v", envs)
		}

		// Unfollowing stops what comes after.
		if st := b.status(bob, "DELETE", "/v1/broadcasts/org_council/follower"); st != 204 {
			t.Fatalf("unfollow: %d", st)
		}
		if st, _, out := b.request(bob, "DELETE", "/v1/broadcasts/org_council/follower", nil); st != 404 || out["type"] != string(messaging.TypeNotFollowing) {
			t.Fatalf("unfollow again: %d %v", st, out)
		}
		st, _, out = b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: b.announce(t, agent, "org_council", "a2", "Zweite Mitteilung")})
		if st != 201 || out["devices"] != float64(2) {
			t.Fatalf("second post: %d %v", st, out)
		}
		if envs, _ := b.mb.Fetch(ctx, bob.id, 0, 10); len(envs) != 0 {
			t.Fatalf("bob unfollowed and still got %v", envs)
		}
		if st, _, out := b.request(bob, "GET", "/v1/broadcasts/org_council/posts/"+postID, nil); st != 404 || out["type"] != string(messaging.TypeNotFollowing) {
			t.Fatalf("read after unfollowing: %d %v", st, out)
		}

		// An erased account follows nobody any more.
		if err := d.Tx(ctx, func(tx *sql.Tx) error { return b.svc.EraseAccountTx(ctx, tx, ann.account, "erased_1") }); err != nil {
			t.Fatal(err)
		}
		if n := b.count(t, "messaging_followers"); n != 0 {
			t.Fatalf("%d follower rows after anna's erasure, want 0", n)
		}

		// Expiry removes the bodies with the references.
		*b.now = b.now.Add(mailbox.DefaultRetention + time.Minute)
		if _, err := b.mb.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		if n := b.count(t, "mailbox_shared"); n != 0 {
			t.Fatalf("%d shared bodies after retention", n)
		}
		if n, err := b.svc.ExpireBroadcasts(ctx); err != nil || n != 2 {
			t.Fatalf("expired %d broadcast records, %v", n, err)
		}
	})
}

func TestBroadcastBadInput(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b := newBroadcastEnv(t, d)
		agent, ann := b.council(t, "dev_ann")
		good := b.announce(t, agent, "org_council", "a1", "Hallo")
		// An announcement an agent signed with a long text, bypassing
		// SignAnnouncement's own check.
		raw := func(payload string) string {
			jws, _, err := orgsig.SignMember(b.member(t, agent, "org_council"), b.dir.ca.Pool(), *b.now, messaging.TypeAnnouncement, []byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			return jws
		}
		at := b.now.Format(time.RFC3339Nano)
		for _, c := range []struct {
			name, method, path string
			body               any
			status             int
			typ                web.ProblemType
		}{
			{"follow an unknown organisation", "PUT", "/v1/broadcasts/org_nobody/follower", nil, 404, messaging.TypeUnknownRecipient},
			{"follow with a body", "PUT", "/v1/broadcasts/org_council/follower", `{"x":1}`, 400, web.TypeValidation},
			{"a malformed organisation id", "PUT", "/v1/broadcasts/org%20x/follower", nil, 400, web.TypeValidation},
			{"post: unknown field", "POST", "/v1/broadcasts/org_council/posts", `{"announcement":"` + good + `","x":1}`, 400, web.TypeInvalidJSON},
			{"post: empty", "POST", "/v1/broadcasts/org_council/posts", `{"announcement":""}`, 413, web.TypeTooLarge},
			{"post: over the limit", "POST", "/v1/broadcasts/org_council/posts", `{"announcement":"` + strings.Repeat("a", messaging.MaxAnnouncementBytes+1) + `"}`, 413, web.TypeTooLarge},
			{"post: not a JWS", "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: "not.a.jws"}, 400, messaging.TypeBadAnnouncement},
			{"post: to an unknown organisation", "POST", "/v1/broadcasts/org_nobody/posts", messaging.PostRequest{Announcement: good}, 404, messaging.TypeUnknownRecipient},
			{"post: text too long", "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: raw(`{"v":1,"org":"org_council","id":"a2","sent_at":"` + at + `","text":"` + strings.Repeat("x", messaging.MaxAnnouncementText+1) + `"}`)}, 400, messaging.TypeBadAnnouncement},
			{"post: unknown payload member", "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: raw(`{"v":1,"org":"org_council","id":"a3","sent_at":"` + at + `","text":"x","to":"all"}`)}, 400, messaging.TypeBadAnnouncement},
			{"post: version 2", "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: raw(`{"v":2,"org":"org_council","id":"a4","sent_at":"` + at + `","text":"x"}`)}, 400, messaging.TypeBadAnnouncement},
			{"read: a malformed post id", "GET", "/v1/broadcasts/org_council/posts/a%20b", nil, 400, web.TypeValidation},
			{"read: no such post", "GET", "/v1/broadcasts/org_council/posts/bc_nothing", nil, 404, web.TypeNotFound},
		} {
			dev := ann
			if c.method == "POST" {
				dev = agent
			}
			st, _, out := b.request(dev, c.method, c.path, c.body)
			if st != c.status || out["type"] != string(c.typ) {
				t.Errorf("%s: %d %v, want %d %s", c.name, st, out, c.status, c.typ)
			}
		}
		// An announcement dated outside the allowed skew: the clock moves.
		old := b.announce(t, agent, "org_council", "a5", "alt")
		*b.now = b.now.Add(messaging.AnnouncementSkew + time.Second)
		st, _, out := b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: old})
		wantProblem(t, st, out, 400, messaging.TypeBadAnnouncement)
		if n := b.count(t, "mailbox") + b.count(t, "mailbox_shared") + b.count(t, "messaging_broadcasts"); n != 0 {
			t.Fatalf("bad input stored %d rows", n)
		}
		if n := b.count(t, "messaging_followers"); n != 1 {
			t.Fatalf("%d follower rows, want 1", n)
		}
	})
}

// TestAttackBroadcast: the adversaries hold a session of their own (a
// citizen, an agent of another organisation, an agent who left) and
// whatever announcements they have seen; none of them gets an
// announcement into a follower's mailbox in the council's name or reads
// one of an organisation it does not follow.
func TestAttackBroadcast(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		b := newBroadcastEnv(t, d)
		clerk := b.dir.enroll(t, "acc_clerk", "dev_clerk", true)
		clerk2 := b.dir.enroll(t, "acc_clerk2", "dev_clerk2", false)
		b.dir.addOrg(t, "org_council", clerk, clerk2)
		grocer := b.dir.enroll(t, "acc_grocer", "dev_grocer", true)
		b.dir.addOrg(t, "org_shop", grocer)
		ann := b.dir.enroll(t, "acc_ann", "dev_ann", false)
		mallory := b.dir.enroll(t, "acc_mallory", "dev_mallory", true)
		if st, _, out := b.request(ann, "PUT", "/v1/broadcasts/org_council/follower", nil); st != 200 {
			t.Fatalf("follow: %d %v", st, out)
		}
		genuine := b.announce(t, clerk, "org_council", "g1", "Echte Mitteilung")
		st, _, out := b.request(clerk, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: genuine})
		if st != 201 {
			t.Fatalf("genuine post: %d %v", st, out)
		}
		postID := out["post_id"].(string)
		before := b.count(t, "mailbox")

		post := func(dev *device, org, jws string) (int, map[string]any) {
			st, _, out := b.request(dev, "POST", "/v1/broadcasts/"+org+"/posts", messaging.PostRequest{Announcement: jws})
			return st, out
		}
		// A citizen replays the clerk's genuine announcement.
		st, out = post(mallory, "org_council", genuine)
		wantProblem(t, st, out, 403, web.TypeForbidden)
		// An agent of another organisation posts its own, valid one to
		// the council's followers.
		st, out = post(grocer, "org_council", b.announce(t, grocer, "org_shop", "s1", "Angebot"))
		wantProblem(t, st, out, 403, web.TypeForbidden)
		// A second council agent posts the first one's announcement as
		// its own.
		st, out = post(clerk2, "org_council", b.announce(t, clerk, "org_council", "g2", "Nicht von clerk2"))
		wantProblem(t, st, out, 400, messaging.TypeBadAnnouncement)
		// A council agent changes the text of a signed announcement
		// (payload swapped, signature kept).
		parts := strings.Split(b.announce(t, clerk, "org_council", "g3", "Original"), ".")
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"org":"org_council","id":"g3","sent_at":"` + b.now.Format(time.RFC3339Nano) + `","text":"Gefälscht"}`))
		st, out = post(clerk, "org_council", strings.Join(parts, "."))
		wantProblem(t, st, out, 400, messaging.TypeBadAnnouncement)
		// The shop's agent posts an announcement naming the council to
		// the shop's own followers.
		jws, _, err := orgsig.SignMember(b.member(t, grocer, "org_shop"), b.dir.ca.Pool(), *b.now, messaging.TypeAnnouncement,
			[]byte(`{"v":1,"org":"org_council","id":"s2","sent_at":"`+b.now.Format(time.RFC3339Nano)+`","text":"Im Namen des Rats"}`))
		if err != nil {
			t.Fatal(err)
		}
		st, out = post(grocer, "org_shop", jws)
		wantProblem(t, st, out, 400, messaging.TypeBadAnnouncement)
		if _, err := messaging.VerifyAnnouncement(jws, b.dir.ca.Pool()); err == nil {
			t.Fatal("a client would accept a shop's announcement in the council's name")
		}
		// An agent whose device was revoked (it left) posts with a
		// still-valid signature.
		b.dir.revoke(clerk2.id)
		st, out = post(clerk2, "org_council", b.announce(t, clerk2, "org_council", "r1", "Nach dem Austritt"))
		wantProblem(t, st, out, 403, web.TypeForbidden)
		if n := b.count(t, "mailbox"); n != before {
			t.Fatalf("attacks stored %d mailbox rows", n-before)
		}
		// A citizen who does not follow reads the post, by its id.
		st, _, out = b.request(mallory, "GET", "/v1/broadcasts/org_council/posts/"+postID, nil)
		wantProblem(t, st, out, 404, messaging.TypeNotFollowing)
		// Nor through another organisation it follows.
		if st, _, out := b.request(mallory, "PUT", "/v1/broadcasts/org_shop/follower", nil); st != 200 {
			t.Fatalf("follow: %d %v", st, out)
		}
		st, _, out = b.request(mallory, "GET", "/v1/broadcasts/org_shop/posts/"+postID, nil)
		wantProblem(t, st, out, 404, web.TypeNotFound)
		if envs, _ := b.mb.Fetch(context.Background(), mallory.id, 0, 10); len(envs) != 0 {
			t.Fatalf("mallory's mailbox holds %v", envs)
		}
	})
}

// TestBroadcastAnsweredBeforeTheFanout: the poster's answer is on its way
// before the followers' streams are woken — the fan-out here waits until
// the poster has read its answer, and the post still fans out once, after.
func TestBroadcastAnsweredBeforeTheFanout(t *testing.T) {
	d := dbtest.SQLite(t, sendSets...)
	answered, fanned := make(chan struct{}), make(chan int, 1)
	b := &broadcastEnv{}
	b.sendEnv = newSendEnv(t, d, 0, false, func(o *messaging.Options) {
		o.Fanout = func(refs []mailbox.Envelope, body []byte) {
			select {
			case <-answered:
				fanned <- len(refs)
			case <-time.After(10 * time.Second):
				fanned <- -1
			}
		}
	})
	agent, _ := b.council(t, "dev_ann1")
	jws := b.announce(t, agent, "org_council", "a1", "Die Brücke am Markt ist ab Montag gesperrt.")
	if st, _, out := b.request(agent, "POST", "/v1/broadcasts/org_council/posts", messaging.PostRequest{Announcement: jws}); st != 201 {
		t.Fatalf("post: %d %v", st, out)
	}
	close(answered)
	if n := <-fanned; n != 1 {
		t.Fatalf("fan-out after the answer: %d references (-1: the answer waited for the fan-out)", n)
	}
}
