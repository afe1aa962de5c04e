package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
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
  "icon": "https://baeckerei.example/icon.png", "scopes": ["openid", "level", "payments.request", "chat.post", "forms.request"]}`
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
	// differs from srv.URL, since TestMain puts the OpenAPI checking
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

// TestMiniappFormRequest is an office's mini-app asking the citizen for a
// form through the bridge: the form.request arrives as a server notice in
// the citizen's conversation with the office, 'kanal form fill' takes the
// office from that conversation and the template's verified publisher,
// and the answers go end to end to the office's agents.
func TestMiniappFormRequest(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	work := t.TempDir()
	s := &session{t: t, work: work, vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	var steps []step
	for _, u := range []struct{ home, email, v string }{{"mia", "mia@example.org", "MIA"}, {"carl", "carl@example.org", "CARL"}} {
		steps = append(steps,
			step{home: u.home, cmd: "kanal register " + u.email},
			step{do: func(t *testing.T) { s.vars["CODE"] = srv.Code(t, u.email) }},
			step{home: u.home, cmd: "kanal verify $CODE", set: map[string]string{u.v: `account (\S+) `}},
			step{home: u.home, cmd: "kanal password"},
			step{home: u.home, cmd: "kanal device enroll --name " + u.home},
			step{home: u.home, cmd: "kanal login", want: []string{"level substantial"}},
		)
	}
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	app := newAppServer(t)
	s.run(append(steps, []step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind office 'Bürgeramt Musterstadt'", env: op, set: map[string]string{"ORG": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role admin $ORG mia@example.org", env: op},
		{home: "carl", cmd: "kanal inbox"},
		{home: "mia", cmd: "kanal inbox"},
		{home: "mia", cmd: "kanal form publish builtin:sperrmuell --org $ORG", want: []string{"Published sperrmuell 1.0.0"}},
		// Another office, which Mia also works for, publishes a form the
		// first office's app must not send.
		{cmd: "kanal admin org create --kind office 'Ordnungsamt Musterstadt'", env: op, set: map[string]string{"ORG2": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG2", env: op},
		{cmd: "kanal admin org member add --role admin $ORG2 mia@example.org", env: op},
		{home: "mia", cmd: "kanal form publish builtin:hundeanmeldung --org $ORG2", want: []string{"Published hundeanmeldung 1.0.0"}},
		{do: func(t *testing.T) { s.vars["APP"] = app.manifest(t, work, "sperrmuell", s.vars["ORG"]) }},
		{home: "mia", cmd: "kanal org app register $APP", set: map[string]string{"SECRET": `client_secret=(\S+)`}},
		{cmd: "kanal admin apps approve sperrmuell", env: op},
		{home: "carl", cmd: "kanal app consent sperrmuell --all", want: []string{"Granted:"}},
		{home: "carl", cmd: "kanal app open sperrmuell", set: map[string]string{"URL": `(?m)^(http\S+launch_token=\S+)$`}},
	}...))

	// The app's backend asks for a form, in the conversation it was
	// opened from: one the office did not publish is refused and nothing
	// is posted; its own arrives as the app's request, which the citizen
	// fills in and sends end to end to the office.
	conv := launchConversation(t, s.vars["URL"])
	formAsk := func(template string) (int, string) {
		return bridgePost(t, srv.URL+"/v1/bridge/form-requests", "sperrmuell", s.vars["SECRET"],
			`{"conversation":"`+conv+`","template_id":"`+template+`","title":"Sperrmüll abholen"}`)
	}
	for _, other := range []string{"hundeanmeldung", "bewohnerparkausweis"} { // another office's; nobody's
		if code, body := formAsk(other); code != http.StatusUnprocessableEntity || !strings.Contains(body, "unknown-form") {
			t.Fatalf("%s, a form the office did not publish: %d %s", other, code, body)
		}
	}
	if code, body := formAsk("sperrmuell"); code != http.StatusNoContent {
		t.Fatalf("form request: %d %s", code, body)
	}
	if err := os.WriteFile(filepath.Join(work, "answers.json"), []byte(`{"family_name":"Korn","given_name":"Carl","street":"Hauptstraße 1",
"postcode":"12345","city":"Musterstadt","phone":"+49 30 123456","items":[{"item":"Ofen","count":1}],"volume_m3":1.5,"appliances":false,"kerbside":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run([]step{
		{home: "carl", cmd: "kanal inbox --wait 3s", want: []string{"[mini-app of the office, posted by kanal] form request", "Sperrmüll abholen (sperrmuell 1.0.0)"},
			not: []string{"hundeanmeldung"}, set: map[string]string{"FREQ": `form request (fr_[a-z0-9]+):`}},
		{home: "carl", cmd: "kanal form fill $FREQ --answers answers.json", want: []string{"Gesendet / submitted: case"}},
		{home: "mia", cmd: "kanal inbox --wait 3s", want: []string{"(sperrmuell 1.0.0) submitted: case", "answers checked"}},
	})
}

// launchConversation is the conversation handle in a launch URL's token
// (its payload, read without checking: the bridge checks the handle).
func launchConversation(t *testing.T, launch string) string {
	t.Helper()
	u, err := url.Parse(launch)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(u.Query().Get("launch_token"), ".")
	if len(parts) != 3 {
		t.Fatalf("launch token in %s", launch)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Conversation string `json:"kanal_conversation"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Conversation == "" {
		t.Fatalf("launch token payload %s: %v", payload, err)
	}
	return c.Conversation
}

// bridgePost calls the bridge as an app's backend, with its client
// credentials.
func bridgePost(t *testing.T, u, id, secret, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
