package identity

import (
	"bytes"
	"context"
	"crypto/hpke"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/oidc"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/eidtest"
	"github.com/kanal-server/kanal/internal/web"
)

// The eID flow against a real OpenID Provider (internal/eidtest) over
// HTTPS with a private CA. The browser's part is played by an HTTP client
// that follows the provider's redirects and hands kanal the callback.

const (
	eidRedirect = "http://kanal.test/v1/eid/callback"
	// Markers: the subject and attributes the provider releases. None may
	// ever be found in the database.
	markSubject = "MARKERSUBJECT-4711-nPA"
	markGiven   = "Markergiven"
	markFamily  = "Markerfamily"
	markBirth   = "1987-06-05"
	markStreet  = "Markerstrasse 12"
)

type eidEnv struct {
	*env
	op *eidtest.Provider
}

func newEIDEnv(t *testing.T, d *db.DB) *eidEnv {
	t.Helper()
	op, err := eidtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	op.AddClient(eidtest.Client{ID: "kanal", Secret: "client-secret-of-kanal", RedirectURIs: []string{eidRedirect}})
	op.AddPerson(eidtest.Person{Subject: markSubject, GivenName: markGiven, FamilyName: markFamily, Birthdate: markBirth,
		Street: markStreet, PostalCode: "04109", Locality: "Leipzig", Country: "DE"})
	op.AddPerson(eidtest.Person{Subject: "someone-else", GivenName: "Erika", FamilyName: "Mustermann", Birthdate: "1964-08-12"})
	op.LoginAs(markSubject, eidtest.ACRHigh)
	rp, err := oidc.New(oidc.Config{Issuer: op.Issuer, ClientID: "kanal", ClientSecret: "client-secret-of-kanal", RedirectURL: eidRedirect,
		ACRSubstantial: []string{eidtest.ACRSubstantial}, ACRHigh: []string{eidtest.ACRHigh}, HTTPClient: op.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	notaryDir := t.TempDir()
	return &eidEnv{env: newEnv(t, d, func(o *Options) {
		o.EID = rp
		n, err := o.CA.Notary(notaryDir, o.Now())
		if err != nil {
			t.Fatal(err)
		}
		o.Notary = n
	}), op: op}
}

// browse plays the citizen's browser: it opens the provider's URL,
// follows the provider's redirects and returns the query the provider
// sends back to kanal's callback.
func (x *eidEnv) browse(authURL string) string {
	x.t.Helper()
	c := x.op.HTTPClient()
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host != strings.TrimPrefix(x.op.Issuer, "https://") {
			return http.ErrUseLastResponse
		}
		return nil
	}
	res, err := c.Get(authURL)
	if err != nil {
		x.t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || res.StatusCode/100 != 3 || !strings.HasPrefix(loc.String(), eidRedirect) {
		x.t.Fatalf("the provider did not send the browser back: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.RawQuery
}

type eidLogin struct {
	start EIDStartResponse
	priv  hpke.PrivateKey
	query string
}

// begin starts an eID login for u and plays the browser.
func (x *eidEnv) begin(u *user) eidLogin {
	x.t.Helper()
	priv, sealKey, err := NewEIDSealKey()
	if err != nil {
		x.t.Fatal(err)
	}
	var l eidLogin
	l.priv = priv
	x.must(x.do("POST", "/v1/eid/start", u.session.Token, EIDStartRequest{SealKey: sealKey}), 201).decode(x.t, &l.start)
	l.query = x.browse(l.start.URL)
	return l
}

func (x *eidEnv) callback(query string) resp {
	x.t.Helper()
	return x.do("GET", "/v1/eid/callback?"+query, "", nil)
}

func (x *eidEnv) complete(u *user, flowID string) resp {
	x.t.Helper()
	var c ChallengeResponse
	x.must(x.do("POST", "/v1/sessions/challenge", "", ChallengeRequest{DeviceID: u.device, Purpose: ChallengeEID}), 200).decode(x.t, &c)
	return x.do("POST", "/v1/eid/complete", u.session.Token, EIDCompleteRequest{FlowID: flowID, ChallengeID: c.ChallengeID,
		Signature: sign(x.t, u.key, EIDMessage(c.ChallengeID, u.device, c.Nonce, flowID))})
}

func (x *eidEnv) me(u *user) MeResponse {
	x.t.Helper()
	var m MeResponse
	x.must(x.do("GET", "/v1/me", u.session.Token, nil), 200).decode(x.t, &m)
	return m
}

func TestEIDLinkRaisesToHigh(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		x := newEIDEnv(t, d)
		u := x.newUser("anna@example.de", "correct horse battery")
		if m := x.me(u); m.Level != "substantial" || m.EIDLinked || m.Proofing != "device-bound, not identity-proofed" {
			t.Fatalf("before: %+v", m)
		}
		l := x.begin(u)
		// The browser is back, but the session is not high until the
		// device proves itself.
		x.must(x.callback(l.query), 200)
		if m := x.me(u); m.Level != "substantial" || !m.EIDLinked {
			t.Fatalf("after the callback, before the device's proof: %+v", m)
		}
		var done EIDCompleteResponse
		x.must(x.complete(u, l.start.FlowID), 200).decode(t, &done)
		if done.Level != "high" || done.ACR != eidtest.ACRHigh {
			t.Fatalf("complete: %+v", done)
		}
		a, err := OpenEIDAttributes(l.priv, l.start.FlowID, done.Attributes)
		if err != nil {
			t.Fatal(err)
		}
		if a.GivenName != markGiven || a.FamilyName != markFamily || a.Birthdate != markBirth || a.Address == nil || a.Address.StreetAddress != markStreet {
			t.Fatalf("attributes: %+v", a)
		}
		if m := x.me(u); m.Level != "high" || !m.EIDLinked || m.Proofing != "eID (identity-proofed)" {
			t.Fatalf("after: %+v", m)
		}
		// A certificate renewed in this session carries level high; one
		// renewed in a substantial session does not.
		var er EnrollResponse
		x.must(x.do("POST", "/v1/devices/"+u.device+"/renew", u.session.Token, x.renewProof(u.device, u.key, csrFor(t, u.key))), 200).decode(t, &er)
		if er.Level != "high" || x.certLevelOf(t, er.Certificate) != ca.LevelHigh {
			t.Fatalf("renewed in a high session: %s", er.Level)
		}
		// The flow is spent: completing it again changes nothing.
		x.mustProblem(x.complete(u, l.start.FlowID), 404, web.TypeNotFound)
		// A refreshed session has the level the login proved, not high.
		var ref SessionResponse
		x.must(x.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: u.session.RefreshToken}), 201).decode(t, &ref)
		if ref.Level != "substantial" {
			t.Fatalf("refreshed session is %s", ref.Level)
		}
		x.must(x.do("POST", "/v1/devices/"+u.device+"/renew", ref.Token, x.renewProof(u.device, u.key, csrFor(t, u.key))), 200).decode(t, &er)
		if er.Level != "substantial" || x.certLevelOf(t, er.Certificate) != ca.LevelSubstantial {
			t.Fatalf("renewed in a substantial session: %s", er.Level)
		}
		// The same person links again (a new device, a new day): fine.
		u.session = x.login(u.device, u.key, u.password)
		l = x.begin(u)
		x.must(x.callback(l.query), 200)
		x.must(x.complete(u, l.start.FlowID), 200)
		if p, err := x.svc.EIDPerson(context.Background(), u.account); err != nil || p == "" {
			t.Fatalf("person %q %v", p, err)
		}
		searchMarkers(t, d)
	})
}

