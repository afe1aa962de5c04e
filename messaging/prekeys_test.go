package messaging_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging"
)

var sets = []db.Migrations{messaging.Migrations()}

// publish publishes d's keys and a batch of n X25519 and m ML-KEM one-time
// prekeys.
func publish(t *testing.T, s *messaging.Service, d *device, n, m int) *messaging.PrekeyStatus {
	t.Helper()
	ctx := context.Background()
	st, err := s.Publish(ctx, d.caller(), d.publishRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if n+m == 0 {
		return st
	}
	if st, err = s.AddPrekeys(ctx, d.caller(), d.batch(t, 100, n, m)); err != nil {
		t.Fatal(err)
	}
	return st
}

// checkBundle verifies a claimed bundle as a client would: the device
// certificate chains to the CA and names the device, the binding verifies
// against its key, and the bundle's signatures against the identity.
func checkBundle(t *testing.T, dir *fakeDir, b *messaging.ClaimedBundle, want *device) {
	t.Helper()
	blk, _ := pem.Decode([]byte(b.Certificate))
	if blk == nil {
		t.Fatal("no certificate")
	}
	di, err := ca.VerifyDevice(blk.Bytes, dir.ca.Pool(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if di.DeviceID != b.Bundle.DeviceID || di.AccountID != b.AccountID || b.Bundle.DeviceID != want.id {
		t.Fatalf("bundle for %s/%s, certificate for %s/%s, want %s", b.AccountID, b.Bundle.DeviceID, di.AccountID, di.DeviceID, want.id)
	}
	binding, err := base64.RawURLEncoding.DecodeString(b.IdentityBinding)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.VerifyIdentity(di.PublicKey, b.Bundle.Identity, di.DeviceID, binding); err != nil {
		t.Fatal(err)
	}
	if err := b.Bundle.Verify(); err != nil {
		t.Fatal(err)
	}
	if !b.Bundle.Identity.Equal(want.identity.Public()) || !b.Bundle.SignedPrekey.Equal(want.spk.Public()) {
		t.Fatal("bundle carries other keys than the device published")
	}
}

func TestPublishAndClaim(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := testNow
		dir := newFakeDir(t)
		s := newService(t, d, dir, &now)
		bob1 := dir.enroll(t, "bob", "bob-phone", true)
		bob2 := dir.enroll(t, "bob", "bob-laptop", false)
		bob3 := dir.enroll(t, "bob", "bob-tablet", false) // never publishes
		alice := dir.enroll(t, "alice", "alice-phone", false)

		st := publish(t, s, bob1, 2, 1)
		if !st.Published || st.OneTimePrekeys != 2 || st.PQPrekeys != 1 || !st.Low || st.SignedPrekeyID != 1 || st.LastResortID != 1 {
			t.Fatalf("status after upload: %+v", st)
		}
		publish(t, s, bob2, 0, 0)
		if st, _ := s.Status(ctx, bob3.id); st.Published || !st.Low {
			t.Fatalf("unpublished device status: %+v", st)
		}

		// Claims take the lowest ids first, each once, then fall back.
		wantOPK := []uint32{100, 101}
		for i := range 3 {
			resp, err := s.Claim(ctx, alice.caller(), &messaging.ClaimRequest{AccountID: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Bundles) != 2 || len(resp.Unpublished) != 1 || resp.Unpublished[0] != bob3.id {
				t.Fatalf("claim %d: %d bundles, unpublished %v", i, len(resp.Bundles), resp.Unpublished)
			}
			laptop, phone := resp.Bundles[0], resp.Bundles[1] // device id order
			checkBundle(t, dir, &phone, bob1)
			checkBundle(t, dir, &laptop, bob2)
			if laptop.Bundle.HasOneTimePrekey() || !laptop.Bundle.PQPrekey.LastResort() {
				t.Fatal("a device without one-time keys must get the last-resort key and no OPK")
			}
			if i < 2 {
				if !phone.Bundle.HasOneTimePrekey() || phone.Bundle.OneTimePrekey.ID() != wantOPK[i] {
					t.Fatalf("claim %d: OPK %v", i, phone.Bundle.OneTimePrekey.ID())
				}
			} else if phone.Bundle.HasOneTimePrekey() {
				t.Fatal("OPK handed out twice")
			}
			if pqOneTime := i == 0; phone.Bundle.PQPrekey.LastResort() == pqOneTime {
				t.Fatalf("claim %d: PQ last resort %v", i, phone.Bundle.PQPrekey.LastResort())
			}
		}
		if st, _ := s.Status(ctx, bob1.id); st.OneTimePrekeys != 0 || st.PQPrekeys != 0 || !st.Low {
			t.Fatalf("status after claims: %+v", st)
		}

		// Claiming one's own account skips the caller's device.
		resp, err := s.Claim(ctx, bob1.caller(), &messaging.ClaimRequest{AccountID: "bob"})
		if err != nil || len(resp.Bundles) != 1 || resp.Bundles[0].Bundle.DeviceID != bob2.id {
			t.Fatalf("own account claim: %+v %v", resp, err)
		}
		// An unknown account (or one without an active device) is not
		// found, as an unknown organisation is — not an empty claim.
		var p *web.Problem
		if resp, err := s.Claim(ctx, alice.caller(), &messaging.ClaimRequest{AccountID: "nobody"}); !errors.As(err, &p) ||
			p.Status != http.StatusNotFound || p.Type != messaging.TypeUnknownRecipient {
			t.Fatalf("unknown account: %+v %v", resp, err)
		}

		// A new identity drops the one-time keys of the old one.
		publish(t, s, bob1, 5, 5)
		bob1.identity, _ = keys.GenerateIdentity(nil)
		if st, err := s.Publish(ctx, bob1.caller(), bob1.publishRequest(t)); err != nil || st.OneTimePrekeys != 0 || st.PQPrekeys != 0 {
			t.Fatalf("after identity change: %+v %v", st, err)
		}
		// The same identity keeps them.
		s.AddPrekeys(ctx, bob1.caller(), bob1.batch(t, 100, 3, 3))
		if st, err := s.Publish(ctx, bob1.caller(), bob1.publishRequest(t)); err != nil || st.OneTimePrekeys != 3 || st.PQPrekeys != 3 {
			t.Fatalf("after republish: %+v %v", st, err)
		}
	})
}

func TestClaimOrganisation(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := testNow
		dir := newFakeDir(t)
		s := newService(t, d, dir, &now)
		a1 := dir.enroll(t, "agent1", "agent1-pc", true)
		a2 := dir.enroll(t, "agent2", "agent2-pc", false)
		dir.enroll(t, "clerk", "clerk-pc", false) // a member's device that is not an agent's
		citizen := dir.enroll(t, "citizen", "citizen-phone", false)
		dir.addOrg(t, "buergeramt", a1, a2)
		publish(t, s, a1, 1, 1)
		publish(t, s, a2, 1, 1)

		resp, err := s.Claim(ctx, citizen.caller(), &messaging.ClaimRequest{OrgID: "buergeramt"})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Bundles) != 2 || resp.OrgCertificate == "" {
			t.Fatalf("org claim: %+v", resp)
		}
		org, _ := pem.Decode([]byte(resp.OrgCertificate))
		for i, want := range []*device{a1, a2} {
			b := resp.Bundles[i]
			checkBundle(t, dir, &b, want)
			m, _ := pem.Decode([]byte(b.MembershipCertificate))
			if m == nil {
				t.Fatal("no membership certificate")
			}
			ms, err := ca.VerifyMembership(m.Bytes, org.Bytes, dir.ca.Pool(), testNow)
			if err != nil || ms.DeviceID != want.id || ms.OrgID != "buergeramt" {
				t.Fatalf("membership: %+v %v", ms, err)
			}
		}
		if _, err := s.Claim(ctx, citizen.caller(), &messaging.ClaimRequest{OrgID: "nope"}); !errors.Is(err, messaging.ErrUnknownOrg) {
			t.Fatalf("unknown org: %v", err)
		}
	})
}

