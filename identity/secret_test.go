package identity

import (
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"testing"
)

// TestLegacySecretOpensWhatWasSealed: an organisation key sealed under the
// key kanald used to derive from the CA key opens when the CA key is given
// as LegacySecret, ResealLegacy seals it again under the deployment
// secret, and then the service opens it without the legacy key.
func TestLegacySecretOpensWhatWasSealed(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		owner := e.newUser("olga@example.de", "olga's long password")
		var org Organisation
		e.must(e.do("POST", "/v1/admin/orgs", e.op, CreateOrgRequest{Name: "Bäckerei Korn", Kind: KindMerchant}), 201).decode(t, &org)
		e.must(e.do("POST", "/v1/admin/orgs/"+org.OrgID+"/verify", e.op, nil), 200).decode(t, &org)

		// Make the row look as an older kanald left it: sealed under the
		// CA-derived key.
		var sealed string
		if err := e.d.QueryRow(ctx, `SELECT key_sealed FROM identity_orgs WHERE id = $1`, org.OrgID).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		plain, err := e.svc.unseal(sealed, org.OrgID)
		if err != nil {
			t.Fatal(err)
		}
		caPEM, err := e.ca.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		legacyKey, err := deriveKey(caPEM, "organisation key seal v1")
		if err != nil {
			t.Fatal(err)
		}
		old, err := sealWith(rand.Reader, legacyKey, plain, org.OrgID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.d.Exec(ctx, `UPDATE identity_orgs SET key_sealed = $1 WHERE id = $2`, old, org.OrgID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.unseal(old, org.OrgID); err == nil {
			t.Fatal("the deployment secret's key opened what the CA-derived key sealed")
		}
		e.must(e.do("POST", "/v1/orgs/"+org.OrgID+"/members", e.op, AddMemberRequest{AccountID: owner.account, Role: RoleOwner}), 500)

		up, err := New(Options{DB: e.d, CA: e.ca, Mailer: e.mail, Secret: e.secret, LegacySecret: caPEM, Argon2: &fastArgon, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := up.unseal(old, org.OrgID); err != nil || string(got) != string(plain) {
			t.Fatalf("legacy opener: %v", err)
		}
		if n, err := up.ResealLegacy(ctx); err != nil || n != 1 {
			t.Fatalf("ResealLegacy = %d, %v; want 1", n, err)
		}
		if n, err := up.ResealLegacy(ctx); err != nil || n != 0 {
			t.Fatalf("second ResealLegacy = %d, %v; want 0", n, err)
		}
		var now string
		if err := e.d.QueryRow(ctx, `SELECT key_sealed FROM identity_orgs WHERE id = $1`, org.OrgID).Scan(&now); err != nil && err != sql.ErrNoRows {
			t.Fatal(err)
		}
		if _, err := openSealed(legacyKey, now, org.OrgID); err == nil {
			t.Fatal("the CA-derived key still opens the resealed organisation key")
		}
		// The running service, which has no legacy key, now signs memberships.
		e.must(e.do("POST", "/v1/orgs/"+org.OrgID+"/members", e.op, AddMemberRequest{AccountID: owner.account, Role: RoleOwner}), 201)
	})
}

// TestSecretRequired: identity refuses to start without a 32-byte
// deployment secret rather than fall back to the CA key.
func TestSecretRequired(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		for _, s := range [][]byte{nil, make([]byte, 16), make([]byte, 33)} {
			if _, err := New(Options{DB: e.d, CA: e.ca, Mailer: e.mail, Secret: s}); err == nil {
				t.Fatalf("started with a %d-byte secret", len(s))
			}
		}
	})
}
