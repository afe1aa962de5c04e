package miniapps

import (
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// FuzzVerifyManifest: no input makes the verifier panic, and whatever it
// accepts is a valid manifest of the signer's organisation.
func FuzzVerifyManifest(f *testing.F) {
	w := newWorld(f, dbtest.SQLite(f, Migrations()))
	good := w.sign(w.manifest("bakery", 1, ScopeOpenID, ScopeChatPost))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		vm, err := VerifyManifest(s, w.ca.Pool())
		if err != nil {
			return
		}
		if err := vm.Manifest.Validate(); err != nil || vm.Signer.Membership.OrgID != vm.Manifest.OrgID {
			t.Fatalf("accepted an invalid manifest: %v", err)
		}
	})
}
