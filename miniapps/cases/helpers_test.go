package cases

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// t0 is the tests' clock.
var t0 = time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)

const (
	amt      = "org_amt"
	other    = "org_other"
	citizen  = "acc_citizen"
	agentA   = "acc_agent_a"
	agentB   = "acc_agent_b"
	foreign  = "acc_foreign_agent"
	hundHash = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
)

// roles stands in for identity's member table: OrgRole and OrgVerified
// are all cases asks identity.
type roles map[string]string

func (r roles) OrgRole(_ context.Context, org, account string) (string, error) {
	return r[org+"/"+account], nil
}

func (r roles) OrgVerified(_ context.Context, org string) (bool, error) {
	return org == amt || org == other, nil
}

// catalogue stands in for the template catalogue kanald wires.
type catalogue map[string]Template

func (c catalogue) Template(_ context.Context, org, id, version string) (Template, error) {
	t, ok := c[id+"@"+version]
	if !ok {
		return Template{}, fmt.Errorf("%w: %s %s", ErrUnknownTemplate, id, version)
	}
	return t, nil
}

type recorder struct {
	mu  sync.Mutex
	got []Case
}

func (r *recorder) Announce(_ context.Context, c Case) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, c)
	return nil
}

func (r *recorder) all() []Case {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Case(nil), r.got...)
}

type fees struct {
	mu      sync.Mutex
	charged map[string]int
}

func (f *fees) Check(a FeeAccount) (FeeAccount, error) {
	if !strings.HasPrefix(a.IBAN, "DE") || a.Creditor == "" {
		return FeeAccount{}, errors.New("not an IBAN")
	}
	return a, nil
}

func (f *fees) Charge(_ context.Context, c Case, t Template, to FeeAccount) (string, error) {
	if to.IBAN == "" {
		return "", errors.New("no account")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.charged[c.ID]++
	return "pr_" + c.ID[5:15], nil
}

type world struct {
	s    *Service
	d    *db.DB
	ann  *recorder
	fees *fees
}

func newWorld(t *testing.T, d *db.DB) *world {
	t.Helper()
	w := &world{d: d, ann: &recorder{}, fees: &fees{charged: map[string]int{}}}
	var err error
	w.s, err = New(Options{DB: d, Now: func() time.Time { return t0 },
		Orgs: roles{amt + "/" + agentA: "agent", amt + "/" + agentB: "admin", other + "/" + foreign: "agent", amt + "/" + "acc_member": "member"},
		Templates: catalogue{
			"hund@1.0.0":       {ID: "hund", Version: "1.0.0", Hash: hundHash, ProcessingDays: 14, FeeCents: 2500},
			"sperrmuell@2.1.0": {ID: "sperrmuell", Version: "2.1.0", Hash: hundHash, ProcessingDays: 7},
			"alt@1.0.0":        {ID: "alt", Version: "1.0.0", Hash: hundHash, Withdrawn: true},
			"waffen@1.0.0":     {ID: "waffen", Version: "1.0.0", Hash: hundHash, ProcessingDays: 30, Level: "high"},
		},
		Announcer: w.ann, Fees: w.fees})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.SetFeeAccount(context.Background(), as(agentB), amt, FeeAccount{Creditor: "Stadtkasse", IBAN: "DE89370400440532013000"}); err != nil {
		t.Fatal(err)
	}
	return w
}

func run(t *testing.T, fn func(t *testing.T, w *world)) {
	dbtest.Run(t, []db.Migrations{Migrations()}, func(t *testing.T, d *db.DB) { fn(t, newWorld(t, d)) })
}

func as(account string) Actor { return Actor{AccountID: account, DeviceID: "dev_" + account} }

func hund(sub string) OpenRequest {
	return OpenRequest{SubmissionID: sub, TemplateID: "hund", Version: "1.0.0", TemplateHash: hundHash}
}

// rowCounts counts the rows of the cases tables.
func rowCounts(t *testing.T, d *db.DB) string {
	t.Helper()
	var c, e int
	if err := d.QueryRow(context.Background(), `SELECT (SELECT COUNT(*) FROM cases), (SELECT COUNT(*) FROM cases_events)`).Scan(&c, &e); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d cases, %d events", c, e)
}
