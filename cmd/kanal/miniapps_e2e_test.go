package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/miniapps/example/bakery"
)

// appServer is a mini-app's web server, started before its manifest
// names its origin; the app is set once registered.
type appServer struct {
	srv *httptest.Server
	h   atomic.Pointer[http.Handler]
}

func newAppServer(t *testing.T) *appServer {
	a := &appServer{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := a.h.Load()
		if h == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *appServer) manifest(t *testing.T, dir, id, org string) string {
	t.Helper()
	m := `{"app_id": "` + id + `", "org_id": "` + org + `", "name": "` + id + `", "version": 1,
  "origins": ["` + a.srv.URL + `"], "redirect_uris": ["` + a.srv.URL + `/callback"], "launch_url": "` + a.srv.URL + `/launch",
  "icon": "https://baeckerei.example/icon.png", "scopes": ["openid", "level", "payments.request", "chat.post"]}`
	p := filepath.Join(dir, id+".json")
	if err := os.WriteFile(p, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// browser is the citizen's browser: cookies, following redirects.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var subPattern = regexp.MustCompile(`<code id="sub">([a-z2-7]+)</code>`)

// TestMiniappSession is the example mini-app against the real kanald and
// CLI: a merchant registers two apps, the operator approves them, a
// citizen consents and opens the bakery from kanal, is signed in by the
// app with go-oidc (discovery, code flow with PKCE, ID token verified),
// sees another subject in the second app, orders: the payment request and
// the app's post reach the citizen's CLI; after the citizen revokes the
// consent the app's refresh fails.
func TestMiniappSession(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	work := t.TempDir()
	s := &session{t: t, work: work, vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	var signup []step
	for _, u := range []struct{ home, email, v string }{{"mia", "mia@example.org", "MIA"}, {"carl", "carl@example.org", "CARL"}} {
		signup = append(signup,
			step{home: u.home, cmd: "kanal register " + u.email},
			step{do: func(t *testing.T) { s.vars["CODE"] = srv.Code(t, u.email) }},
			step{home: u.home, cmd: "kanal verify $CODE", set: map[string]string{u.v: `account (\S+) `}},
			step{home: u.home, cmd: "kanal password"},
			step{home: u.home, cmd: "kanal device enroll --name " + u.home},
			step{home: u.home, cmd: "kanal login", want: []string{"level substantial"}},
		)
	}
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run(append(signup, []step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind merchant 'Bäckerei Korn'", env: op, set: map[string]string{"ORG": `(?m)^(\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role seller $ORG mia@example.org", env: op},
		{home: "carl", cmd: "kanal inbox"},
	}...))

	bakeryApp, poolApp := newAppServer(t), newAppServer(t)
	s.vars["BAKERY"] = bakeryApp.manifest(t, work, "bakery", s.vars["ORG"])
	s.vars["POOL"] = poolApp.manifest(t, work, "pool", s.vars["ORG"])
	s.run([]step{
		{home: "mia", cmd: "kanal org app register $BAKERY", want: []string{"the operator must approve it"}, set: map[string]string{"BSECRET": `client_secret=(\S+)`}},
		{home: "mia", cmd: "kanal org app register $POOL", set: map[string]string{"PSECRET": `client_secret=(\S+)`}},
		{home: "carl", cmd: "kanal apps", want: []string{"no apps"}},
		{home: "carl", cmd: "kanal app open bakery", exit: 1, want: []string{"not approved"}},
		{cmd: "kanal admin apps list", env: op, want: []string{"bakery", "pending"}},
		{cmd: "kanal admin apps approve bakery", env: op, want: []string{"Approved bakery version 1"}},
		{cmd: "kanal admin apps approve pool", env: op},
		{home: "carl", cmd: "kanal apps", want: []string{"bakery", "Bäckerei Korn ($ORG)", "payments.request"}},
		{home: "carl", cmd: "kanal app open bakery", exit: 1, want: []string{"consent"}},
		{home: "carl", cmd: "kanal app consent bakery --all", want: []string{"verified organisation $ORG", "ask you for payments", "Granted:"}},
		{home: "carl", cmd: "kanal app consent pool --all"},
		{home: "carl", cmd: "kanal app open bakery", set: map[string]string{"URL": `(?m)^(http\S+launch_token=\S+)$`}},
		{home: "carl", cmd: "kanal app open pool", set: map[string]string{"PURL": `(?m)^(http\S+launch_token=\S+)$`}},
	})

	ctx := context.Background()
	// The issuer is kanald's own address (its KANAL_PUBLIC_URL), which
	// differs from srv.URL when the OpenAPI city day puts its checking
	// proxy in front: the OpenID Provider's endpoints are described by its
	// discovery document, not by docs/openapi.yaml.
	issuer := srv.Direct + "/oidc"
	b, err := bakery.New(ctx, bakery.Config{Issuer: issuer, Kanal: srv.URL, ClientID: "bakery", ClientSecret: s.vars["BSECRET"],
		BaseURL: bakeryApp.srv.URL, Creditor: "Bäckerei Korn", IBAN: "DE02120300000000202051"})
	if err != nil {
		t.Fatal(err)
	}
	h := b.Handler()
	bakeryApp.h.Store(&h)
	p, err := bakery.New(ctx, bakery.Config{Issuer: issuer, Kanal: srv.URL, ClientID: "pool", ClientSecret: s.vars["PSECRET"],
		BaseURL: poolApp.srv.URL, Creditor: "Stadtbad", IBAN: "DE02120300000000202051"})
	if err != nil {
		t.Fatal(err)
	}
	ph := p.Handler()
	poolApp.h.Store(&ph)

	// The citizen opens the printed URL: the app verifies the launch
	// token, signs in through kanal with PKCE, and shows the subject.
	carl := browser()
	code, page := get(t, carl, s.vars["URL"])
	m := subPattern.FindStringSubmatch(page)
	if code != http.StatusOK || m == nil || !strings.Contains(page, "level substantial") {
		t.Fatalf("bakery after sign-in: %d\n%s", code, page)
	}
	code, poolPage := get(t, browser(), s.vars["PURL"])
	pm := subPattern.FindStringSubmatch(poolPage)
	if code != http.StatusOK || pm == nil || pm[1] == m[1] {
		t.Fatalf("pool: %d, subjects %v and %v", code, m, pm)
	}
	// The launch URL is good once.
	if code, _ := get(t, browser(), s.vars["URL"]); code == http.StatusOK {
		t.Fatal("a used launch token signed in again")
	}

	// An order: a payment request and a confirmation, both in the chat.
	code, body := post(t, carl, bakeryApp.srv.URL+"/order", url.Values{"item": {"2 Brezeln"}, "cents": {"450"}})
	req := regexp.MustCompile(`pr_[a-z2-7]+`).FindString(body)
	if code != http.StatusOK || req == "" {
		t.Fatalf("order: %d %s", code, body)
	}
	s.vars["REQ"] = req
	s.run([]step{
		{home: "carl", cmd: "kanal inbox --wait 3s", want: []string{"payment $REQ open", `[mini-app bakery "bakery", posted by kanal] Bestellung bestätigt: 2 Brezeln, 4,50 €`}},
		{home: "carl", cmd: "kanal pay show $REQ", want: []string{"EUR 4.50", "open"}},
		{home: "carl", cmd: "kanal consent list", want: []string{"bakery", "chat.post", "pool"}},
	})
	if code, body := post(t, carl, bakeryApp.srv.URL+"/refresh", nil); code != http.StatusOK {
		t.Fatalf("refresh before revocation: %d %s", code, body)
	}
	s.run([]step{
		{home: "carl", cmd: "kanal consent revoke bakery", want: []string{"Revoked"}},
		{home: "carl", cmd: "kanal consent list", want: []string{"(revoked)"}},
	})
	if code, body := post(t, carl, bakeryApp.srv.URL+"/refresh", nil); code != http.StatusUnauthorized || !strings.Contains(body, "invalid_grant") {
		t.Fatalf("refresh after revocation: %d %s", code, body)
	}
	// And the bridge refuses the app for this citizen.
	if code, body := post(t, carl, bakeryApp.srv.URL+"/order", url.Values{"item": {"1 Brot"}, "cents": {"380"}}); code == http.StatusOK {
		t.Fatalf("order after revocation: %d %s", code, body)
	}
}