// TestConcurrentClaims races 50 claimers, on as many goroutines and
// connections, for 20 one-time X25519 and 10 one-time ML-KEM prekeys.
func TestConcurrentClaims(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := testNow
		dir := newFakeDir(t)
		bob := dir.enroll(t, "bob", "bob-phone", false)
		publish(t, newService(t, d, dir, &now), bob, 20, 10)

		const claimers = 50
		type result struct {
			opk     uint32
			hasOPK  bool
			pq      uint32
			lastRes bool
			err     error
		}
		results := make([]result, claimers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range claimers {
			// A service per claimer, as if each were on its own node.
			s := newService(t, d, dir, &now)
			wg.Go(func() {
				<-start
				resp, err := s.Claim(ctx, messaging.Caller{AccountID: fmt.Sprintf("c%d", i), DeviceID: fmt.Sprintf("c%d-dev", i)},
					&messaging.ClaimRequest{AccountID: "bob"})
				if err != nil {
					results[i].err = err
					return
				}
				if len(resp.Bundles) != 1 {
					results[i].err = fmt.Errorf("%d bundles", len(resp.Bundles))
					return
				}
				b := resp.Bundles[0].Bundle
				if err := b.Verify(); err != nil {
					results[i].err = err
					return
				}
				results[i] = result{opk: b.OneTimePrekey.ID(), hasOPK: b.HasOneTimePrekey(), pq: b.PQPrekey.ID(), lastRes: b.PQPrekey.LastResort()}
			})
		}
		close(start)
		wg.Wait()

		opks, pqs := map[uint32]int{}, map[uint32]int{}
		var withoutOPK, lastResort int
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("claimer %d: %v", i, r.err)
			}
			if r.hasOPK {
				opks[r.opk]++
			} else {
				withoutOPK++
			}
			if r.lastRes {
				lastResort++
				if r.pq != bob.lastResort.ID() {
					t.Fatalf("last-resort id %d", r.pq)
				}
			} else {
				pqs[r.pq]++
			}
		}
		for id, n := range opks {
			if n != 1 {
				t.Errorf("OPK %d handed out %d times", id, n)
			}
		}
		for id, n := range pqs {
			if n != 1 {
				t.Errorf("PQ one-time prekey %d handed out %d times", id, n)
			}
		}
		if len(opks) != 20 || withoutOPK != 30 || len(pqs) != 10 || lastResort != 40 {
			t.Fatalf("%d distinct OPKs, %d bundles without; %d one-time PQ, %d last resort", len(opks), withoutOPK, len(pqs), lastResort)
		}
		if st, _ := newService(t, d, dir, &now).Status(ctx, bob.id); st.OneTimePrekeys != 0 || st.PQPrekeys != 0 {
			t.Fatalf("left: %+v", st)
		}
	})
}

