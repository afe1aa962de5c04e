package surveys

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// TestAttackDefineWithExpiredCertificates: the adversary holds the device
// key of a council organiser whose device and membership certificates
// expired 200 days ago — an old phone, a key from a backup. They sign a
// survey definition dated inside the certificates' lifetime, which
// Verify accepts offline, and try to register it with the organiser's
// (still valid) account. The server checks the certificates at the time
// of use: refused, and the survey stays a draft.
func TestAttackDefineWithExpiredCertificates(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d)
		ctx := context.Background()
		draft, err := e.s.Create(ctx, e.org.Caller, councilID, ModeAnonymous)
		if err != nil {
			t.Fatal(err)
		}
		tk, err := NewTallyKey()
		if err != nil {
			t.Fatal(err)
		}
		signedAt := e.p.t0.Add(24 * time.Hour)
		e.clk.set(e.p.t0.Add(ca.DefaultDeviceLifetime + 200*24*time.Hour))
		now := e.clk.now()
		def := &Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: councilID, Title: "Marktplatz", Questions: questions(),
			Audience: everyone, OpensAt: now.Add(time.Minute), ClosesAt: now.Add(time.Hour), Mode: ModeAnonymous, Results: ResultsPublic,
			TokenKey: draft.TokenKey, TallyKey: tk.Public, SignedAt: signedAt}
		signed, err := Sign(def, e.org.key, e.org.dev, e.org.membership, e.p.org.Certificate().Raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Verify(signed, e.p.ca.Pool()); err != nil {
			t.Fatalf("the backdated definition does not even verify offline: %v", err)
		}
		if err := e.s.Define(ctx, e.org.Caller, draft.SurveyID, signed); !errors.Is(err, ErrBadSignature) || !errors.Is(err, ca.ErrExpired) {
			t.Fatalf("an expired organiser device defined a survey: %v", err)
		}
		r, err := e.s.load(ctx, draft.SurveyID)
		if err != nil {
			t.Fatal(err)
		}
		if e.s.status(r, now) != StatusDraft {
			t.Fatalf("the survey is %s after a refused definition", e.s.status(r, now))
		}
	})
}
