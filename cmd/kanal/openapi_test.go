package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// The API description, docs/openapi.yaml, is checked three ways: every
// route kanald serves is in it (TestOpenAPIDescribesEveryRoute), every
// problem type the code declares is listed in it
// (TestOpenAPIListsEveryProblemType), and every end-to-end test of this
// package talks to kanald through a proxy that validates each request and
// each answer with kin-openapi (oaCheck, put in front by TestMain). A
// test whose exchange breaks the description fails; a run of the whole
// package fails when it left a documented operation unexercised.

const openapiFile = "../../docs/openapi.yaml"

// routeLiteral is a Go string literal that is a ServeMux pattern with a
// method: how every kanal package writes its routes.
var routeLiteral = regexp.MustCompile(`"((?:GET|HEAD|POST|PUT|PATCH|DELETE) /[A-Za-z0-9_./{}-]*)"`)

// goSources returns the repository's non-test Go files.
func goSources(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && d.Name() != ".." && d.Name() != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[p] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// candidatePatterns are the route-shaped literals of the code. Some are
// not routes kanald serves (an outside provider's path a client calls);
// TestOpenAPIDescribesEveryRoute asks the running kanald which are.
func candidatePatterns(t testing.TB) []string {
	seen := map[string]bool{}
	for _, src := range goSources(t) {
		for _, m := range routeLiteral.FindAllStringSubmatch(src, -1) {
			seen[m[1]] = true
		}
	}
	var out []string
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// samplePath fills a pattern's wildcards.
func samplePath(path string) string {
	return regexp.MustCompile(`\{[a-z_]+(\.\.\.)?\}`).ReplaceAllString(path, "x")
}

// servedPatterns sends one unauthenticated request per candidate to a
// fresh kanald and reads back, from /metrics, the route pattern that
// served each: the routes kanald really has, whichever package added
// them and however.
func servedPatterns(t *testing.T) []string {
	srv := kanaldtest.Start(t, bin.kanald)
	var served []string
	for _, p := range candidatePatterns(t) {
		method, path, _ := strings.Cut(p, " ")
		req, _ := http.NewRequest(method, srv.Direct+samplePath(path), strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// A handler that panics leaves no route in the metrics: it is
			// served, and a bug.
			if resp.StatusCode == http.StatusInternalServerError {
				t.Errorf("%s %s answered 500 to a request without a session", method, samplePath(path))
				served = append(served, p)
			}
		}
	}
	resp, err := http.Get(srv.Direct + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	seen := map[string]bool{}
	for _, p := range served {
		seen[p] = true
	}
	for _, m := range regexp.MustCompile(`kanal_http_requests_total\{[^}]*route="([^"]+)"`).FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], " /") { // not the catch-all 404 ("/") or "unmatched"
			seen[m[1]] = true
		}
	}
	var out []string
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func loadOpenAPI(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := openAPIDoc()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// openAPIDoc loads docs/openapi.yaml and checks that it is valid OpenAPI 3.1.
func openAPIDoc() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(openapiFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", openapiFile, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI document: %v", openapiFile, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		return nil, fmt.Errorf("%s is OpenAPI %s, want 3.1", openapiFile, doc.OpenAPI)
	}
	return doc, nil
}

// documented returns the document's operations as ServeMux patterns
// ("GET /v1/groups/{id}").
func documented(doc *openapi3.T) map[string]bool {
	out := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out[method+" "+path] = true
		}
	}
	return out
}

// muxPath is the document's path for a ServeMux pattern: a trailing
// {x...} wildcard is written {x} in OpenAPI.
func muxPath(pattern string) string { return strings.ReplaceAll(pattern, "...}", "}") }

// TestOpenAPIDescribesEveryRoute fails when kanald serves a route the
// document lacks, and prints a stub to start its description from.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	have := documented(doc)
	served := servedPatterns(t)
	if len(served) < 80 {
		t.Fatalf("found only %d routes: %v", len(served), served)
	}
	for _, p := range served {
		if !have[muxPath(p)] {
			method, path, _ := strings.Cut(muxPath(p), " ")
			t.Errorf("kanald serves %s, which docs/openapi.yaml does not describe; a stub:\n  %s:\n    %s:\n      operationId: TODO\n      summary: TODO\n      responses:\n        \"200\":\n          description: TODO\n",
				p, path, strings.ToLower(method))
		}
	}
	for op := range have {
		if !slices.ContainsFunc(served, func(p string) bool { return muxPath(p) == op }) {
			t.Errorf("docs/openapi.yaml describes %s, which kanald does not serve", op)
		}
	}
}

