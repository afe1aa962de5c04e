package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// profileOf is the display name c knows for account, "" for none.
func profileOf(t *testing.T, c *client.Client, account string) string {
	t.Helper()
	p, err := c.Profile(account)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil {
		return ""
	}
	return p.DisplayName
}

// TestProfiles: a name set on one device reaches, end to end, the people
// the account talks to — in a direct chat, as an office's agent, in a
// group — and the account's own other device; the server's database never
// holds it in clear.
func TestProfiles(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		citizen, phone := twoDevices(t, srv, "erika@example.org")
		agent := signUp(t, srv, "schmidt@worms.example", false)
		friend := signUp(t, srv, "jonas@example.org", true)
		op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
		org, err := op.CreateOrg(ctx, "Bürgeramt Worms", "office")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
			t.Fatal(err)
		}
		if _, err := op.AddMember(ctx, org.OrgID, agent.AccountID, "agent"); err != nil {
			t.Fatal(err)
		}
		citizenSDK := citizen.SDK(t, srv.URL, client.NewMemoryStore())
		agentSDK := agent.SDK(t, srv.URL, client.NewMemoryStore())
		friendSDK := friend.SDK(t, srv.URL, client.NewMemoryStore())
		for _, s := range []*client.Client{citizenSDK, agentSDK, friendSDK} {
			if _, err := s.Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// The citizen's second device.
		phoneSDK := phone.SDK(t, srv.URL, client.NewMemoryStore())
		if _, err := phoneSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}

		// Names are normalised when set.
		p, err := citizenSDK.SetProfile("  Erika   Mustermann ", &kind.ProfileAvatar{MIME: "image/png", Data: "iVBORw0KGgo="})
		if err != nil || p.DisplayName != "Erika Mustermann" || p.Version != 1 || p.AccountID != citizen.AccountID {
			t.Fatalf("SetProfile: %+v, %v", p, err)
		}
		if _, err := agentSDK.SetProfile("Frau Schmidt", nil); err != nil {
			t.Fatal(err)
		}

		// The citizen writes to the office: the agent learns her name
		// with her first message, her phone learns it too.
		if _, err := citizenSDK.Send(ctx, client.Peer{OrgID: org.OrgID}, textMsg(t, "Guten Tag, mein Antrag?")); err != nil {
			t.Fatal(err)
		}
		if texts, bad := inbox(t, agentSDK); len(bad) != 0 || len(texts) != 1 {
			t.Fatalf("agent: %v %v", texts, bad)
		}
		if got := profileOf(t, agentSDK, citizen.AccountID); got != "Erika Mustermann" {
			t.Fatalf("agent knows the citizen as %q", got)
		}
		got, err := agentSDK.Profile(citizen.AccountID)
		if err != nil || got.Avatar == nil || got.Avatar.Data != "iVBORw0KGgo=" {
			t.Fatalf("avatar: %+v %v", got, err)
		}
		if _, bad := inbox(t, phoneSDK); len(bad) != 0 {
			t.Fatal(bad)
		}
		if own, err := phoneSDK.OwnProfile(); err != nil || own == nil || own.DisplayName != "Erika Mustermann" {
			t.Fatalf("the citizen's phone: %+v %v", own, err)
		}

		// The agent answers as the office: the citizen learns the agent's
		// name, and the office comes from the verified membership.
		if _, err := agentSDK.Send(ctx, client.Peer{OrgID: org.OrgID, AccountID: citizen.AccountID}, textMsg(t, "Ist eingegangen.")); err != nil {
			t.Fatal(err)
		}
		st, err := citizenSDK.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		msgs, bad, err := st.Backlog(ctx)
		st.Close()
		if err != nil || len(bad) != 0 {
			t.Fatal(err, bad)
		}
		var answer *client.Incoming
		for _, in := range msgs {
			if in.Message.Kind == kind.Text {
				answer = in
			}
		}
		if answer == nil || answer.Org == nil || answer.Org.OrgName != "Bürgeramt Worms" ||
			profileOf(t, citizenSDK, answer.SenderAccount) != "Frau Schmidt" {
			t.Fatalf("the citizen sees %+v, agent named %q", answer, profileOf(t, citizenSDK, agent.AccountID))
		}

		// A second message does not send the profile again.
		if _, err := citizenSDK.Send(ctx, client.Peer{OrgID: org.OrgID}, textMsg(t, "Danke!")); err != nil {
			t.Fatal(err)
		}
		st, err = agentSDK.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _, err = st.Backlog(ctx)
		st.Close()
		if err != nil || len(msgs) != 1 || msgs[0].Message.Kind != kind.Text {
			t.Fatalf("second message: %d messages, %v", len(msgs), err)
		}

		// A group: its members learn each other's names.
		if _, err := friendSDK.SetProfile("Jonas", nil); err != nil {
			t.Fatal(err)
		}
		grp, err := citizenSDK.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: friend.AccountID, Role: messaging.GroupMember})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := friendSDK.AcceptInvitation(ctx, grp.GroupID); err != nil {
			t.Fatal(err)
		}
		inbox(t, citizenSDK)
		inbox(t, friendSDK)
		waitMembers(t, citizenSDK, grp.GroupID, citizen.AccountID, friend.AccountID)
		if _, err := citizenSDK.Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "Hallo Gruppe")); err != nil {
			t.Fatal(err)
		}
		inbox(t, friendSDK)
		waitMembers(t, friendSDK, grp.GroupID, citizen.AccountID, friend.AccountID)
		if _, err := friendSDK.Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "Hallo Erika")); err != nil {
			t.Fatal(err)
		}
		inbox(t, citizenSDK)
		if a, b := profileOf(t, friendSDK, citizen.AccountID), profileOf(t, citizenSDK, friend.AccountID); a != "Erika Mustermann" || b != "Jonas" {
			t.Fatalf("in the group: %q, %q", a, b)
		}

		// The server's database never holds a name.
		d := srv.openDB(t)
		searchTables(t, d, "Mustermann")
		searchTables(t, d, "Frau Schmidt")
	})
}

