package surveys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

var sets = []db.Migrations{Migrations()}

// clock is the tests' settable "now".
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// pki is a deployment CA with its notary and one council.
type pki struct {
	ca     *ca.CA
	notary *ca.Notary
	org    *ca.OrgAuthority
	t0     time.Time
}

const councilID = "org_council"

func newPKI(t testing.TB) *pki {
	t.Helper()
	t0 := time.Now().UTC().Truncate(time.Second)
	dir := t.TempDir()
	c, _, err := ca.LoadOrCreateDir(dir, "Musterstadt", t0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Notary(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	org, err := c.IssueOrganisation(ca.OrgRequest{OrgID: councilID, Name: "Rat der Stadt Musterstadt", Kind: ca.OrgCouncil, NotBefore: t0.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: c, notary: n, org: org, t0: t0}
}

// member is an account with a device certified by the CA and, for a role,
// a membership of the council.
type member struct {
	Caller
	key             ed25519.PrivateKey
	dev, membership []byte
}

func (p *pki) member(t testing.TB, account, role string, org *ca.OrgAuthority) *member {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	device := "dev_" + account
	dev, err := p.ca.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: account, DeviceID: device, Level: ca.LevelSubstantial, NotBefore: p.t0.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{Caller: Caller{AccountID: account, DeviceID: device, Level: ca.LevelSubstantial}, key: key, dev: dev.Raw}
	if org != nil {
		mem, err := org.IssueMembership(ca.MembershipRequest{DevicePublicKey: key.Public(), AccountID: account, DeviceID: device, Role: role, NotBefore: p.t0.Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		m.membership = mem.Raw
	}
	return m
}

// directory is the organisations' membership as identity would answer it.
type directory struct {
	mu    sync.Mutex
	roles map[string]string // org + "/" + account → role
}

func (d *directory) OrgRole(_ context.Context, org, account string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.roles[org+"/"+account], nil
}

func (d *directory) set(org, account, role string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.roles == nil {
		d.roles = map[string]string{}
	}
	d.roles[org+"/"+account] = role
}

// env is a surveys service on a database with one council and its
// organiser.
type env struct {
	s    *Service
	d    *db.DB
	p    *pki
	clk  *clock
	dir  *directory
	org  *member // the council's organiser
	seal []byte  // the service's SealKey
	// persons maps accounts to their proven identity (Options.Persons).
	persons map[string]string
}

func newEnv(t testing.TB, d *db.DB) *env {
	t.Helper()
	p := newPKI(t)
	e := &env{d: d, p: p, clk: &clock{t: p.t0}, dir: &directory{}, persons: map[string]string{}}
	e.org = p.member(t, "acc_organiser", "organiser", p.org)
	e.dir.set(councilID, e.org.AccountID, "organiser")
	e.seal = make([]byte, 32)
	rand.Read(e.seal)
	e.s = e.node(t)
	return e
}

// node starts a Service on the environment's database, keys and clock:
// another node of the same deployment, or this one after a restart, with
// nothing cached.
func (e *env) node(t testing.TB) *Service {
	t.Helper()
	s, err := New(Options{DB: e.d, Notary: e.p.notary, Roots: e.p.ca.Pool(), Directory: e.dir, Now: e.clk.now, SealKey: e.seal,
		Persons: func(_ context.Context, account string) (string, error) { return e.persons[account], nil },
		Auth:    Auth{Require: func(ca.Level, http.Handler) http.Handler { return nil }, Caller: func(context.Context) (Caller, bool) { return Caller{}, false }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// questions is the survey most tests run: one of each kind.
func questions() []Question {
	return []Question{
		{Kind: KindSingle, Prompt: "Soll der Marktplatz autofrei werden?", Options: []string{"Ja", "Nein", "Enthaltung"}},
		{Kind: KindMultiple, Prompt: "Welche Angebote nutzen Sie?", Options: []string{"Bus", "Rad", "Auto", "Zu Fuß"}, Min: 1, Max: 2},
		{Kind: KindRanking, Prompt: "Ordnen Sie die Projekte", Options: []string{"Schwimmbad", "Bibliothek", "Radwege"}},
		{Kind: KindScale, Prompt: "Wie zufrieden sind Sie?"},
		{Kind: KindText, Prompt: "Was fehlt?", Max: 200, Optional: true},
	}
}

// survey creates, defines and returns a survey opening one minute after
// the clock's now and closing an hour later.
func (e *env) survey(t testing.TB, mode string, aud Audience) (*Definition, *TallyKeyPair) {
	t.Helper()
	ctx := context.Background()
	draft, err := e.s.Create(ctx, e.org.Caller, councilID, mode)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := NewTallyKey()
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.now()
	def := &Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: councilID, Title: "Marktplatz", Questions: questions(),
		Audience: aud, OpensAt: now.Add(time.Minute), ClosesAt: now.Add(time.Hour), Mode: mode, Results: ResultsPublic,
		TokenKey: draft.TokenKey, TallyKey: tk.Public, SignedAt: now}
	signed, err := Sign(def, e.org.key, e.org.dev, e.org.membership, e.p.org.Certificate().Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Define(ctx, e.org.Caller, draft.SurveyID, signed); err != nil {
		t.Fatal(err)
	}
	return def, tk
}

var everyone = Audience{Kind: AudienceLevel, Level: ca.LevelLow}

// voter is an eligible account at level low.
func voter(i int) Caller {
	return Caller{AccountID: "acc_voter_" + itoa(i), DeviceID: "dev_voter_" + itoa(i), Level: ca.LevelLow}
}

func itoa(i int) string { return strconv.Itoa(i) }

// token runs the client side of token issuance for c.
func (e *env) token(t testing.TB, def *Definition, c Caller) *Token {
	t.Helper()
	req, err := NewTokenRequest(def)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := e.s.IssueToken(context.Background(), c, def.SurveyID, req.Blinded)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := req.Finalize(bs)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// cast encrypts answers under a token and casts the ballot.
func (e *env) cast(def *Definition, tok *Token, answers []any) (*Receipt, error) {
	ct, err := EncryptBallot(def, Nullifier(tok.Message), answers)
	if err != nil {
		return nil, err
	}
	return e.s.CastAnonymous(context.Background(), def.SurveyID, tok, ct)
}

// board fetches and checks the whole board.
func (e *env) board(t testing.TB, def *Definition) ([]Entry, *Head) {
	t.Helper()
	var all []Entry
	var head *Head
	for {
		page, sh, err := e.s.Board(context.Background(), def.SurveyID, int64(len(all)), MaxBoardPage)
		if err != nil {
			t.Fatal(err)
		}
		if head, err = VerifyHead(sh, e.p.ca.Pool()); err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) == 0 {
			break
		}
	}
	return all, head
}

func (e *env) count(t testing.TB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := e.d.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// heldBatch runs bodies, each of which queues work on b, while b is held,
// so that their work commits in one batch; between (if not nil) runs once
// it all waits for that commit. It returns when every body has returned,
// with the round trips of their batch, less the held body's own
// (measured alone first).
func heldBatch(t testing.TB, d *db.DB, b *db.Batcher, bodies []func(), between func()) uint64 {
	t.Helper()
	release := dbtest.Hold(t, b)
	st, trips := b.Stats(), d.RoundTrips()
	release()
	dbtest.Settled(t, b, st.Bodies+1)
	heldTail := d.RoundTrips() - trips

	release = dbtest.Hold(t, b)
	var wg sync.WaitGroup
	for _, body := range bodies {
		wg.Go(body)
	}
	for b.Stats().Queued < 1+len(bodies) {
		time.Sleep(time.Millisecond)
	}
	if between != nil {
		between()
	}
	st, trips = b.Stats(), d.RoundTrips()
	release()
	wg.Wait()
	dbtest.Settled(t, b, st.Bodies+1+uint64(len(bodies)))
	if got := b.Stats().Batches - st.Batches; got != 2 {
		t.Fatalf("the work took %d batches, want 1", got-1)
	}
	return d.RoundTrips() - trips - heldTail
}
