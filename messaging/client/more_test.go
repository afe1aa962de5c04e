package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/messaging/client"
)

// TestOrganisationOverKanald: a citizen claims the bundles of an office's
// agents, each with a membership certificate that chains through the
// office's certificate to the CA, and talks to the agent.
func TestOrganisationOverKanald(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		agent := signUp(t, srv, "agent@buergeramt.example", true)
		citizen := signUp(t, srv, "citizen@example.org", false)
		op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
		org, err := op.CreateOrg(ctx, "Bürgeramt Musterstadt", "office")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
			t.Fatal(err)
		}
		if _, err := op.AddMember(ctx, org.OrgID, agent.AccountID, "agent"); err != nil {
			t.Fatal(err)
		}
		agentSDK := agent.SDK(t, srv.URL, client.NewMemoryStore())
		if _, err := agentSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		citizenSDK := citizen.SDK(t, srv.URL, client.NewMemoryStore())
		claim, err := citizenSDK.ClaimOrg(ctx, org.OrgID)
		if err != nil {
			t.Fatal(err)
		}
		if len(claim.Bundles) != 1 || len(claim.Refused) != 0 {
			t.Fatalf("org claim: %+v", claim)
		}
		b := claim.Bundles[0]
		if b.Membership == nil || b.Membership.OrgID != org.OrgID || b.Membership.OrgName != "Bürgeramt Musterstadt" ||
			b.Membership.Role != "agent" || b.Device.DeviceID != agent.DeviceID {
			t.Fatalf("membership: %+v", b.Membership)
		}
		if err := citizenSDK.StartSession(b); err != nil {
			t.Fatal(err)
		}
		if got := receive(t, agentSDK, citizen.DeviceID, send(t, citizenSDK, agent.DeviceID, "Antrag")); got != "Antrag" {
			t.Fatal(got)
		}
		if got := receive(t, citizenSDK, agent.DeviceID, send(t, agentSDK, citizen.DeviceID, "Eingegangen")); got != "Eingegangen" {
			t.Fatal(got)
		}
		if _, err := citizenSDK.ClaimOrg(ctx, "org_unknown"); !idclient.IsProblem(err, "urn:kanal:problem:unknown-recipient") {
			t.Fatalf("unknown org: %v", err)
		}
		if _, err := citizenSDK.ClaimAccount(ctx, "acc_unknown"); !idclient.IsProblem(err, "urn:kanal:problem:unknown-recipient") || idclient.StatusOf(err) != 404 {
			t.Fatalf("unknown account: %v", err)
		}
	})
}