// TestStaleProfileCopy: a delayed or replayed older copy of a profile
// does not undo a newer one, whatever order they arrive in.
func TestStaleProfileCopy(t *testing.T) {
	ctx := context.Background()
	_, alice, bob, aliceSDK, bobSDK := twoPublished(t)
	to := client.Peer{AccountID: bob.AccountID}
	v1, err := aliceSDK.SetProfile("Alice Alt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := aliceSDK.ShareProfile(ctx, to); err != nil {
		t.Fatal(err)
	}
	v2, err := aliceSDK.SetProfile("Alice Neu", nil)
	if err != nil || v2.Version != 2 {
		t.Fatal(v2, err)
	}
	if err := aliceSDK.ShareProfile(ctx, to); err != nil {
		t.Fatal(err)
	}
	// The old copy once more, after the new one.
	if err := aliceSDK.SendRawForTest(ctx, to, "replay1", rawProfile(t, v1)); err != nil {
		t.Fatal(err)
	}
	if _, bad := inbox(t, bobSDK); len(bad) != 0 {
		t.Fatal(bad)
	}
	if got := profileOf(t, bobSDK, alice.AccountID); got != "Alice Neu" {
		t.Fatalf("bob knows alice as %q after a stale copy", got)
	}
	// The same version again with other content, and the newest arriving
	// after an old one in a later batch: still the newest.
	same := *v2
	same.DisplayName = "Zzz"
	if err := aliceSDK.SendRawForTest(ctx, to, "replay2", rawProfile(t, &same)); err != nil {
		t.Fatal(err)
	}
	if err := aliceSDK.SendRawForTest(ctx, to, "replay3", rawProfile(t, v1)); err != nil {
		t.Fatal(err)
	}
	inbox(t, bobSDK)
	if got := profileOf(t, bobSDK, alice.AccountID); got != "Alice Neu" {
		t.Fatalf("bob knows alice as %q", got)
	}
	// SetProfile counts on: the next version is 3.
	if v3, err := aliceSDK.SetProfile("Alice", nil); err != nil || v3.Version != 3 {
		t.Fatal(v3, err)
	}
}