// TestOpenAPIListsEveryProblemType: every problem type the code can emit
// (web.NewType("…") or a literal urn:kanal:problem:… ) is listed in the
// document's x-kanal-problem-types, and the list names no other.
func TestOpenAPIListsEveryProblemType(t *testing.T) {
	doc := loadOpenAPI(t)
	listed := map[string]bool{}
	raw, _ := doc.Extensions["x-kanal-problem-types"].([]any)
	for _, e := range raw {
		m, _ := e.(map[string]any)
		typ, _ := m["type"].(string)
		if typ == "" || m["status"] == nil || m["title"] == nil {
			t.Errorf("x-kanal-problem-types entry without type, status and title: %v", e)
		}
		listed[typ] = true
	}
	code := map[string]string{}
	newType := regexp.MustCompile(`NewType\("([a-z0-9-]+)"\)`)
	literal := regexp.MustCompile(`urn:kanal:problem:([a-z0-9-]+)`)
	for file, src := range goSources(t) {
		for _, re := range []*regexp.Regexp{newType, literal} {
			for _, m := range re.FindAllStringSubmatch(src, -1) {
				code["urn:kanal:problem:"+m[1]] = file
			}
		}
	}
	if len(code) < 50 {
		t.Fatalf("found only %d problem types in the code", len(code))
	}
	for typ, file := range code {
		if !listed[typ] {
			t.Errorf("%s (declared in %s) is not in x-kanal-problem-types", typ, file)
		}
	}
	for typ := range listed {
		if _, ok := code[typ]; !ok {
			t.Errorf("x-kanal-problem-types lists %s, which the code never emits", typ)
		}
	}
}

// oaCheck is the validating proxy: every exchange between the tests and
// kanald goes through it, is validated against the document, and counts
// towards the operations exercised. One oaCheck serves the whole package
// run; it is safe for concurrent use.
type oaCheck struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]map[int]int // operation → status → count
	late []string               // failures that arrived after their test ended
}

func init() {
	// Bodies that are not JSON are checked for their media type only.
	for _, ct := range []string{"application/ocsp-request", "application/ocsp-response", "application/pkix-crl",
		"image/png", "image/svg+xml", "application/xml", "text/xml", "multipart/form-data"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
}

func newOACheck() (*oaCheck, error) {
	doc, err := openAPIDoc()
	if err != nil {
		return nil, err
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &oaCheck{doc: doc, router: r, seen: map[string]map[int]int{}}, nil
}

// oaFront is one proxy, in front of one kanald of one test. Its failures
// are that test's.
type oaFront struct {
	c    *oaCheck
	errs []string // guarded by c.mu
	done bool     // the test has been told; guarded by c.mu
	name string
}

func (f *oaFront) fail(format string, args ...any) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if f.done {
		f.c.late = append(f.c.late, f.name+": "+msg)
		return
	}
	f.errs = append(f.errs, msg)
}

type oaKey struct{}

type oaExchange struct {
	in     *openapi3filter.RequestValidationInput
	op     string
	reqErr error // the request does not match the document
	body   []byte
}

// front is kanaldtest.Front: a validating proxy for the kanald at target.
// When the test ends (the proxy closed, which waits for the exchanges in
// flight), each exchange that broke the document fails it. Benchmarks talk
// to kanald directly: they measure kanald, not the proxy.
func (c *oaCheck) front(t testing.TB, target string) string {
	if _, ok := t.(*testing.B); ok {
		return target
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &oaFront{c: c, name: t.Name()}
	rp := &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		ModifyResponse: func(resp *http.Response) error { return f.checkResponse(resp) },
		FlushInterval:  -1,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := f.checkRequest(r)
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), oaKey{}, ex)))
	}))
	t.Cleanup(func() {
		srv.Close()
		c.mu.Lock()
		errs := f.errs
		f.done = true
		c.mu.Unlock()
		for _, e := range errs {
			t.Errorf("docs/openapi.yaml: %s", e)
		}
	})
	return srv.URL
}

