package forms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// registry stands in for identity's member and certificate tables: the
// accounts that are members ("org/account" → role) and the revoked
// serials. identity.Service answers the same two questions from its
// tables; cmd/kanal's end-to-end tests run the real one.
type registry struct {
	roles   map[string]string
	revoked map[string]bool
}

func (r *registry) OrgRole(_ context.Context, org, account string) (string, error) {
	return r.roles[org+"/"+account], nil
}

func (r *registry) CheckDeviceCertificate(_ context.Context, serial *big.Int) error {
	if r.revoked[serial.String()] {
		return fmt.Errorf("device certificate %s is revoked", serial)
	}
	return nil
}

func (r *registry) CheckMembership(_ context.Context, org, account, _, _ string, serial *big.Int) error {
	if r.revoked[serial.String()] || r.roles[org+"/"+account] == "" {
		return fmt.Errorf("%s is not a member of %s", account, org)
	}
	return nil
}

type catalogueEnv struct {
	cat    *Catalogue
	reg    *registry
	office *deployment // buergeramt
	rival  *deployment // ordnungsamt, same CA
	d      *db.DB
}

func newCatalogueEnv(t *testing.T, d *db.DB) *catalogueEnv {
	office := newDeployment(t, "Darmstadt", "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
	rival := addOrg(t, office.ca, "ordnungsamt", "Ordnungsamt Darmstadt", ca.OrgOffice)
	reg := &registry{roles: map[string]string{"buergeramt/acc-buergeramt": "agent", "ordnungsamt/acc-ordnungsamt": "agent"}, revoked: map[string]bool{}}
	cat, err := NewCatalogue(Options{DB: d, CA: office.ca.Certificate(), Certs: reg, Orgs: reg, Now: func() time.Time { return t0.Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	return &catalogueEnv{cat: cat, reg: reg, office: office, rival: rival, d: d}
}

func actorOf(d *deployment) Actor {
	m, _ := ca.VerifyMembership(d.member.Membership, d.member.OrgCert, d.ca.Pool(), t0)
	return Actor{AccountID: m.AccountID, DeviceID: m.DeviceID}
}

func (e *catalogueEnv) rows(t *testing.T) int {
	var n int
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM forms_templates`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCatalogue(t *testing.T) {
	dbtest.Run(t, []db.Migrations{Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		e := newCatalogueEnv(t, d)
		a := actorOf(e.office)
		s1, v1 := e.office.sign(t, e.office.template(t, "hundeanmeldung"), nil)
		got, err := e.cat.Publish(ctx, a, s1)
		if err != nil {
			t.Fatal(err)
		}
		if got.Hash != v1.Template.Hash() || got.OrgName != "Bürgeramt Darmstadt" {
			t.Fatalf("%+v", got.Summary)
		}
		// 1.1.0 descends from 1.0.0.
		next := e.office.template(t, "hundeanmeldung")
		p, l := Descend(s1, v1, e.office.ca.Certificate().Raw)
		next.Version, next.Parent, next.ProcessingDays = "1.1.0", p, 10
		s2, _ := e.office.sign(t, recheck(t, next), l)
		if _, err := e.cat.Publish(ctx, a, s2); err != nil {
			t.Fatal(err)
		}
		sp, _ := e.office.sign(t, e.office.template(t, "sperrmuell"), nil)
		if _, err := e.cat.Publish(ctx, a, sp); err != nil {
			t.Fatal(err)
		}
		list, err := e.cat.List(ctx, ListOptions{})
		if err != nil || len(list) != 2 || list[0].ID != "hundeanmeldung" || list[0].Version != "1.1.0" || list[1].ID != "sperrmuell" {
			t.Fatalf("list %+v %v", list, err)
		}
		if page, _ := e.cat.List(ctx, ListOptions{Limit: 1, After: "hundeanmeldung"}); len(page) != 1 || page[0].ID != "sperrmuell" {
			t.Fatalf("page %+v", page)
		}
		latest, err := e.cat.Get(ctx, "hundeanmeldung", "latest", false)
		if err != nil || latest.Version != "1.1.0" {
			t.Fatalf("latest %v %v", latest, err)
		}
		if v, err := Verify(latest.Signed, e.office.ca.Certificate()); err != nil || len(v.Provenance()) != 2 {
			t.Fatalf("served template does not verify: %v", err)
		}
		if _, err := e.cat.Withdraw(ctx, a, "hundeanmeldung", "1.1.0"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.cat.Get(ctx, "hundeanmeldung", "1.1.0", false); !errors.Is(err, ErrWithdrawn) {
			t.Fatalf("withdrawn template served: %v", err)
		}
		if latest, _ := e.cat.Get(ctx, "hundeanmeldung", "latest", false); latest.Version != "1.0.0" {
			t.Fatalf("latest after withdrawal: %s", latest.Version)
		}
		if all, _ := e.cat.List(ctx, ListOptions{ID: "hundeanmeldung", Withdrawn: true}); len(all) != 2 || all[0].WithdrawnAt == nil {
			t.Fatalf("versions %+v", all)
		}
	})
}

// TestAttackCatalogue: what an outsider, a rival office and a former
// member try against the catalogue is refused and stores nothing.
func TestAttackCatalogue(t *testing.T) {
	dbtest.Run(t, []db.Migrations{Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		e := newCatalogueEnv(t, d)
		a := actorOf(e.office)
		s1, v1 := e.office.sign(t, e.office.template(t, "hundeanmeldung"), nil)
		if _, err := e.cat.Publish(ctx, a, s1); err != nil {
			t.Fatal(err)
		}
		before := e.rows(t)
		rivalTpl := e.rival.template(t, "hundeanmeldung")
		rivalTpl.Version = "2.0.0"
		rs, _ := e.rival.sign(t, recheck(t, rivalTpl), nil)
		older := e.office.template(t, "sperrmuell")
		os1, _ := e.office.sign(t, older, nil)
		if _, err := e.cat.Publish(ctx, a, os1); err != nil {
			t.Fatal(err)
		}
		before++
		older.Version = "0.9.0"
		os0, _ := e.office.sign(t, recheck(t, older), nil)
		other := newDeployment(t, "Darmstadt", "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
		foreign, _ := other.sign(t, other.template(t, "bewohnerparkausweis"), nil)
		bad := s1
		bad.JWS = strings.Replace(bad.JWS, ".", ".e", 1)
		for name, c := range map[string]struct {
			actor Actor
			s     Signed
			want  error
		}{
			"someone else publishes the office's JWS": {actorOf(e.rival), s1, ErrForbidden},
			"a rival office takes the id":             {actorOf(e.rival), rs, ErrForbidden},
			"the same version again":                  {a, s1, ErrExists},
			"a version before the latest":             {a, os0, ErrVersion},
			"another deployment's CA":                 {actorOf(other), foreign, ErrCertificate},
			"tampered":                                {a, bad, ErrMalformed},
		} {
			t.Run(name, func(t *testing.T) {
				if _, err := e.cat.Publish(ctx, c.actor, c.s); !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				if n := e.rows(t); n != before {
					t.Fatalf("%d rows, want %d", n, before)
				}
			})
		}
		// A member who left cannot publish what they signed before.
		e.reg.roles["buergeramt/acc-buergeramt"] = ""
		next := e.office.template(t, "hundeanmeldung")
		p, l := Descend(s1, v1, e.office.ca.Certificate().Raw)
		next.Version, next.Parent = "1.0.1", p
		s2, _ := e.office.sign(t, recheck(t, next), l)
		if _, err := e.cat.Publish(ctx, a, s2); !errors.Is(err, ErrForbidden) {
			t.Fatalf("former member publishes: %v", err)
		}
		if _, err := e.cat.Withdraw(ctx, a, "hundeanmeldung", "1.0.0"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("former member withdraws: %v", err)
		}
		if _, err := e.cat.Withdraw(ctx, actorOf(e.rival), "hundeanmeldung", "1.0.0"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("rival withdraws: %v", err)
		}
		if _, err := e.cat.Get(ctx, "hundeanmeldung", "1.0.0", false); err != nil {
			t.Fatalf("refused withdrawals changed the template: %v", err)
		}
		for _, c := range [][2]string{{"nope", "1.0.0"}, {"hundeanmeldung", "9.9.9"}, {"../etc", "1.0.0"}, {"hundeanmeldung", "x"}} {
			if _, err := e.cat.Get(ctx, c[0], c[1], false); !errors.Is(err, ErrNotFound) {
				t.Errorf("%v: %v", c, err)
			}
		}
	})
}

// TestCatalogueHTTP: the routes answer problem+json with a stable type
// for each refusal, and nothing without a session.
func TestCatalogueHTTP(t *testing.T) {
	e := newCatalogueEnv(t, dbtest.SQLite(t, Migrations()))
	mux := http.NewServeMux()
	e.cat.Register(mux, Auth{
		Session: func(h http.Handler) http.Handler { return h },
		Caller: func(ctx context.Context) (Actor, bool) {
			a, ok := ctx.Value(actorKey{}).(Actor)
			return a, ok
		},
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if acc := r.Header.Get("X-Test-Account"); acc != "" {
			r = r.WithContext(context.WithValue(r.Context(), actorKey{}, Actor{AccountID: acc, DeviceID: r.Header.Get("X-Test-Device")}))
		}
		mux.ServeHTTP(w, r)
	}))
	defer srv.Close()
	a := actorOf(e.office)
	do := func(method, path string, body any, who *Actor) (int, map[string]any) {
		var rd bytes.Buffer
		if body != nil {
			_ = json.NewEncoder(&rd).Encode(body)
		}
		req, _ := http.NewRequest(method, srv.URL+path, &rd)
		req.Header.Set("Content-Type", "application/json")
		if who != nil {
			req.Header.Set("X-Test-Account", who.AccountID)
			req.Header.Set("X-Test-Device", who.DeviceID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	s, _ := e.office.sign(t, e.office.template(t, "hundeanmeldung"), nil)
	if st, _ := do("POST", "/v1/forms/templates", s, nil); st != http.StatusUnauthorized {
		t.Fatalf("publish without session: %d", st)
	}
	if st, _ := do("GET", "/v1/forms/templates", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("list without session: %d", st)
	}
	if st, out := do("POST", "/v1/forms/templates", s, &a); st != http.StatusCreated || out["hash"] == "" {
		t.Fatalf("publish: %d %v", st, out)
	}
	rival := actorOf(e.rival)
	for _, c := range []struct {
		method, path string
		body         any
		who          *Actor
		status       int
		typ          string
	}{
		{"POST", "/v1/forms/templates", s, &a, 409, "template-exists"},
		{"POST", "/v1/forms/templates", map[string]any{"jws": "x.y.z"}, &a, 422, "invalid-template"},
		{"POST", "/v1/forms/templates", map[string]any{"jws": s.JWS, "extra": 1}, &a, 400, "invalid-json"},
		{"GET", "/v1/forms/templates/nope/1.0.0", nil, &rival, 404, "not-found"},
		{"GET", "/v1/forms/templates?limit=9999", nil, &rival, 400, "bad-request"},
		{"POST", "/v1/forms/templates/hundeanmeldung/1.0.0/withdraw", nil, &rival, 403, "forbidden"},
		{"POST", "/v1/forms/templates/hundeanmeldung/1.0.0/withdraw", nil, &a, 200, ""},
		{"GET", "/v1/forms/templates/hundeanmeldung/1.0.0", nil, &rival, 410, "template-withdrawn"},
	} {
		st, out := do(c.method, c.path, c.body, c.who)
		typ, _ := out["type"].(string)
		if st != c.status || !strings.HasSuffix(typ, c.typ) {
			t.Errorf("%s %s: %d %v, want %d %s", c.method, c.path, st, out, c.status, c.typ)
		}
	}
}

type actorKey struct{}
