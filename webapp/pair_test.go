package webapp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// cliUser runs the real kanal CLI, one process per command, in a
// KANAL_HOME of its own, as cmd/kanal's end-to-end tests do.
type cliUser struct {
	t   *testing.T
	bin string
	env []string
}

// buildKanal builds cmd/kanal for this test.
func buildKanal(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kanal")
	if b, err := exec.Command("go", "build", "-o", out, "github.com/kanal-server/kanal/cmd/kanal").CombinedOutput(); err != nil {
		t.Fatalf("build kanal: %v\n%s", err, b)
	}
	return out
}

func newCLIUser(t *testing.T, bin string, srv *kanaldtest.Server) *cliUser {
	return &cliUser{t: t, bin: bin, env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_HOME=" + filepath.Join(t.TempDir(), "home"),
		"KANAL_SERVER=" + srv.URL, "KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
}

// run runs kanal with args and returns stdout and stderr; it fails the
// test unless the command succeeds.
func (c *cliUser) run(args ...string) (stdout, stderr string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	c.t.Logf("$ kanal %s\n%s%s", strings.Join(args, " "), o.String(), e.String())
	if err != nil {
		c.t.Fatalf("kanal %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String()
}

func match(t *testing.T, re, s string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in %q", re, s)
	}
	return m[1]
}

// TestWebPairWithCLI: Bob has an account with a device, the kanal CLI on
// his computer; Alice, in her browser, writes to him. Bob adds his
// browser to the account with the keyboard: the page shows a request and
// its key's fingerprint, 'kanal device approve' prints the same
// fingerprint and the certificate, Bob pastes it in, and the browser is a
// device of his account ('kanal device list' shows it). Alice's next
// message reaches both the CLI and the browser; Alice's page shows, as a
// status line in her conversation with Bob, that he has a new device (her
// SDK accepted it through its certificate and the transparency log's
// proof), and her messages show delivered and then read. When Bob's CLI
// device changes its key, the browser shows kanal's signed notice in the
// account's own conversation. axe-core finds no WCAG 2.1 A/AA violation
// on each new state, in German and English.
func TestWebPairWithCLI(t *testing.T) {
	chromium(t)
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	bob := newCLIUser(t, buildKanal(t), srv)
	bob.run("register", "bob@example.org")
	out, _ := bob.run("verify", srv.Code(t, "bob@example.org"))
	bobAccount := match(t, `account (acc_\S+)`, out)
	bob.run("password")
	out, _ = bob.run("device", "enroll", "--name", "laptop")
	cliDevice := match(t, `Enrolled device (\S+) `, out)
	bob.run("login")

	// Alice writes to Bob's one device; her SDK pins his devices.
	alice := newTab(t, "alice")
	alice.signUp(srv, dir, "alice@example.org", "Alice", "alice passphrase")
	alice.do("open Bob", typeEnter("#new-peer", bobAccount), visible("#h-conv"))
	alice.send("Hallo Bob")
	out, _ = bob.run("inbox")
	if !strings.Contains(out, "Hallo Bob") {
		t.Fatalf("Bob's CLI did not get Alice's message:\n%s", out)
	}
	alice.do("delivered", visibleX(`//ol[@id="messages"]/li[contains(@class,"mine")][p[.="Hallo Bob"]]/span[@class="meta"][contains(., "delivered") or contains(., "zugestellt")]`))

	// Bob adds his browser to the account.
	web := newTab(t, "bob-browser")
	web.do("open the app", chromedp.Navigate(srv.URL+"/"), visible("#email"))
	web.do("to pairing", chromedp.Focus(chromedp.CSS("#to-pair")), chromedp.KeyEvent(kb.Enter), visible("#pair-pass"))
	web.axe("pair")
	web.shot(dir, "pair")
	web.do("make the request", typeEnter("#pair-pass", "bob browser passphrase"), visible("#pair-out"))
	web.axe("pair request")
	web.shot(dir, "pair-request")
	web.do("in German", chromedp.Focus(chromedp.CSS("#lang")), chromedp.KeyEvent(kb.Enter), visibleX(`//h2[@id="h-pair-out"][.="Auf Ihrem Gerät bestätigen"]`))
	web.axe("pair request, German")
	fp := run(web, "fingerprint", chromedp.Evaluate[string](`document.getElementById("pair-fp").textContent`))
	request := run(web, "request", chromedp.Evaluate[string](`document.getElementById("pair-request").value`))
	if !regexp.MustCompile(`^[0-9A-F]{4}( [0-9A-F]{4}){7}$`).MatchString(fp) || !strings.HasPrefix(request, "-----BEGIN CERTIFICATE REQUEST-----") {
		t.Fatalf("the page shows fingerprint %q and request %.60q", fp, request)
	}
	reqFile := filepath.Join(t.TempDir(), "request.pem")
	if err := os.WriteFile(reqFile, []byte(request), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, msg := bob.run("device", "approve", "--name", "Browser", reqFile)
	browserDevice := match(t, `Approved device (\S+) `, msg)
	if !strings.Contains(msg, "key fingerprint "+fp) {
		t.Fatalf("kanal device approve shows another fingerprint than the page's %s:\n%s", fp, msg)
	}
	web.do("install the certificate", chromedp.SendKeys(chromedp.CSS("#pair-cert"), strings.TrimSpace(cert)),
		chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter), visible("#h-app"))
	me := run(web, "me", chromedp.Evaluate[string](`JSON.stringify(state.me)`))
	if !strings.Contains(me, `"account":"`+bobAccount+`"`) || !strings.Contains(me, `"device":"`+browserDevice+`"`) {
		t.Fatalf("the browser is %s, want device %s of %s", me, browserDevice, bobAccount)
	}
	web.axe("paired, German")
	web.shot(dir, "paired")
	if out, _ := bob.run("device", "list"); !strings.Contains(out, browserDevice) || !strings.Contains(out, "Browser") {
		t.Fatalf("the account's device list lacks the browser %s:\n%s", browserDevice, out)
	}

	// Alice's next message reaches both of Bob's devices; her page tells
	// her Bob has a new device, in their conversation.
	alice.send("Zweites Hallo")
	alice.do("the new device is shown", visibleX(fmt.Sprintf(`//ol[@id="messages"]/li[@class="notice"]/p[contains(., %q)]`, browserDevice)))
	alice.axe("new device notice")
	alice.shot(dir, "new-device")
	web.do("Alice's message in the browser", visibleX(`//ul[@id="convs"]//button`),
		chromedp.Focus(chromedp.Search(`//ul[@id="convs"]//button[not(contains(., "Ihr Konto"))]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(`//ol[@id="messages"]/li/p[.="Zweites Hallo"]`))
	web.axe("conversation, German")
	web.shot(dir, "conversation")
	if out, _ := bob.run("inbox"); !strings.Contains(out, "Zweites Hallo") {
		t.Fatalf("Bob's CLI did not get Alice's second message:\n%s", out)
	}
	// Bob's browser showed it: Alice sees it read.
	alice.do("read", visibleX(`//ol[@id="messages"]/li[contains(@class,"mine")][p[.="Zweites Hallo"]]/span[@class="meta"][contains(., "read") or contains(., "gelesen")]`))
	alice.shot(dir, "read")

	// Bob's CLI device takes a new key: kanald's signed device.change
	// reaches the browser, a status line in the account's conversation.
	bob.run("device", "renew", "--new-key", "ed25519")
	web.do("the key change is shown", visibleX(`//ul[@id="convs"]//button[contains(., "Ihr Konto")]`),
		chromedp.Focus(chromedp.Search(`//ul[@id="convs"]//button[contains(., "Ihr Konto")]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(fmt.Sprintf(`//ol[@id="messages"]/li[@class="notice"]/p[contains(., %q)]`, cliDevice)))
	web.axe("device notice, German")
	web.shot(dir, "device-notice")
	web.do("in English", chromedp.Focus(chromedp.CSS("#lang")), chromedp.KeyEvent(kb.Enter),
		visibleX(fmt.Sprintf(`//ol[@id="messages"]/li[@class="notice"]/p[contains(., "Your device %s has a new key")]`, cliDevice)))
	web.axe("device notice, English")

	// The reverse: Bob's browser approves a tablet's request (the CLI in
	// another KANAL_HOME), showing the fingerprint first, with the
	// account password; the tablet installs the certificate and logs in.
	tablet := newCLIUser(t, bob.bin, srv)
	request, msg = tablet.run("device", "request", "--key", "ed25519")
	tabletFP := match(t, `Key fingerprint ([0-9A-F ]+):`, msg)
	web.do("check the request", chromedp.Focus(chromedp.CSS("#approve summary")), chromedp.KeyEvent(kb.Enter),
		chromedp.SendKeys(chromedp.CSS("#approve-request"), strings.TrimSpace(request)), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter),
		visible("#approve-name"))
	if got := run(web, "fingerprint", chromedp.Text(chromedp.CSS("#approve-fp"))); got != tabletFP {
		t.Fatalf("the page shows fingerprint %q for the tablet's request, kanal device request %q", got, tabletFP)
	}
	web.axe("approve, English")
	web.do("approve", chromedp.SendKeys(chromedp.CSS("#approve-name"), "Tablet"), chromedp.KeyEvent(kb.Tab),
		typeEnter("#approve-pass", "Tr0ub4dor&3-but-longer"), visible("#approve-cert"))
	web.axe("approved, English")
	web.shot(dir, "approved")
	tabletCert := run(web, "certificate", chromedp.Evaluate[string](`document.getElementById("approve-cert").value`))
	certFile := filepath.Join(t.TempDir(), "tablet.pem")
	if err := os.WriteFile(certFile, []byte(tabletCert), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = tablet.run("device", "install", certFile)
	if !strings.Contains(out, "of account "+bobAccount) {
		t.Fatalf("the tablet installed %q", out)
	}
	tablet.run("login")
}

// TestAttackForgedNotice: an adversary who can write kanald's database
// (but holds no notary key) puts notices into the browser's mailbox: one
// signed with a key of their own under kanald's notary certificate, a
// real notary signature for another device, and one for this device but
// in the wrong conversation for its kind; and a genuine notice twice. The
// page shows the genuine one, once, and nothing of the others.
func TestAttackForgedNotice(t *testing.T) {
	chromium(t)
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	web := newTab(t, "citizen")
	account := web.signUp(srv, dir, "clara@example.org", "Clara", "citizen passphrase")
	device := run(web, "device", chromedp.Evaluate[string](`state.me.device`))
	self := messaging.DirectConversation(account, account)

	caDir := filepath.Join(srv.DataDir, "ca")
	authority, _, err := ca.LoadOrCreateDir(caDir, "kanal", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	notary, err := authority.Notary(caDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, ownKey, _ := ed25519.GenerateKey(rand.Reader)
	seal := func(id, recipient, conv string, body kind.Body, sign func(purpose string, st []byte) []byte) []byte {
		m, err := kind.New("kanal_"+id, time.Now(), body)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := m.Marshal()
		st := (&messaging.NoticeStatement{ID: "ntc_" + id, Time: time.Now().UTC().Truncate(time.Millisecond), Kind: m.Kind,
			Recipient: recipient, Conversation: conv, Message: raw}).Marshal()
		b, _ := json.Marshal(messaging.NoticeBody{Statement: st, Signature: sign(messaging.NoticePurpose(m.Kind), st), Notary: notary.Certificate().Raw})
		return b
	}
	real := notary.Sign
	forged := func(purpose string, st []byte) []byte {
		// The notary's message format (identity/ca), under the adversary's key.
		return ed25519.Sign(ownKey, append([]byte("kanal notary v1\x00"+purpose+"\x00"), st...))
	}
	keyChange := func(dev string) kind.Body {
		return &kind.DeviceChangeBody{AccountID: account, DeviceID: dev, Op: "key"}
	}
	genuine := seal("genuine", device, self, keyChange("dev_genuine"), real)

	d, err := db.Open(context.Background(), "", srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i, ct := range [][]byte{
		seal("forged", device, self, keyChange("dev_forged"), forged),
		seal("other", "dev_someoneelse", self, keyChange("dev_otherdevice"), real),
		seal("misplaced", device, self, &kind.OrgChangeBody{OrgID: "org_misplaced", Op: "erased", AccountID: account}, real),
		genuine,
		genuine, // replayed under another envelope id
	} {
		plant(t, d, device, fmt.Sprintf("env_planted%d", i), self, ct)
	}

	// The browser reads its mailbox when it connects.
	web.do("reload", chromedp.Reload(), visible("#unlock-pass"))
	web.do("unlock", typeEnter("#unlock-pass", "citizen passphrase"), visible("#h-app"))
	web.do("the genuine notice", visibleX(`//ul[@id="convs"]//button[contains(., "Your account") or contains(., "Ihr Konto")]`),
		chromedp.Focus(chromedp.Search(`//ul[@id="convs"]//button[contains(., "Your account") or contains(., "Ihr Konto")]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(`//ol[@id="messages"]/li[@class="notice"]/p[contains(., "dev_genuine")]`))
	web.shot(dir, "notices")
	// Every planted envelope has been read and acknowledged (the refused
	// ones too), so the page has seen all of them.
	deadline := time.Now().Add(time.Minute)
	for n := -1; n != 0; {
		if err := d.QueryRow(context.Background(), `SELECT count(*) FROM mailbox WHERE device_id = $1`, device).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d planted envelopes still wait in the mailbox", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	shown := run(web, "notices", chromedp.Evaluate[string](`JSON.stringify(state.entries.filter(e => e.notice).map(e => e.notice))`))
	if strings.Count(shown, "dev_genuine") != 1 || strings.Contains(shown, "forged") || strings.Contains(shown, "otherdevice") || strings.Contains(shown, "misplaced") {
		t.Fatalf("the page shows notices %s; want the genuine one once", shown)
	}
	page := run(web, "page text", chromedp.Evaluate[string](`document.body.innerText`))
	for _, s := range []string{"dev_forged", "dev_otherdevice", "org_misplaced", "[device.change]", "[org.change]"} {
		if strings.Contains(page, s) {
			t.Errorf("the page shows %q", s)
		}
	}
	web.axe("notice")
}

// plant appends an envelope "from kanal" to device's mailbox with plain
// SQL, as an adversary with write access to the database would.
func plant(t *testing.T, d *db.DB, device, id, conv string, ciphertext []byte) {
	t.Helper()
	now := time.Now()
	err := d.Tx(context.Background(), func(tx *sql.Tx) error {
		var seq int64
		err := tx.QueryRow(`INSERT INTO mailbox_heads (device_id, last_seq) VALUES ($1, 1)
			ON CONFLICT (device_id) DO UPDATE SET last_seq = mailbox_heads.last_seq + 1 RETURNING last_seq`, device).Scan(&seq)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO mailbox (device_id, seq, envelope_id, conversation, sender_device, class, ciphertext, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, device, seq, id, conv, messaging.NoticeSender, string(kind.ClassMessage),
			ciphertext, now.UnixMilli(), now.Add(time.Hour).UnixMilli())
		return err
	})
	if err != nil {
		t.Fatalf("plant %s: %v", id, err)
	}
}