// TestAttackEID: each answer an attacker (or a broken provider) can put
// in front of kanal is refused with a clear problem, the session keeps
// its level and no identity is bound.
func TestAttackEID(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(x *eidEnv)
		status int
		typ    web.ProblemType
		detail string
	}{
		{"wrong issuer", func(x *eidEnv) { x.op.Tamper(func(c map[string]any) { c["iss"] = "https://evil.example" }) }, 401, TypeEIDRejected, "different provider"},
		{"wrong audience", func(x *eidEnv) { x.op.Tamper(func(c map[string]any) { c["aud"] = "another-client" }) }, 401, TypeEIDRejected, "audience"},
		{"wrong nonce", func(x *eidEnv) { x.op.Tamper(func(c map[string]any) { c["nonce"] = "replayed-nonce" }) }, 401, TypeEIDRejected, "nonce"},
		{"expired", func(x *eidEnv) {
			x.op.Tamper(func(c map[string]any) {
				c["iat"] = time.Now().Add(-time.Hour).Unix()
				c["exp"] = time.Now().Add(-30 * time.Minute).Unix()
			})
		}, 401, TypeEIDRejected, "expired"},
		{"acr too low", func(x *eidEnv) { x.op.LoginAs(markSubject, eidtest.ACRSubstantial) }, 403, TypeEIDLevel, "is not level high"},
		{"acr the deployment does not know", func(x *eidEnv) {
			x.op.Tamper(func(c map[string]any) { c["acr"] = "urn:something:else" })
		}, 403, TypeEIDLevel, "is not level high"},
		{"unknown signing key", func(x *eidEnv) { x.op.SignWithUnknownKey(true) }, 401, TypeEIDRejected, "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newEIDEnv(t, dbtest.SQLite(t, migrationSets()...))
			u := x.newUser("anna@example.de", "correct horse battery")
			tc.setup(x)
			l := x.begin(u)
			r := x.callback(l.query)
			x.mustProblem(r, tc.status, tc.typ)
			if !strings.Contains(string(r.body), tc.detail) {
				t.Errorf("problem %s does not say %q", r.body, tc.detail)
			}
			// The device learns the same refusal, and nothing rose.
			x.mustProblem(x.complete(u, l.start.FlowID), tc.status, tc.typ)
			x.assertUnchanged(u)
		})
	}
}

