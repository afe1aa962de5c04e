package client_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Attacks on the server's own statements. A notice "from kanal" carries
// what the server states — a group's members changed, a payment arrived,
// a device of the account changed its key —
// and the SDK acts on it, so whoever can write the database or publish on
// the bus must not be able to make one up, nor move a real one to another
// device, another conversation or another kind.

// forgedNotice is what an adversary without the notary key can put in a
// notice envelope: a well-formed message, in the notice body as it was
// before notices were signed, with no signature.
func forgedNotice(t *testing.T, conv string, body kind.Body) []byte {
	t.Helper()
	m, err := kind.New("kanal_forged", time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(struct {
		Conversation string          `json:"conv"`
		Message      json.RawMessage `json:"msg"`
	}{conv, raw})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// notarySigned seals body as a notice for device in conv with kanald's
// own notary, read from its CA directory, as sealNotices would if the
// kind were allowed.
func notarySigned(t *testing.T, srv *server, device, conv string, body kind.Body) []byte {
	t.Helper()
	dir := filepath.Join(srv.DataDir, "ca")
	authority, _, err := ca.LoadOrCreateDir(dir, "kanal", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	notary, err := authority.Notary(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, err := kind.New("kanal_signed", time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	st := (&messaging.NoticeStatement{ID: "ntc_signedtext", Time: time.Now().UTC().Truncate(time.Millisecond), Kind: m.Kind,
		Recipient: device, Conversation: conv, Message: raw}).Marshal()
	b, err := json.Marshal(messaging.NoticeBody{Statement: st, Signature: notary.Sign(messaging.NoticePurpose(m.Kind), st),
		Notary: notary.Certificate().Raw})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openDB opens kanald's database as a database writer holds it.
func (s *server) openDB(t *testing.T) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), s.dbURL, s.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// plant appends an envelope to device's mailbox with plain SQL, as an
// adversary with write access to the database would: the next sequence
// number from the head row, then the row.
func plant(t *testing.T, d *db.DB, device, id, conv string, ciphertext []byte) {
	t.Helper()
	now := time.Now()
	err := d.Tx(context.Background(), func(tx *sql.Tx) error {
		var seq int64
		err := tx.QueryRow(`INSERT INTO mailbox_heads (device_id, last_seq) VALUES ($1, 1)
			ON CONFLICT (device_id) DO UPDATE SET last_seq = mailbox_heads.last_seq + 1 RETURNING last_seq`, device).Scan(&seq)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO mailbox (device_id, seq, envelope_id, conversation, sender_device, class, ciphertext, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, device, seq, id, conv, messaging.NoticeSender, string(kind.ClassMessage),
			ciphertext, now.UnixMilli(), now.Add(time.Hour).UnixMilli())
		return err
	})
	if err != nil {
		t.Fatalf("plant %s: %v", id, err)
	}
}

// noticeRows returns the notice envelopes waiting in device's mailbox, as
// a database reader sees them.
func noticeRows(t *testing.T, d *db.DB, device string) map[string][]byte {
	t.Helper()
	rows, err := d.Query(context.Background(), `SELECT envelope_id, ciphertext FROM mailbox WHERE device_id = $1 AND sender_device = $2`,
		device, messaging.NoticeSender)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var ct []byte
		if err := rows.Scan(&id, &ct); err != nil {
			t.Fatal(err)
		}
		out[id] = ct
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// outcome is what Receive made of one envelope.
type outcome struct {
	in  *client.Incoming
	err error
}

// receiveUntil reads bob's stream until done accepts a message, and
// returns every outcome by envelope id.
func receiveUntil(t *testing.T, s *client.Stream, done func(*client.Incoming) bool) map[string]outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]outcome{}
	for {
		in, err := s.Receive(ctx)
		var re *client.ReceiveError
		switch {
		case errors.As(err, &re):
			got[re.EnvelopeID] = outcome{err: re}
			continue
		case err != nil:
			t.Fatalf("receive: %v (so far %d envelopes)", err, len(got))
		}
		got[in.EnvelopeID] = outcome{in: in}
		if done(in) {
			if err := s.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			return got
		}
	}
}

// groupChange reports whether in is a group.change notice of op about
// account in group.
func groupChange(in *client.Incoming, group, op, account string) bool {
	b, ok := in.Message.Body.(*kind.GroupChangeBody)
	return ok && in.FromServer && b.GroupID == group && b.Op == op && b.AccountID == account
}

// TestAttackNoticesFromDatabase: an adversary with write access to the
// database (and so read access) puts notices "from kanal" into Bob's
// mailbox: a payment.status paid it made up, a group.change adding
// Mallory to Bob's group, a device.change, an org.change (and one signed
// by the notary but moved to another organisation's staff conversation),
// a text "from kanal" (a kind the
// server never sends; also once signed with the notary), a real notice of Alice's moved to Bob's device, and a real
// notice of Bob's moved to another conversation and replayed in its own.
// Bob's SDK reports each as an error and believes none of it.
func TestAttackNoticesFromDatabase(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
		mallory := signUp(t, srv, "mallory@example.org", false)
		aliceSDK, bobSDK := alice.SDK(t, srv.URL, client.NewMemoryStore()), bob.SDK(t, srv.URL, client.NewMemoryStore())
		for _, c := range []*client.Client{aliceSDK, bobSDK} {
			if _, err := c.Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
		g1, err := aliceSDK.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: bob.AccountID, Role: messaging.GroupMember})
		if err != nil {
			t.Fatal(err)
		}
		g2, err := aliceSDK.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: bob.AccountID, Role: messaging.GroupMember})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []string{g1.GroupID, g2.GroupID} {
			if _, err := bobSDK.AcceptInvitation(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		d := srv.openDB(t)
		// Alice: created, invited bob, added bob; Bob: invited, the member
		// list (alice), added bob — for each group.
		aliceNotices, bobNotices := noticeRows(t, d, alice.DeviceID), noticeRows(t, d, bob.DeviceID)
		if len(aliceNotices) != 6 || len(bobNotices) != 6 {
			t.Fatalf("notices before the attack: alice %d, bob %d, want 6 each", len(aliceNotices), len(bobNotices))
		}
		// Find a notice of each about g1 by its conversation column.
		pick := func(device string) []byte {
			var ct []byte
			if err := d.QueryRow(ctx, `SELECT ciphertext FROM mailbox WHERE device_id = $1 AND conversation = $2 AND sender_device = $3 ORDER BY seq LIMIT 1`,
				device, g1.GroupID, messaging.NoticeSender).Scan(&ct); err != nil {
				t.Fatal(err)
			}
			return ct
		}
		aliceG1, bobG1 := pick(alice.DeviceID), pick(bob.DeviceID)

		conv := messaging.OrgConversation("org_bakery", bob.AccountID)
		attacks := map[string]string{
			"forged-paid":       "a made-up payment.status paid",
			"forged-member":     "a made-up group.change adding Mallory",
			"forged-text":       "a text from kanal, a kind the server never sends",
			"replay-other-dev":  "Alice's real notice, moved to Bob's device",
			"replay-other-conv": "Bob's real notice of one group, moved to another",
			"replay-same":       "Bob's real notice, replayed in its own conversation",
			"signed-text":       "a text from kanal signed by the deployment notary, a kind the server never sends",
			"forged-device":     "a made-up device.change saying Bob's device has a new key",
			"forged-org-erased": "a made-up org.change saying Alice's account was erased",
			"signed-org-moved":  "an org.change signed by the notary, in another organisation's staff conversation",
		}
		staff := messaging.OrgStaffConversation("org_bakery")
		plant(t, d, bob.DeviceID, "forged-org-erased", staff, forgedNotice(t, staff,
			&kind.OrgChangeBody{OrgID: "org_bakery", Op: "erased", AccountID: alice.AccountID}))
		other := messaging.OrgStaffConversation("org_council")
		plant(t, d, bob.DeviceID, "signed-org-moved", other, notarySigned(t, srv, bob.DeviceID, other,
			&kind.OrgChangeBody{OrgID: "org_bakery", Op: "erased", AccountID: alice.AccountID}))
		plant(t, d, bob.DeviceID, "forged-paid", conv, forgedNotice(t, conv, &kind.PaymentStatusBody{RequestID: "pr_forged", Status: "paid", AmountCents: 21400}))
		plant(t, d, bob.DeviceID, "forged-member", g1.GroupID, forgedNotice(t, g1.GroupID,
			&kind.GroupChangeBody{GroupID: g1.GroupID, Op: "added", AccountID: mallory.AccountID, By: alice.AccountID, Role: messaging.GroupMember}))
		self := messaging.DirectConversation(bob.AccountID, bob.AccountID)
		plant(t, d, bob.DeviceID, "forged-device", self, forgedNotice(t, self,
			&kind.DeviceChangeBody{AccountID: bob.AccountID, DeviceID: bob.DeviceID, Op: "key"}))
		plant(t, d, bob.DeviceID, "forged-text", conv, forgedNotice(t, conv, &kind.TextBody{Text: "Your payment failed, pay again at https://evil.example"}))
		plant(t, d, bob.DeviceID, "replay-other-dev", g1.GroupID, aliceG1)
		plant(t, d, bob.DeviceID, "replay-other-conv", g2.GroupID, bobG1)
		plant(t, d, bob.DeviceID, "replay-same", g1.GroupID, bobG1)
		// The allow-list holds even for a notice the notary signed: what a
		// server with a bug, or whoever holds the CA directory, could send.
		plant(t, d, bob.DeviceID, "signed-text", conv, notarySigned(t, srv, bob.DeviceID, conv,
			&kind.TextBody{Text: "Your payment failed, pay again at https://evil.example"}))
		// A real change after the attack: when Bob has its notice, he has
		// read everything planted before it.
		if _, err := aliceSDK.RemoveGroupMember(ctx, g2.GroupID, bob.AccountID); err != nil {
			t.Fatal(err)
		}

		s, err := bobSDK.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got := receiveUntil(t, s, func(in *client.Incoming) bool { return groupChange(in, g2.GroupID, "removed", bob.AccountID) })
		for id, what := range attacks {
			o, ok := got[id]
			switch {
			case !ok:
				t.Errorf("%s (%s) never reached the SDK", id, what)
			case o.in != nil:
				t.Errorf("%s (%s) accepted: %s from server %v in %s", id, what, o.in.Message.Kind, o.in.FromServer, o.in.Conversation)
			case !errors.Is(o.err, client.ErrBadNotice):
				t.Errorf("%s (%s): %v, want ErrBadNotice", id, what, o.err)
			case id == "signed-text" && !strings.Contains(o.err.Error(), `the server does not send "text"`):
				t.Errorf("%s (%s): %v, want refused by the allow-list", id, what, o.err)
			case id == "signed-org-moved" && !strings.Contains(o.err.Error(), "a change of organisation org_bakery in conversation "+other):
				t.Errorf("%s (%s): %v, want refused for its conversation", id, what, o.err)
			}
		}
		for id, o := range got {
			if o.in != nil {
				if b, ok := o.in.Message.Body.(*kind.PaymentStatusBody); ok {
					t.Errorf("envelope %s: the SDK reports payment %s %s", id, b.RequestID, b.Status)
				}
			}
		}
		// The real notices still count: Bob believes exactly Alice and
		// himself are in g1, and Mallory is not.
		members, err := bobSDK.GroupMembers(g1.GroupID)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{alice.AccountID: messaging.GroupAdmin, bob.AccountID: messaging.GroupMember}
		if len(members) != len(want) || members[alice.AccountID] != want[alice.AccountID] || members[bob.AccountID] != want[bob.AccountID] {
			t.Fatalf("Bob believes g1 has %v, want %v", members, want)
		}
		if members, err := bobSDK.GroupMembers(g2.GroupID); err != nil || len(members) != 0 {
			t.Fatalf("Bob, removed from g2, believes it has %v (%v), want nothing", members, err)
		}
	})
}

// TestAttackNoticeFromBus: an adversary who can publish on kanal's NATS
// subjects (a bus writer; reading them is where it learns the subject
// names) sends Bob's node a wake-up carrying a made-up payment.status
// paid for Bob's device, while Bob's stream is open. The SDK does not
// report the payment; if the envelope reaches it at all, it reports it as
// an error.
func TestAttackNoticeFromBus(t *testing.T) {
	natsURL := kanaldtest.NATSURL(t)
	ctx := context.Background()
	srv := &server{Server: kanaldtest.Start(t, kanaldBin, "KANAL_NATS_URL="+natsURL)}
	alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
	aliceSDK, bobSDK := alice.SDK(t, srv.URL, client.NewMemoryStore()), bob.SDK(t, srv.URL, client.NewMemoryStore())
	for _, c := range []*client.Client{aliceSDK, bobSDK} {
		if _, err := c.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	g1, err := aliceSDK.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: bob.AccountID, Role: messaging.GroupMember})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bobSDK.AcceptInvitation(ctx, g1.GroupID); err != nil {
		t.Fatal(err)
	}
	s, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Bob has read his three notices (sequence numbers 1 to 3: invited,
	// the member list, added): the forgery comes next, as number 4.
	receiveUntil(t, s, func(in *client.Incoming) bool { return groupChange(in, g1.GroupID, "added", bob.AccountID) })

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	conv := messaging.OrgConversation("org_bakery", bob.AccountID)
	forged := []mailbox.Envelope{{ID: "forged-paid", Seq: 3, Conversation: conv, Sender: messaging.NoticeSender, Recipient: bob.DeviceID,
		Class: string(kind.ClassMessage), ServerTime: time.Now().UTC(),
		Ciphertext: forgedNotice(t, conv, &kind.PaymentStatusBody{RequestID: "pr_forged", Status: "paid", AmountCents: 21400})}}
	data, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("kanal.mbox.wake."+bob.DeviceID, data); err != nil {
		t.Fatal(err)
	}
	// The bus has the forgery before the real change below is made.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The real change comes as numbers 4 to 6: a node that took the
	// forgery as number 4 still delivers the rest.
	g2, err := aliceSDK.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: bob.AccountID, Role: messaging.GroupMember})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bobSDK.AcceptInvitation(ctx, g2.GroupID); err != nil {
		t.Fatal(err)
	}
	got := receiveUntil(t, s, func(in *client.Incoming) bool { return groupChange(in, g2.GroupID, "added", bob.AccountID) })
	if o, ok := got["forged-paid"]; ok && (o.in != nil || !errors.Is(o.err, client.ErrBadNotice)) {
		t.Fatalf("the forged payment.status from the bus: %+v, want refused as ErrBadNotice", o)
	}
	for id, o := range got {
		if o.in != nil && o.in.Message.Kind == kind.PaymentStatus {
			t.Fatalf("envelope %s: the SDK reports a payment status carried on the bus", id)
		}
	}
}