func (f *oaFront) checkRequest(r *http.Request) *oaExchange {
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	// Match as the document sees it: a path on its server.
	m := r.Clone(context.Background())
	m.URL.Scheme, m.URL.Host = "http", "127.0.0.1:8080" // the server the document names
	m.Body = io.NopCloser(bytes.NewReader(body))
	if m.Header.Get("Content-Type") == "" && len(body) > 0 {
		// A body without a media type (a payment provider's webhook) is
		// checked as bytes.
		m.Header.Set("Content-Type", "application/octet-stream")
	}
	// A tile's path has slashes (8/0/x001/234.p/5), which an OpenAPI path
	// parameter cannot match: route on one segment, validate the rest.
	tile, isTile := strings.CutPrefix(r.URL.Path, "/v1/log/tile/")
	if isTile {
		m.URL.Path, m.URL.RawPath = "/v1/log/tile/t", ""
	}
	route, params, err := f.c.router.FindRoute(m)
	if isTile && err == nil {
		params["path"] = tile
	}
	if err != nil {
		f.fail("%s %s: not in docs/openapi.yaml: %v", r.Method, r.URL.Path, err)
		return nil
	}
	in := &openapi3filter.RequestValidationInput{Request: m, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	ex := &oaExchange{in: in, op: r.Method + " " + route.Path, body: body}
	ex.reqErr = openapi3filter.ValidateRequest(context.Background(), in)
	return ex
}

func (f *oaFront) checkResponse(resp *http.Response) error {
	c := f.c
	ex, _ := resp.Request.Context().Value(oaKey{}).(*oaExchange)
	if ex == nil {
		return nil
	}
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		var err error
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return err
		}
	}
	// The tests send bad requests on purpose; kanald must refuse every
	// request the document calls invalid.
	if ex.reqErr != nil && resp.StatusCode < 400 {
		f.fail("%s: kanald answered %d to a request the document calls invalid (%s): %v", ex.op, resp.StatusCode, truncate(ex.body), ex.reqErr)
	}
	c.mu.Lock()
	if c.seen[ex.op] == nil {
		c.seen[ex.op] = map[int]int{}
	}
	c.seen[ex.op][resp.StatusCode]++
	c.mu.Unlock()
	in := &openapi3filter.ResponseValidationInput{RequestValidationInput: ex.in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode == http.StatusNotModified {
		in.Body = io.NopCloser(bytes.NewReader(nil))
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "application/problem+json" {
		var p struct{ Type string }
		json.Unmarshal(body, &p)
		if !c.problemListed(p.Type) {
			f.fail("%s: %d answered with problem type %q, which x-kanal-problem-types lacks", ex.op, resp.StatusCode, p.Type)
		}
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		f.fail("%s: answer %d %s does not match the document: %v", ex.op, resp.StatusCode, truncate(body), err)
	}
	return nil
}

func (c *oaCheck) problemListed(typ string) bool {
	raw, _ := c.doc.Extensions["x-kanal-problem-types"].([]any)
	for _, e := range raw {
		if m, _ := e.(map[string]any); m["type"] == typ {
			return true
		}
	}
	return false
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// wholeRun reports whether this run of the test binary ran every test of
// the package: no -run or -skip filter and not -short, under which the
// long sessions skip themselves. Only then can a documented operation
// that nobody exercised be blamed on missing tests.
func wholeRun() (bool, string) {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false, "-" + strings.TrimPrefix(name, "test.") + " " + f.Value.String()
		}
	}
	if testing.Short() {
		return false, "-short"
	}
	return true, ""
}

// afterTests runs after every test of the package. It reports the
// exchanges that broke the document after their test had ended and, when
// the whole package ran, each documented operation that no test
// exercised; either fails the run. It returns the exit code.
func (c *oaCheck) afterTests(code int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var problems []string
	for _, e := range c.late {
		problems = append(problems, "  docs/openapi.yaml: "+e)
	}
	if whole, why := wholeRun(); !whole {
		fmt.Printf("openapi: not checking that every documented operation was exercised (only part of the package ran: %s)\n", why)
	} else {
		var missing []string
		for op := range documented(c.doc) {
			if len(c.seen[op]) == 0 {
				missing = append(missing, "  "+op)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("docs/openapi.yaml describes %d operations that no end-to-end test of cmd/kanal exercised (add a CLI step, or a call in TestAPICorners):", len(missing)))
			problems = append(problems, missing...)
		}
	}
	if len(problems) == 0 {
		return code
	}
	fmt.Println("FAIL: the exchanges with kanald do not cover docs/openapi.yaml:")
	fmt.Println(strings.Join(problems, "\n"))
	return 1
}

