package client_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging/client"
)

// TestBroadcastOverKanald: a council agent announces on one node; the
// follower's two devices, connected to the other node (PostgreSQL + NATS
// when available, else one SQLite node), show it as the council's
// verified announcement; a device that connects later reads it from its
// mailbox.
//
// The attack (TestAttack…): a database writer rewrites the stored
// announcement's text. The follower's device refuses it — a ReceiveError,
// never shown — because the agent's signature no longer verifies.
func TestAttackBroadcastRewrittenInDatabase(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { broadcastRewritten(t, startDeployment(t, false)) })
	t.Run("postgres+nats, two nodes", func(t *testing.T) { broadcastRewritten(t, startDeployment(t, true)) })
}

func broadcastRewritten(t *testing.T, d *deployment) {
	ctx := context.Background()
	clerk := newAccount(t, d, "clerk@rat.example", 1)[0]
	anna := newAccount(t, d, "anna@example.org", 3)
	op := idclient.New(d.node(0).URL, nil).WithToken(d.node(0).OperatorToken(t))
	org, err := op.CreateOrg(ctx, "Rat der Stadt Musterstadt", "council")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	if _, err := op.AddMember(ctx, org.OrgID, clerk.AccountID, "agent"); err != nil {
		t.Fatal(err)
	}
	clerkP := newPhone(t, "clerk", clerk, d.node(0).URL, client.NewMemoryStore())
	a1 := newPhone(t, "anna1", anna[0], d.node(1).URL, client.NewMemoryStore())
	a2 := newPhone(t, "anna2", anna[1], d.node(1).URL, client.NewMemoryStore())
	a3 := newPhone(t, "anna3", anna[2], d.node(1).URL, client.NewMemoryStore())
	if _, err := a1.sdk.Follow(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	if l, err := a2.sdk.Following(ctx); err != nil || len(l.Following) != 1 || l.Following[0].OrgID != org.OrgID {
		t.Fatalf("following: %+v %v", l, err)
	}
	for _, p := range []*phone{a1, a2} {
		p.connect(ctx)
		defer p.disconnect()
	}
	// Anna's streams are registered before the announcement goes out.
	time.Sleep(200 * time.Millisecond)
	r, err := clerkP.sdk.Announce(ctx, org.OrgID, "notice1", "Wasserleitung: Am Montag 8–12 Uhr kein Wasser in der Altstadt.")
	if err != nil {
		t.Fatal(err)
	}
	if r.Devices != 3 {
		t.Fatalf("stored for %d devices, want anna's 3", r.Devices)
	}
	official := func(in *client.Incoming) bool {
		return in.Announcement && in.Org != nil && in.Org.OrgID == org.OrgID && in.SenderAccount == clerk.AccountID
	}
	for _, p := range []*phone{a1, a2} {
		if got := p.waitTexts(1, official); got[0] != "Wasserleitung: Am Montag 8–12 Uhr kein Wasser in der Altstadt." {
			t.Fatalf("%s: %q", p.name, got)
		}
	}
	// No receipts go back for an announcement.
	if a1.sdk.WantsReceipt(a1.got[0]) {
		t.Fatal("the SDK would send a receipt for an announcement")
	}

	// The attack: before anna's third device connects, a database
	// writer changes the stored text, keeping the signature.
	dbh := d.open(t)
	var body []byte
	if err := dbh.QueryRow(ctx, `SELECT body FROM mailbox_shared WHERE id = $1`, r.PostID).Scan(&body); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(body), ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "kein Wasser", "Evakuierung", 1)))
	if _, err := dbh.Exec(ctx, `UPDATE mailbox_shared SET body = $1 WHERE id = $2`, []byte(strings.Join(parts, ".")), r.PostID); err != nil {
		t.Fatal(err)
	}
	a3.connect(ctx)
	defer a3.disconnect()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a3.mu.Lock()
		errs, got := len(a3.errs), len(a3.got)
		a3.mu.Unlock()
		if got > 0 {
			t.Fatalf("anna's third device showed the rewritten announcement: %+v", a3.got[0])
		}
		if errs > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rewritten announcement never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Unfollowing: the next announcement reaches nobody.
	if err := a1.sdk.Unfollow(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	if r, err := clerkP.sdk.Announce(ctx, org.OrgID, "notice2", "Zweite"); err != nil || r.Devices != 0 {
		t.Fatalf("after unfollowing: %+v %v", r, err)
	}
}