func TestRevokedDeviceNotServed(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := testNow
		dir := newFakeDir(t)
		s := newService(t, d, dir, &now)
		alice := dir.enroll(t, "alice", "alice-phone", false)
		bob1 := dir.enroll(t, "bob", "bob-phone", false)
		bob2 := dir.enroll(t, "bob", "bob-old", false)
		agent := dir.enroll(t, "agent", "agent-pc", false)
		dir.addOrg(t, "amt", agent)
		for _, dv := range []*device{bob1, bob2, agent} {
			publish(t, s, dv, 3, 3)
		}

		// identity revokes bob-old and runs the hook in its transaction.
		dir.revoke(bob2.id)
		if err := d.Tx(ctx, func(tx *sql.Tx) error { return messaging.DeletePrekeys(ctx, tx, bob2.id) }); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.Status(ctx, bob2.id); st.Published || st.OneTimePrekeys != 0 || st.PQPrekeys != 0 {
			t.Fatalf("revoked device still has keys: %+v", st)
		}
		resp, err := s.Claim(ctx, alice.caller(), &messaging.ClaimRequest{AccountID: "bob"})
		if err != nil || len(resp.Bundles) != 1 || resp.Bundles[0].Bundle.DeviceID != bob1.id || len(resp.Unpublished) != 0 {
			t.Fatalf("claim after revocation: %+v %v", resp, err)
		}
		// A revoked device may not publish again.
		if _, err := s.Publish(ctx, bob2.caller(), bob2.publishRequest(t)); !errors.Is(err, messaging.ErrUnknownDevice) {
			t.Fatalf("revoked device publishes: %v", err)
		}

		// Even without the hook, the directory's view keeps a revoked
		// device's stored bundle from being served.
		dir.revoke(agent.id)
		resp, err = s.Claim(ctx, alice.caller(), &messaging.ClaimRequest{OrgID: "amt"})
		if err != nil || len(resp.Bundles) != 0 {
			t.Fatalf("revoked agent served: %+v %v", resp, err)
		}
	})
}