// TestAttackProfiles: nobody can give another account a name, a profile
// over the limits is refused on both sides, and nobody can name
// themselves as an office's agent is shown.
func TestAttackProfiles(t *testing.T) {
	ctx := context.Background()
	srv, alice, bob, aliceSDK, bobSDK := twoPublished(t)
	mallory := signUp(t, srv, "mallory@example.org", true)
	mallorySDK := mallory.SDK(t, srv.URL, client.NewMemoryStore())
	if _, err := mallorySDK.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	toBob := client.Peer{AccountID: bob.AccountID}
	if _, err := aliceSDK.SetProfile("Alice", nil); err != nil {
		t.Fatal(err)
	}
	if err := aliceSDK.ShareProfile(ctx, toBob); err != nil {
		t.Fatal(err)
	}
	inbox(t, bobSDK)

	// Impersonation: mallory's device sends a valid profile that names
	// alice's account.
	fake := &kind.ProfileBody{AccountID: alice.AccountID, Version: 99, UpdatedAt: time.Now().UTC(), DisplayName: "Alice (neue Nummer)"}
	if err := mallorySDK.SendRawForTest(ctx, toBob, "imp1", rawProfile(t, fake)); err != nil {
		t.Fatal(err)
	}
	_, bad := inbox(t, bobSDK)
	if len(bad) != 1 || !errors.Is(bad[0], client.ErrUntrusted) {
		t.Fatalf("impersonation: %v", bad)
	}
	if got, m := profileOf(t, bobSDK, alice.AccountID), profileOf(t, bobSDK, mallory.AccountID); got != "Alice" || m != "" {
		t.Fatalf("after impersonation bob knows alice as %q, mallory as %q", got, m)
	}

	// Oversize: the SDK will not set it, and a modified client's copy is
	// refused on arrival.
	big := &kind.ProfileAvatar{MIME: "image/png", Data: base64.StdEncoding.EncodeToString(make([]byte, kind.MaxAvatarInline+1))}
	if _, err := aliceSDK.SetProfile("Alice", big); !errors.Is(err, client.ErrProfile) {
		t.Fatalf("oversize avatar set: %v", err)
	}
	long := strings.Repeat("A", kind.MaxDisplayName+1)
	if _, err := aliceSDK.SetProfile(long, nil); !errors.Is(err, client.ErrProfile) {
		t.Fatalf("long name set: %v", err)
	}
	over := &kind.ProfileBody{AccountID: alice.AccountID, Version: 5, UpdatedAt: time.Now().UTC(), DisplayName: "Alice", Avatar: big}
	over2 := &kind.ProfileBody{AccountID: alice.AccountID, Version: 6, UpdatedAt: time.Now().UTC(), DisplayName: long}
	for i, p := range []*kind.ProfileBody{over, over2} {
		if err := aliceSDK.SendRawForTest(ctx, toBob, "big"+string(rune('0'+i)), rawProfile(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	_, bad = inbox(t, bobSDK)
	if len(bad) != 2 || !errors.Is(bad[0], kind.ErrInvalid) || !errors.Is(bad[1], kind.ErrInvalid) {
		t.Fatalf("oversize: %v", bad)
	}
	if got := profileOf(t, bobSDK, alice.AccountID); got != "Alice" {
		t.Fatalf("after oversize copies bob knows alice as %q", got)
	}

	// A different account's name claim: mallory calls herself what an
	// agent of an office is shown as. The SDK refuses it; sent anyway, it
	// is refused on arrival. Mallory may call herself "Alice" — but that
	// is mallory's account's name, and alice's stays alice's.
	for _, claim := range []string{"Frau Schmidt · Bürgeramt Worms", "Frau Schmidt • Bürgeramt Worms", "Bürgeramt\u202e Worms"} {
		if _, err := mallorySDK.SetProfile(claim, nil); !errors.Is(err, client.ErrProfile) {
			t.Fatalf("SetProfile(%q): %v", claim, err)
		}
	}
	forged := &kind.ProfileBody{AccountID: mallory.AccountID, Version: 1, UpdatedAt: time.Now().UTC(), DisplayName: "Frau Schmidt · Bürgeramt Worms"}
	if err := mallorySDK.SendRawForTest(ctx, toBob, "claim1", rawProfile(t, forged)); err != nil {
		t.Fatal(err)
	}
	if _, bad = inbox(t, bobSDK); len(bad) != 1 || !errors.Is(bad[0], kind.ErrInvalid) {
		t.Fatalf("agent-name claim: %v", bad)
	}
	if _, err := mallorySDK.SetProfile("Alice", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := mallorySDK.Send(ctx, toBob, textMsg(t, "Hallo, hier Alice")); err != nil {
		t.Fatal(err)
	}
	inbox(t, bobSDK)
	if got, m := profileOf(t, bobSDK, alice.AccountID), profileOf(t, bobSDK, mallory.AccountID); got != "Alice" || m != "Alice" {
		t.Fatalf("bob knows alice as %q, mallory as %q", got, m)
	}
}

// rawProfile is p encoded as a message without validation, as a modified
// client would send it.
func rawProfile(t *testing.T, p *kind.ProfileBody) []byte {
	t.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"v":1,"kind":"profile","id":"` + client.NewMessageID() + `","sent_at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","body":` + string(body) + `}`)
}

// twoDevices signs email up with a password and enrols two devices.
func twoDevices(t *testing.T, srv *server, email string) (*user, *user) {
	t.Helper()
	ic, v := srv.Verify(t, email)
	enroller := ic.WithToken(v.SetupToken)
	if err := enroller.SetPassword(context.Background(), password, ""); err != nil {
		t.Fatal(err)
	}
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	first := srv.Enrol(t, v.AccountID, enroller, "laptop", k1, password)
	return first, srv.Enrol(t, v.AccountID, first.Identity, "phone", k2, password)
}