// TestAPICorners exercises, straight over HTTP, what the CLI sessions do
// not reach: refreshing and renewing, the operator's audit log, eID
// without a provider, an organisation's revocation list and OCSP, the
// transparency log, operations endpoints, and the answers of routes whose
// success the sessions show but whose refusals they do not. Through the
// validating proxy, each answer is also checked against docs/openapi.yaml.
func TestAPICorners(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ic, v := srv.Verify(t, "corner@example.org")
	setup := ic.WithToken(v.SetupToken)
	if err := setup.SetPassword(ctx, "Tr0ub4dor&3-but-longer", ""); err != nil {
		t.Fatal(err)
	}
	d := srv.Enrol(t, v.AccountID, setup, "laptop", key, "Tr0ub4dor&3-but-longer")
	op := srv.OperatorToken(t)

	type call struct {
		method, path, token, ctype, body string
		want                             int
	}
	do := func(c call) []byte {
		t.Helper()
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, resp.StatusCode, truncate(b), c.want)
		}
		return b
	}
	login, err := ic.Login(ctx, d.DeviceID, key, "Tr0ub4dor&3-but-longer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Refresh(ctx, login.RefreshToken); err != nil {
		t.Fatal(err)
	}
	do(call{"POST", "/v1/sessions/refresh", "", "application/json", `{"refresh_token":"` + login.RefreshToken + `"}`, 401})
	if _, err := d.Identity.RenewDevice(ctx, d.DeviceID, key); err != nil {
		t.Fatal(err)
	}
	d = srv.Enrol(t, v.AccountID, mustLogin(t, srv, d.DeviceID, key), "tablet", mustKey(), "Tr0ub4dor&3-but-longer")
	tok := d.Token

	org := do(call{"POST", "/v1/admin/orgs", op, "application/json", `{"name":"Bürgeramt Worms","kind":"office"}`, 201})
	var o struct {
		OrgID string `json:"org_id"`
	}
	json.Unmarshal(org, &o)
	do(call{"POST", "/v1/admin/orgs/" + o.OrgID + "/verify", op, "", "", 200})
	// An organisation that requires level high of its agents: an account
	// without an eID is refused as an agent.
	do(call{"PATCH", "/v1/orgs/" + o.OrgID, tok, "application/json", `{"require_high_for_agents":true}`, 403})
	do(call{"PATCH", "/v1/orgs/" + o.OrgID, op, "application/json", `{}`, 400})
	do(call{"PATCH", "/v1/orgs/org_nosuchorg", op, "application/json", `{"require_high_for_agents":true}`, 404})
	do(call{"PATCH", "/v1/orgs/" + o.OrgID, "", "application/json", `{"require_high_for_agents":true}`, 401})
	do(call{"PATCH", "/v1/orgs/" + o.OrgID, op, "application/json", `{"require_high_for_agents":true}`, 200})
	do(call{"POST", "/v1/orgs/" + o.OrgID + "/members", op, "application/json", `{"account_id":"` + d.AccountID + `","role":"agent"}`, 403})
	do(call{"PATCH", "/v1/orgs/" + o.OrgID, op, "application/json", `{"require_high_for_agents":false}`, 200})
	do(call{"GET", "/v1/admin/audit", op, "", "", 200})
	do(call{"GET", "/v1/admin/audit", tok, "", "", 401})
	do(call{"GET", "/v1/directory/accounts/" + d.AccountID + "/devices", tok, "", "", 200})
	do(call{"GET", "/v1/directory/orgs/" + o.OrgID + "/crl", "", "", "", 200})
	do(call{"POST", "/v1/directory/orgs/" + o.OrgID + "/ocsp", "", "application/ocsp-request", "not ocsp", 400})
	// Without an eID provider (cmd/kanal's eID test runs one).
	do(call{"POST", "/v1/eid/start", tok, "application/json", `{"seal_key":"AAAA"}`, 501})
	do(call{"GET", "/v1/eid/callback?state=x&code=y", "", "", "", 501})
	do(call{"POST", "/v1/eid/complete", tok, "application/json", `{"flow_id":"eid_x","challenge_id":"chl_x","signature":"AAAA"}`, 501})
	do(call{"DELETE", "/v1/eid/link", tok, "", "", 501})
	do(call{"GET", "/v1/me", "", "", "", 401})
	do(call{"POST", "/v1/signup", "", "application/json", `{"email":"x@example.org","extra":1}`, 400})

	// The transparency log, public.
	cp := string(do(call{"GET", "/v1/log/checkpoint", "", "", "", 200}))
	do(call{"GET", "/v1/log/key", "", "", "", 200})
	lines := strings.Split(cp, "\n")
	size := "1"
	if len(lines) > 1 {
		size = lines[1]
	}
	do(call{"GET", "/v1/log/proof/inclusion?index=0&size=" + size, "", "", "", 200})
	do(call{"GET", "/v1/log/proof/consistency?old=1&new=" + size, "", "", "", 200})
	do(call{"GET", "/v1/log/entries?start=0&count=1", "", "", "", 200})
	do(call{"GET", "/v1/log/tile/8/0/000.p/1", "", "", "", 200})
	do(call{"GET", "/v1/log/tile/8/0/x999", "", "", "", 400})
	do(call{"GET", "/v1/log/witnesses", "", "", "", 200})
	do(call{"GET", "/v1/log/lookup?kind=nope&device=" + d.DeviceID + "&cert=x", "", "", "", 400})
	do(call{"GET", "/v1/log/witness/checkpoint", "", "", "", 200}) // no witnesses configured: the newest checkpoint
	do(call{"POST", "/v1/log/cosignatures", "", "application/json", `{"checkpoint":"x"}`, 422})

	// Messaging and groups: what the sessions leave out.
	do(call{"PATCH", "/v1/groups/g_00000000000000000000000000000000/members/" + d.AccountID, tok, "application/json", `{"role":"admin"}`, 404})
	do(call{"GET", "/v1/invitations", tok, "", "", 200})
	do(call{"POST", "/v1/groups/g_00000000000000000000000000000000/invitation/accept", tok, "", "", 404})
	do(call{"POST", "/v1/groups/g_00000000000000000000000000000000/invitation/decline", tok, "", "", 404})
	do(call{"POST", "/v1/blobs", tok, "application/octet-stream", "ciphertext", 201})
	do(call{"GET", "/v1/blobs/b_nope", tok, "", "", 404})
	do(call{"POST", "/v1/messages", tok, "application/json", `{"client_id":"c1","to":"acc_nope","envelopes":[]}`, 400})
	do(call{"POST", "/v1/messages", tok, "application/vnd.kanal.bin.v1", "\x02\x00", 400}) // a binary send that ends early
	do(call{"POST", "/v1/messages", tok, "text/plain", "hello", 415})

	// Broadcasts: a citizen follows the office, may read but not post.
	do(call{"PUT", "/v1/broadcasts/" + o.OrgID + "/follower", tok, "", "", 200})
	do(call{"PUT", "/v1/broadcasts/org_nosuchorg/follower", tok, "", "", 404})
	do(call{"GET", "/v1/broadcasts", tok, "", "", 200})
	do(call{"GET", "/v1/broadcasts", "", "", "", 401})
	do(call{"POST", "/v1/broadcasts/" + o.OrgID + "/posts", tok, "application/json", `{"announcement":"x"}`, 403})
	do(call{"GET", "/v1/broadcasts/" + o.OrgID + "/posts/bc_nope", tok, "", "", 404})
	do(call{"DELETE", "/v1/broadcasts/" + o.OrgID + "/follower", tok, "", "", 204})

	// Surveys and payments that the sessions reach only on the happy path.
	do(call{"POST", "/v1/surveys/sv_nope/named-ballots", tok, "application/json", `{"ciphertext":"AAAA"}`, 404})
	do(call{"GET", "/v1/surveys/sv_nope/result.csv", "", "", "", 404})
	do(call{"GET", "/v1/surveys/sv_nope/result.svg", "", "", "", 404})
	do(call{"GET", "/v1/contracts/ct_nope", tok, "", "", 404})
	do(call{"POST", "/v1/admin/payments/bank-entries/be_nope/resolve", op, "application/json", `{"note":"sent back"}`, 404})

	do(call{"POST", "/v1/admin/apps/nope/suspend", op, "", "", 404})
	// The mini-app bridge answers an app's backend only, with its client
	// credentials.
	do(call{"POST", "/v1/bridge/form-requests", tok, "application/json", `{"conversation":"x","template_id":"t1","title":"x"}`, 401})

	// Operations.
	do(call{"GET", "/healthz", "", "", "", 200})
	do(call{"GET", "/readyz", "", "", "", 200})
	do(call{"GET", "/metrics", "", "", "", 200})

	// Revoking a device ends its sessions.
	do(call{"DELETE", "/v1/devices/" + d.DeviceID, tok, "", "", 204})
	do(call{"GET", "/v1/devices", tok, "", "", 401})
}

func mustKey() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// mustLogin returns identity's client with a fresh substantial session of
// device, approving with its key.
func mustLogin(t *testing.T, srv *kanaldtest.Server, device string, key ed25519.PrivateKey) *idclient.Client {
	ic := idclient.New(srv.URL, nil)
	s, err := ic.Login(context.Background(), device, key, "Tr0ub4dor&3-but-longer")
	if err != nil {
		t.Fatal(err)
	}
	return ic.WithToken(s.Token).WithDevice(device, key)
}