func (x *eidEnv) assertUnchanged(u *user) {
	x.t.Helper()
	if m := x.me(u); m.Level != "substantial" || m.EIDLinked {
		x.t.Fatalf("the session changed: %+v", m)
	}
	if n := x.count("identity_eid_bindings WHERE account_id = '" + u.account + "'"); n != 0 {
		x.t.Fatalf("%d bindings", n)
	}
}

func TestAttackEIDState(t *testing.T) {
	x := newEIDEnv(t, dbtest.SQLite(t, migrationSets()...))
	u := x.newUser("anna@example.de", "correct horse battery")
	l := x.begin(u)
	q, _ := url.ParseQuery(l.query)
	// An attacker's own code with the victim's login: a state that is not
	// the one kanal issued matches nothing.
	forged := url.Values{"code": q["code"], "state": {"AAAA" + q.Get("state")[4:]}}
	x.mustProblem(x.callback(forged.Encode()), 400, TypeEIDState)
	x.mustProblem(x.callback(url.Values{"code": q["code"]}.Encode()), 400, TypeEIDState)
	x.mustProblem(x.complete(u, l.start.FlowID), 409, TypeEIDPending)
	x.assertUnchanged(u)
	// The real answer still works once, and only once.
	x.must(x.callback(l.query), 200)
	x.mustProblem(x.callback(l.query), 400, TypeEIDState)
	// Someone else's session cannot finish it.
	mallory := x.newUser("mallory@example.de", "correct horse battery")
	x.mustProblem(x.complete(mallory, l.start.FlowID), 404, web.TypeNotFound)
	x.assertUnchanged(mallory)
	// A signature by another key is no device proof.
	var c ChallengeResponse
	x.must(x.do("POST", "/v1/sessions/challenge", "", ChallengeRequest{DeviceID: u.device, Purpose: ChallengeEID}), 200).decode(t, &c)
	x.mustProblem(x.do("POST", "/v1/eid/complete", u.session.Token, EIDCompleteRequest{FlowID: l.start.FlowID, ChallengeID: c.ChallengeID,
		Signature: sign(t, newP256(t), EIDMessage(c.ChallengeID, u.device, c.Nonce, l.start.FlowID))}), 403, TypeInvalidKeyProof)
	if m := x.me(u); m.Level != "substantial" {
		t.Fatalf("level %s", m.Level)
	}
	// A login proof is not an eID proof (another purpose).
	c = x.challenge(u.device)
	x.mustProblem(x.do("POST", "/v1/eid/complete", u.session.Token, EIDCompleteRequest{FlowID: l.start.FlowID, ChallengeID: c.ChallengeID,
		Signature: sign(t, u.key, EIDMessage(c.ChallengeID, u.device, c.Nonce, l.start.FlowID))}), 401, TypeInvalidChallenge)
	// Too late: the login is no longer fresh.
	x.clock.advance(EIDFreshness + time.Minute)
	x.mustProblem(x.complete(u, l.start.FlowID), 410, TypeEIDState)
	if m := x.me(u); m.Level != "substantial" {
		t.Fatalf("level %s", m.Level)
	}
}

