package surveys

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestLegacySecretOpensWhatWasSealed: a token key sealed under the old
// (CA-derived) seal key opens with it as LegacySealKey; ResealLegacy seals
// it again under the new key, after which tokens are issued without the
// legacy key and the old key opens nothing.
func TestLegacySecretOpensWhatWasSealed(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		e := newEnv(t, d)
		def, _ := e.survey(t, ModeAnonymous, everyone)
		e.clk.set(def.OpensAt)
		newKey := bytes.Repeat([]byte{9}, 32)
		with := func(seal, legacy []byte) *Service {
			s, err := New(Options{DB: d, Notary: e.p.notary, Roots: e.p.ca.Pool(), Directory: e.dir, Now: e.clk.now,
				SealKey: seal, LegacySealKey: legacy,
				Auth: Auth{Require: func(ca.Level, http.Handler) http.Handler { return nil }, Caller: func(context.Context) (Caller, bool) { return Caller{}, false }}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			return s
		}
		issue := func(s *Service, i int) error {
			req, err := NewTokenRequest(def)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.IssueToken(ctx, voter(i), def.SurveyID, req.Blinded)
			return err
		}
		if err := issue(with(newKey, nil), 1); err == nil {
			t.Fatal("a token key sealed under the old key opened under the new one alone")
		}
		up := with(newKey, e.seal)
		if err := issue(up, 2); err != nil {
			t.Fatalf("legacy opener: %v", err)
		}
		if n, err := up.ResealLegacy(ctx); err != nil || n != 1 {
			t.Fatalf("ResealLegacy = %d, %v; want 1", n, err)
		}
		if n, err := up.ResealLegacy(ctx); err != nil || n != 0 {
			t.Fatalf("second ResealLegacy = %d, %v; want 0", n, err)
		}
		if err := issue(with(newKey, nil), 3); err != nil {
			t.Fatalf("after resealing, the new key alone: %v", err)
		}
		if err := issue(with(e.seal, nil), 4); err == nil {
			t.Fatal("the old key still opens the resealed token key")
		}
	})
}