func TestClaimRateLimit(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := testNow.Add(10 * time.Second)
		dir := newFakeDir(t)
		node1, node2 := newService(t, d, dir, &now), newService(t, d, dir, &now)
		bob := dir.enroll(t, "bob", "bob-phone", false)
		publish(t, node1, bob, 0, 0)
		alice := messaging.Caller{AccountID: "alice", DeviceID: "alice-phone"}
		carol := messaging.Caller{AccountID: "carol", DeviceID: "carol-phone"}
		req := &messaging.ClaimRequest{AccountID: "bob"}

		// The limit holds across nodes: claims alternate between two.
		for i := range messaging.MaxClaimsPerWindow {
			if _, err := []*messaging.Service{node1, node2}[i%2].Claim(ctx, alice, req); err != nil {
				t.Fatalf("claim %d: %v", i, err)
			}
		}
		_, err := node2.Claim(ctx, alice, req)
		var rl *messaging.RateLimitError
		if !errors.As(err, &rl) || !errors.Is(err, messaging.ErrRateLimited) || rl.RetryAfter != 50*time.Second {
			t.Fatalf("over the limit: %v", err)
		}
		// Other accounts have their own counters.
		if _, err := node1.Claim(ctx, carol, req); err != nil {
			t.Fatal(err)
		}
		// The next window starts afresh.
		now = now.Add(messaging.ClaimWindow)
		if _, err := node1.Claim(ctx, alice, req); err != nil {
			t.Fatalf("next window: %v", err)
		}
	})
}