func TestAttackEIDBoundElsewhere(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		x := newEIDEnv(t, d)
		anna := x.newUser("anna@example.de", "correct horse battery")
		l := x.begin(anna)
		x.must(x.callback(l.query), 200)
		x.must(x.complete(anna, l.start.FlowID), 200)
		// Anna's second account: the same person, the same eID.
		second := x.newUser("anna.private@example.de", "correct horse battery")
		l = x.begin(second)
		r := x.callback(l.query)
		x.mustProblem(r, 409, TypeEIDBound)
		if !strings.Contains(string(r.body), "kanal eid unlink") {
			t.Errorf("the refusal does not say what to do: %s", r.body)
		}
		x.mustProblem(x.complete(second, l.start.FlowID), 409, TypeEIDBound)
		x.assertUnchanged(second)
		// And anna's first account cannot take another person's eID.
		x.op.LoginAs("someone-else", eidtest.ACRHigh)
		anna.session = x.login(anna.device, anna.key, anna.password)
		l = x.begin(anna)
		x.mustProblem(x.callback(l.query), 409, TypeEIDBound)
		// Unlinked, the identity may move to the second account.
		x.must(x.do("DELETE", "/v1/eid/link", anna.session.Token, nil), 204)
		x.op.LoginAs(markSubject, eidtest.ACRHigh)
		l = x.begin(second)
		x.must(x.callback(l.query), 200)
		x.must(x.complete(second, l.start.FlowID), 200)
		// Erasing the account erases its link: the identity is free again.
		ctx := context.Background()
		pseudonym, _ := x.svc.NewPseudonym()
		if err := d.Tx(ctx, func(tx *sql.Tx) error { _, err := x.svc.EraseAccountTx(ctx, tx, second.account, pseudonym); return err }); err != nil {
			t.Fatal(err)
		}
		if n := x.count("identity_eid_bindings"); n != 0 {
			t.Fatalf("%d bindings after erasure", n)
		}
		anna.session = x.login(anna.device, anna.key, anna.password)
		l = x.begin(anna)
		x.must(x.callback(l.query), 200)
		x.must(x.complete(anna, l.start.FlowID), 200)
	})
}

func TestAttackEIDUnreachable(t *testing.T) {
	x := newEIDEnv(t, dbtest.SQLite(t, migrationSets()...))
	u := x.newUser("anna@example.de", "correct horse battery")
	l := x.begin(u)
	x.op.Close()
	r := x.callback(l.query)
	x.mustProblem(r, 502, TypeEIDUnreachable)
	x.mustProblem(x.complete(u, l.start.FlowID), 502, TypeEIDUnreachable)
	x.assertUnchanged(u)

	// A provider down from the start: the start says so.
	y := newEIDEnv(t, dbtest.SQLite(t, migrationSets()...))
	v := y.newUser("bert@example.de", "correct horse battery")
	y.op.Close()
	_, sealKey, _ := NewEIDSealKey()
	y.mustProblem(y.do("POST", "/v1/eid/start", v.session.Token, EIDStartRequest{SealKey: sealKey}), 502, TypeEIDUnreachable)
	y.assertUnchanged(v)
}

func TestAttackEIDLowSession(t *testing.T) {
	x := newEIDEnv(t, dbtest.SQLite(t, migrationSets()...))
	u := x.newUser("anna@example.de", "")
	_, sealKey, _ := NewEIDSealKey()
	// An e-mail-only session cannot start: high needs the device-bound
	// login too.
	x.mustProblem(x.do("POST", "/v1/eid/start", u.session.Token, EIDStartRequest{SealKey: sealKey}), 403, web.TypeInsufficientLevel)
	if u.session.Level != ca.LevelLow.String() {
		t.Fatal(u.session.Level)
	}
}

// searchMarkers reads every row of every table and fails if any holds
// the eID subject or an attribute, as text, hex or base64.
func searchMarkers(t *testing.T, d *db.DB) {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if d.Dialect() == db.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := d.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	var needles [][]byte
	for _, m := range []string{markSubject, markGiven, markFamily, markBirth, markStreet} {
		needles = append(needles, []byte(strings.ToLower(m)), []byte(hex.EncodeToString([]byte(m))),
			[]byte(strings.ToLower(base64.StdEncoding.EncodeToString([]byte(m))[:12])))
	}
	scanned := 0
	for _, tbl := range tables {
		rs, err := d.Query(ctx, `SELECT * FROM "`+tbl+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		for rs.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				for _, n := range needles {
					if bytes.Contains(bytes.ToLower(v), n) {
						t.Fatalf("table %s column %s holds an eID marker (%s)", tbl, cols[i], n)
					}
				}
			}
			scanned++
		}
		rs.Close()
	}
	if scanned == 0 {
		t.Fatal("no rows scanned")
	}
}

// certLevelOf reads the level a PEM device certificate carries.
func (x *eidEnv) certLevelOf(t *testing.T, certPEM string) ca.Level {
	t.Helper()
	cert, err := parsePEMCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.VerifyDevice(cert.Raw, x.svc.ca.Pool(), x.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	return id.Level
}