// TestSimultaneousStart: both devices start a session before either has
// received anything; every message is read and they converge on one
// session.
func TestSimultaneousStart(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	a, b := signUp(t, srv, "a@example.org", false), signUp(t, srv, "b@example.org", false)
	sa, sb := a.SDK(t, srv.URL, client.NewMemoryStore()), b.SDK(t, srv.URL, client.NewMemoryStore())
	for _, s := range []*client.Client{sa, sb} {
		if _, err := s.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	start := func(s *client.Client, account string) {
		c, err := s.ClaimAccount(ctx, account)
		if err != nil || len(c.Bundles) != 1 {
			t.Fatalf("claim: %+v %v", c, err)
		}
		if err := s.StartSession(c.Bundles[0]); err != nil {
			t.Fatal(err)
		}
	}
	start(sa, b.AccountID)
	start(sb, a.AccountID)
	fromA, fromB := send(t, sa, b.DeviceID, "a1"), send(t, sb, a.DeviceID, "b1")
	fromA2, fromB2 := send(t, sa, b.DeviceID, "a2"), send(t, sb, a.DeviceID, "b2")
	if got := receive(t, sb, a.DeviceID, fromA); got != "a1" {
		t.Fatal(got)
	}
	if got := receive(t, sa, b.DeviceID, fromB); got != "b1" {
		t.Fatal(got)
	}
	if got := receive(t, sa, b.DeviceID, fromB2); got != "b2" {
		t.Fatal(got)
	}
	if got := receive(t, sb, a.DeviceID, fromA2); got != "a2" {
		t.Fatal(got)
	}
	for i := range 3 {
		if got := receive(t, sb, a.DeviceID, send(t, sa, b.DeviceID, fmt.Sprint("x", i))); got != fmt.Sprint("x", i) {
			t.Fatal(got)
		}
		if got := receive(t, sa, b.DeviceID, send(t, sb, a.DeviceID, fmt.Sprint("y", i))); got != fmt.Sprint("y", i) {
			t.Fatal(got)
		}
	}
}

// TestKeystoreStorePersists: the identity, prekeys and a session survive
// closing and reopening the encrypted key store.
func TestKeystoreStorePersists(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	a, b := signUp(t, srv, "a@example.org", false), signUp(t, srv, "b@example.org", false)
	path, pass := filepath.Join(t.TempDir(), "keys"), []byte("correct horse battery staple")
	ks, err := keystore.Create(path, pass)
	if err != nil {
		t.Fatal(err)
	}
	sb := b.SDK(t, srv.URL, client.NewKeystoreStore(ks))
	if _, err := sb.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	sa := a.SDK(t, srv.URL, client.NewMemoryStore())
	if _, err := sa.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := sa.ClaimAccount(ctx, b.AccountID)
	if err != nil || len(c.Bundles) != 1 {
		t.Fatalf("claim: %+v %v", c, err)
	}
	if err := sa.StartSession(c.Bundles[0]); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, sb, a.DeviceID, send(t, sa, b.DeviceID, "one")); got != "one" {
		t.Fatal(got)
	}

	// Reopen: a new SDK over the same file continues the session.
	ks2, err := keystore.Open(path, pass)
	if err != nil {
		t.Fatal(err)
	}
	sb2 := b.SDK(t, srv.URL, client.NewKeystoreStore(ks2))
	if got := receive(t, sb2, a.DeviceID, send(t, sa, b.DeviceID, "two")); got != "two" {
		t.Fatal(got)
	}
	if got := receive(t, sa, b.DeviceID, send(t, sb2, a.DeviceID, "three")); got != "three" {
		t.Fatal(got)
	}
	st, err := sb2.Replenish(ctx)
	if err != nil || !st.Published || st.OneTimePrekeys != client.PrekeyBatch-1 {
		t.Fatalf("replenish after reopening: %+v %v", st, err)
	}
}

// TestRotateSignedPrekey: after a rotation new bundles carry the new keys,
// and a session started from the old bundle still opens.
func TestRotateSignedPrekey(t *testing.T) {
	ctx := context.Background()
	srv := startKanald(t, false)
	a, b := signUp(t, srv, "a@example.org", false), signUp(t, srv, "b@example.org", false)
	sa, sb := a.SDK(t, srv.URL, client.NewMemoryStore()), b.SDK(t, srv.URL, client.NewMemoryStore())
	if _, err := sb.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	old, err := sa.ClaimAccount(ctx, b.AccountID)
	if err != nil || len(old.Bundles) != 1 {
		t.Fatalf("claim: %+v %v", old, err)
	}
	st, err := sb.RotateSignedPrekey(ctx)
	if err != nil || st.SignedPrekeyID != 2 || st.LastResortID == 1 || st.OneTimePrekeys != client.PrekeyBatch-1 {
		t.Fatalf("rotate: %+v %v", st, err)
	}
	fresh, err := sa.ClaimAccount(ctx, b.AccountID)
	if err != nil || len(fresh.Bundles) != 1 || fresh.Bundles[0].Prekeys.SignedPrekey.ID() != 2 {
		t.Fatalf("claim after rotation: %+v %v", fresh, err)
	}
	if err := sa.StartSession(old.Bundles[0]); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, sb, a.DeviceID, send(t, sa, b.DeviceID, "late")); got != "late" {
		t.Fatal(got)
	}
}