func TestBadInputStoresNothing(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		now := testNow
		dir := newFakeDir(t)
		s := newService(t, d, dir, &now)
		dev := dir.enroll(t, "bob", "bob-phone", true)
		other := dir.enroll(t, "eve", "eve-phone", false)

		// Publishing: every case fails and leaves the device unpublished.
		otherSPK, _ := keys.GenerateSignedPrekey(nil, 1)
		publishCases := []struct {
			name   string
			modify func(r *messaging.PublishRequest)
			want   error
		}{
			{"identity cut short", func(r *messaging.PublishRequest) { r.Identity = r.Identity[:len(r.Identity)-4] }, messaging.ErrInvalidKey},
			{"identity of the wrong kind", func(r *messaging.PublishRequest) { r.Identity = r.SignedPrekey }, messaging.ErrInvalidKey},
			{"signed prekey missing", func(r *messaging.PublishRequest) { r.SignedPrekey = "" }, messaging.ErrInvalidKey},
			{"signed prekey swapped", func(r *messaging.PublishRequest) { r.SignedPrekey = text(t, otherSPK.Public()) }, messaging.ErrBadSignature},
			{"last resort signature of the signed prekey", func(r *messaging.PublishRequest) { r.LastResortSig = r.SignedPrekeySig }, messaging.ErrBadSignature},
			{"signature not base64url", func(r *messaging.PublishRequest) { r.SignedPrekeySig = "***" }, messaging.ErrInvalid},
			{"binding by another device key", func(r *messaging.PublishRequest) { r.IdentityBinding = other.publishRequest(t).IdentityBinding }, messaging.ErrBadBinding},
			{"binding of another identity", func(r *messaging.PublishRequest) {
				r.IdentityBinding = sig(must(keys.SignIdentity(dev.key, other.identity.Public(), dev.id)))
			}, messaging.ErrBadBinding},
			{"binding for another device id", func(r *messaging.PublishRequest) {
				r.IdentityBinding = sig(must(keys.SignIdentity(dev.key, dev.identity.Public(), "bob-laptop")))
			}, messaging.ErrBadBinding},
			{"last resort not marked last resort", func(r *messaging.PublishRequest) {
				pq, _ := keys.GeneratePQPrekey(nil, 7, false)
				r.LastResort = text(t, pq.Public())
				r.LastResortSig = sig(must(dev.identity.SignPQPrekey(pq.Public())))
			}, messaging.ErrInvalidKey},
		}
		for _, tc := range publishCases {
			r := dev.publishRequest(t)
			tc.modify(r)
			if _, err := s.Publish(ctx, dev.caller(), r); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
			if st, _ := s.Status(ctx, dev.id); st.Published {
				t.Fatalf("%s: stored", tc.name)
			}
		}
		if _, err := s.AddPrekeys(ctx, dev.caller(), dev.batch(t, 1, 1, 1)); !errors.Is(err, messaging.ErrNoIdentity) {
			t.Fatalf("batch before publishing: %v", err)
		}

		// Batches: every case fails and leaves the stored count at 5+5.
		publish(t, s, dev, 5, 5)
		stored := dev.batch(t, 100, 1, 1) // the ids publish used
		batchCases := []struct {
			name  string
			batch func() *messaging.PrekeyBatch
			want  error
		}{
			{"too many X25519 keys", func() *messaging.PrekeyBatch { return dev.batch(t, 200, messaging.MaxPrekeyBatch+1, 0) }, messaging.ErrBatchTooLarge},
			{"too many ML-KEM keys", func() *messaging.PrekeyBatch { return dev.batch(t, 200, 0, messaging.MaxPrekeyBatch+1) }, messaging.ErrBatchTooLarge},
			{"empty", func() *messaging.PrekeyBatch { return &messaging.PrekeyBatch{} }, messaging.ErrInvalid},
			{"duplicate id in batch", func() *messaging.PrekeyBatch {
				b := dev.batch(t, 200, 3, 0)
				b.OneTimePrekeys[2] = b.OneTimePrekeys[0]
				return b
			}, messaging.ErrDuplicateKeyID},
			{"duplicate PQ id in batch", func() *messaging.PrekeyBatch {
				b := dev.batch(t, 200, 0, 3)
				b.PQPrekeys[2] = b.PQPrekeys[0]
				return b
			}, messaging.ErrDuplicateKeyID},
			{"id already stored, after valid keys", func() *messaging.PrekeyBatch {
				b := dev.batch(t, 200, 3, 3)
				b.OneTimePrekeys = append(b.OneTimePrekeys, stored.OneTimePrekeys[0])
				return b
			}, messaging.ErrDuplicateKeyID},
			{"PQ id already stored", func() *messaging.PrekeyBatch {
				b := dev.batch(t, 200, 3, 3)
				b.PQPrekeys = append(b.PQPrekeys, stored.PQPrekeys[0])
				return b
			}, messaging.ErrDuplicateKeyID},
			{"PQ id of the last-resort key", func() *messaging.PrekeyBatch {
				pq, _ := keys.GeneratePQPrekey(nil, dev.lastResort.ID(), false)
				b := dev.batch(t, 200, 1, 1)
				b.PQPrekeys = append(b.PQPrekeys, messaging.SignedPQKey{Key: text(t, pq.Public()), Sig: sig(must(dev.identity.SignPQPrekey(pq.Public())))})
				return b
			}, messaging.ErrDuplicateKeyID},
			{"PQ key signed by another identity", func() *messaging.PrekeyBatch {
				b := other.batch(t, 200, 1, 2)
				return b
			}, messaging.ErrBadSignature},
			{"PQ key marked last resort", func() *messaging.PrekeyBatch {
				pq, _ := keys.GeneratePQPrekey(nil, 5000, true)
				b := dev.batch(t, 200, 1, 1)
				b.PQPrekeys = append(b.PQPrekeys, messaging.SignedPQKey{Key: text(t, pq.Public()), Sig: sig(must(dev.identity.SignPQPrekey(pq.Public())))})
				return b
			}, messaging.ErrInvalidKey},
			{"X25519 key cut short", func() *messaging.PrekeyBatch {
				b := dev.batch(t, 200, 2, 0)
				b.OneTimePrekeys[1] = b.OneTimePrekeys[1][:20]
				return b
			}, messaging.ErrInvalidKey},
			{"PQ key in the X25519 list", func() *messaging.PrekeyBatch {
				b := dev.batch(t, 200, 1, 1)
				b.OneTimePrekeys = append(b.OneTimePrekeys, b.PQPrekeys[0].Key)
				return b
			}, messaging.ErrInvalidKey},
		}
		for _, tc := range batchCases {
			if _, err := s.AddPrekeys(ctx, dev.caller(), tc.batch()); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
			if st, _ := s.Status(ctx, dev.id); st.OneTimePrekeys != 5 || st.PQPrekeys != 5 {
				t.Fatalf("%s: stored something: %+v", tc.name, st)
			}
		}

		// The total per device is bounded.
		for i := 0; ; i++ {
			_, err := s.AddPrekeys(ctx, dev.caller(), dev.batch(t, uint32(1000+i*messaging.MaxPrekeyBatch), messaging.MaxPrekeyBatch, 0))
			if errors.Is(err, messaging.ErrTooManyPrekeys) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if st, _ := s.Status(ctx, dev.id); st.OneTimePrekeys > messaging.MaxStoredPrekeys || st.OneTimePrekeys < messaging.MaxStoredPrekeys-messaging.MaxPrekeyBatch {
			t.Fatalf("stored %d", st.OneTimePrekeys)
		}

		// Claims need exactly one well-formed target.
		for _, req := range []messaging.ClaimRequest{{}, {AccountID: "a", OrgID: "b"}, {AccountID: "a b"}} {
			if _, err := s.Claim(ctx, other.caller(), &req); !errors.Is(err, messaging.ErrInvalid) {
				t.Errorf("claim %+v: %v", req, err)
			}
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
