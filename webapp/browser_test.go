package webapp_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// The browser tests drive Debian's Chromium, headless, against the real
// kanald binary: the web app as a citizen and an agent use it, the
// keyboard only, axe-core checking each page for WCAG 2.1 A and AA
// violations, and a screenshot of every step in the artefact folder
// (KANAL_TEST_ARTEFACTS, or the test's temporary directory).

var kanald string

func TestMain(m *testing.M) { kanaldtest.Main(m, &kanald) }

// axe-core 4.11.1, from the npm package (axe.min.js, sha256
// 7dbfabdfc6062936d79c873ddbb5f811a1219fca3928bd8cc9dd81f1e65f4720; MPL-2.0,
// testdata/axe-LICENSE).
//
//go:embed testdata/axe-4.11.1.min.js
var axeSource string

// chromium finds the browser; without one the browser tests are skipped
// (CI installs Debian's chromium).
func chromium(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped under -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH: .ci/run installs it (apt-get install chromium); under CI the browser tests must run")
	}
	t.Skip("no chromium on PATH: browser test not run")
	return ""
}

// browser starts a headless Chromium with a fresh profile, and the extra
// options, and returns a context for its first tab.
func browser(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}, extra...)...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// tab is one browser context (its own profile: cookies, IndexedDB) with
// its own tab, for one person.
type tab struct {
	t       testing.TB
	ctx     context.Context
	name    string
	timeout time.Duration // of one run; 90 s if zero
}

var shots atomic.Int32

func artefacts(t testing.TB) string {
	dir := os.Getenv("KANAL_TEST_ARTEFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newTab starts a browser of its own for one person: its own profile
// (IndexedDB, keys), as two people on two machines. (A second
// BrowserContext in one Chromium would do too, but chromedp v0.23's
// Evaluate does not answer in one.)
func newTab(t testing.TB, name string) *tab {
	return &tab{t: t, ctx: browser(t), name: name}
}

// run runs one action in the tab, with a time limit, and fails the test
// with the page's status line when it fails.
func run[T any](b *tab, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	limit := b.timeout
	if limit == 0 {
		limit = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(b.ctx, limit)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		sctx, scancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer scancel()
		status, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`document.getElementById("status").textContent`))
		b.t.Fatalf("%s: %s: %v (page status: %q)", b.name, what, err, status)
	}
	return v
}

func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	run(b, what, chromedp.Steps(steps...))
}

// shot writes a screenshot of the page to the artefact folder.
func (b *tab) shot(dir, step string) {
	b.t.Helper()
	png := run(b, "screenshot "+step, chromedp.FullScreenshot(100))
	name := filepath.Join(dir, fmt.Sprintf("%02d-%s-%s.png", shots.Add(1), b.name, step))
	if err := os.WriteFile(name, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// axe runs axe-core on the page as it is and fails on any WCAG 2.1 A or
// AA violation.
func (b *tab) axe(step string) {
	b.t.Helper()
	if !run(b, "axe loaded?", chromedp.Evaluate[bool](`typeof axe !== "undefined"`)) {
		run(b, "inject axe", chromedp.Evaluate[chromedp.Void](axeSource))
	}
	out := run(b, "axe "+step, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
		.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}))))`,
		chromedp.EvalAwaitPromise))
	var violations []map[string]any
	if err := json.Unmarshal([]byte(out), &violations); err != nil {
		b.t.Fatal(err)
	}
	for _, v := range violations {
		b.t.Errorf("%s, %s: WCAG violation %v: %v at %v", b.name, step, v["id"], v["help"], v["nodes"])
	}
}

// typeEnter types into the element and presses Enter, as a keyboard user
// does.
func typeEnter(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), text+kb.Enter)
}

func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

func visibleX(xpath string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.Search(xpath))
}

// signUp signs a person up in the web app and enrols the browser.
func (b *tab) signUp(srv *kanaldtest.Server, dir, email, display, pass string) (account string) {
	b.t.Helper()
	b.do("open the app", chromedp.Navigate(srv.URL+"/"), visible("#email"))
	b.axe("signup")
	b.shot(dir, "signup")
	b.do("ask for a code", typeEnter("#email", email), visible("#code"))
	b.axe("verify")
	b.shot(dir, "verify")
	b.do("type the code", typeEnter("#code", srv.Code(b.t, email)), visible("#display"))
	b.axe("enrol")
	b.shot(dir, "enrol")
	b.do("enrol", chromedp.SendKeys(chromedp.CSS("#display"), display), typeEnter("#pass", pass), visible("#h-app"))
	account = run(b, "account", chromedp.Evaluate[string](`state.me.account`))
	if !strings.HasPrefix(account, "acc_") {
		b.t.Fatalf("%s: enrolled as %q", b.name, account)
	}
	return account
}

// send types a message into the open conversation and sends it with
// the keyboard (Tab to the button, Enter).
func (b *tab) send(text string) {
	b.t.Helper()
	b.do("send "+text, chromedp.SendKeys(chromedp.CSS("#text"), text), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter),
		visibleX(fmt.Sprintf(`//ol[@id="messages"]/li[contains(@class,"mine")]/p[.=%q]`, text)))
}
