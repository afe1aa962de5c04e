package miniapps

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestRegisterApproveSuspend(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		reg, err := w.s.RegisterManifest(ctx, ownerActor, w.sign(w.manifest("bakery", 1, ScopeOpenID, ScopeChatPost)))
		if err != nil {
			t.Fatal(err)
		}
		if !reg.NeedsApproval || !strings.HasPrefix(reg.ClientSecret, "kanal_app_") || reg.App.Status != StatusPending {
			t.Fatalf("first registration: %+v", reg)
		}
		if apps, _ := w.s.Apps(ctx, false); len(apps) != 0 {
			t.Fatalf("citizens see an unapproved app: %+v", apps)
		}
		if _, err := w.s.Approve(ctx, ownerActor, "bakery"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("a member approved: %v", err)
		}
		if _, err := w.s.Approve(ctx, operator, "bakery"); err != nil {
			t.Fatal(err)
		}
		apps, _ := w.s.Apps(ctx, false)
		if len(apps) != 1 || apps[0].OrgName != "Bäckerei Korn" || apps[0].ApprovedVersion != 1 {
			t.Fatalf("approved list: %+v", apps)
		}
		// A version asking for no more scopes is approved with its
		// registration; one asking for more waits, and citizens keep
		// seeing the approved one.
		reg, err = w.s.RegisterManifest(ctx, ownerActor, w.sign(w.manifest("bakery", 2, ScopeOpenID)))
		if err != nil || reg.NeedsApproval || reg.App.ApprovedVersion != 2 || reg.ClientSecret != "" {
			t.Fatalf("fewer scopes: %+v %v", reg, err)
		}
		reg, err = w.s.RegisterManifest(ctx, ownerActor, w.sign(w.manifest("bakery", 3, ScopeOpenID, ScopePaymentsRequest)))
		if err != nil || !reg.NeedsApproval || reg.App.ApprovedVersion != 2 || reg.App.Pending == nil {
			t.Fatalf("more scopes: %+v %v", reg, err)
		}
		app, _ := w.s.activeApp(ctx, "bakery")
		if slices.Contains(app.Manifest.Scopes, ScopePaymentsRequest) {
			t.Fatal("an unapproved scope is in force")
		}
		if app, err = w.s.Approve(ctx, operator, "bakery"); err != nil || app.ApprovedVersion != 3 {
			t.Fatalf("approve v3: %+v %v", app, err)
		}
		if _, err := w.s.Suspend(ctx, operator, "bakery"); err != nil {
			t.Fatal(err)
		}
		if apps, _ := w.s.Apps(ctx, false); len(apps) != 0 {
			t.Fatal("a suspended app is listed")
		}
		if _, err := w.s.activeApp(ctx, "bakery"); !errors.Is(err, ErrSuspended) {
			t.Fatalf("suspended app active: %v", err)
		}
	})
}

// TestAttackManifest: an organisation's manifest is what its member's
// device signed, or nothing.
func TestAttackManifest(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		good := w.sign(w.manifest("bakery", 1, ScopeOpenID))
		parts := strings.Split(good, ".")
		unsigned := parts[0] + "." + parts[1] + "."
		// A tampered payload: the same signature over other scopes.
		m := w.manifest("bakery", 1, ScopeOpenID, ScopePaymentsRequest)
		other := strings.Split(w.sign(m), ".")
		tampered := parts[0] + "." + other[1] + "." + parts[2]
		bad := map[string]string{"unsigned": unsigned, "tampered": tampered, "garbage": "not a jws", "empty": ""}
		for name, jws := range bad {
			if _, err := w.s.RegisterManifest(ctx, ownerActor, jws); !errors.Is(err, ErrInvalidManifest) {
				t.Errorf("%s: %v, want invalid manifest", name, err)
			}
		}
		// Another device than the signer cannot register it.
		if _, err := w.s.RegisterManifest(ctx, citizenActor(citizen), good); !errors.Is(err, ErrForbidden) {
			t.Errorf("another device: %v", err)
		}
		// A redirect URI or launch URL outside the origins is refused
		// when signing and when registering.
		for name, mut := range map[string]func(*Manifest){
			"redirect off origin": func(m *Manifest) { m.Redirects = []string{"https://evil.example/cb"} },
			"launch off origin":   func(m *Manifest) { m.LaunchURL = "https://evil.example/" },
			"http origin":         func(m *Manifest) { m.Origins = []string{"http://baeckerei.example"} },
			"unknown scope":       func(m *Manifest) { m.Scopes = []string{ScopeOpenID, "admin"} },
			"no openid":           func(m *Manifest) { m.Scopes = []string{ScopeChatPost} },
		} {
			m := w.manifest("bakery", 1, ScopeOpenID)
			mut(&m)
			if _, err := SignManifest(m, w.member, w.ca.Pool()); !errors.Is(err, ErrInvalidManifest) {
				t.Errorf("%s: signed: %v", name, err)
			}
		}
		// A revoked member's manifest is refused.
		vm, _ := VerifyManifest(good, w.ca.Pool())
		w.certs.revoked[vm.Signer.Membership.Serial.String()] = true
		if _, err := w.s.RegisterManifest(ctx, ownerActor, good); !errors.Is(err, ErrForbidden) {
			t.Errorf("revoked membership: %v", err)
		}
		// Nothing changed.
		if apps, _ := w.s.Apps(ctx, true); len(apps) != 0 {
			t.Fatalf("apps after refused registrations: %+v", apps)
		}
	})
}

func TestConsentAppendOnlyAndRevoke(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		w.approvedApp("bakery", ScopeOpenID, ScopeChatPost, ScopePaymentsRequest)
		if _, err := w.s.Consent(ctx, citizenActor(citizen), "bakery", []string{ScopeOpenID, "push"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("consent to a scope not in the manifest: %v", err)
		}
		st, err := w.s.Consent(ctx, citizenActor(citizen), "bakery", []string{ScopeOpenID, ScopeChatPost})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(st.Granted, []string{ScopeChatPost, ScopeOpenID}) || !slices.Equal(st.Refused, []string{ScopePaymentsRequest}) {
			t.Fatalf("state: %+v", st)
		}
		st, err = w.s.Revoke(ctx, citizenActor(citizen), "bakery")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Granted) != 0 || len(st.Records) != 6 || st.Records[5].Decision != DecisionRevoked || st.Records[0].ManifestVersion != 1 {
			t.Fatalf("after revoke: %+v", st)
		}
		list, _ := w.s.Consents(ctx, citizen)
		if len(list) != 1 {
			t.Fatalf("consents: %+v", list)
		}
	})
}
