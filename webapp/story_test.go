package webapp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestWebCitizenAndOffice: in two browser contexts against the real
// kanald, a citizen signs up, enrols the browser and writes to the
// Bürgeramt; an agent, in the other context, answers as the office; the
// citizen sees the answer marked as the office's, with the agent who wrote
// it. Every page passes axe-core's WCAG 2.1 A and AA rules.
func TestWebCitizenAndOffice(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
	org, err := op.CreateOrg(ctx, "Bürgeramt Musterstadt", "office")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}

	citizen := newTab(t, "citizen")
	agent := newTab(t, "agent")

	// The agent enrols her browser; the operator makes her an agent of the
	// Bürgeramt; she unlocks the app again and sees the office's inbox.
	agentAccount := agent.signUp(srv, dir, "anna@buergeramt.example", "Anna Agent", "agent passphrase")
	if _, err := op.AddMember(ctx, org.OrgID, agentAccount, "agent"); err != nil {
		t.Fatal(err)
	}
	agent.do("reload", chromedp.Reload(), visible("#unlock-pass"))
	agent.axe("unlock")
	agent.shot(dir, "unlock")
	agent.do("unlock", typeEnter("#unlock-pass", "agent passphrase"), visible("#h-app"))
	who := run(agent, "whoami", chromedp.Text(chromedp.CSS("#whoami")))
	if !strings.Contains(who, "Bürgeramt Musterstadt") {
		t.Fatalf("the agent's app does not show the office's inbox: %q", who)
	}

	// The citizen signs up and writes to the Bürgeramt.
	citizen.signUp(srv, dir, "clara@example.org", "Clara Citizen", "citizen passphrase")
	citizen.do("switch to German", chromedp.Focus(chromedp.CSS("#lang")), chromedp.KeyEvent(kb.Enter),
		visibleX(`//h1[@id="h-app"][.="Unterhaltungen"]`))
	if l := run(citizen, "lang", chromedp.Evaluate[string](`document.documentElement.lang`)); l != "de" {
		t.Fatalf("page language %q after switching to German", l)
	}
	citizen.axe("conversations")
	citizen.shot(dir, "conversations")
	citizen.do("open the Bürgeramt", typeEnter("#new-peer", org.OrgID),
		visibleX(`//h2[@id="h-conv"][contains(., "Bürgeramt Musterstadt")]`))
	citizen.send("Ich brauche einen neuen Personalausweis.")
	citizen.axe("conversation")
	citizen.shot(dir, "wrote")

	// The agent sees the citizen's message in the office's inbox, by the
	// citizen's name, and answers as the office.
	agent.do("the citizen's message arrives",
		visibleX(`//ul[@id="convs"]//button[contains(., "Clara Citizen")]`),
		chromedp.Focus(chromedp.Search(`//ul[@id="convs"]//button[contains(., "Clara Citizen")]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(`//ol[@id="messages"]/li/p[.="Ich brauche einen neuen Personalausweis."]`))
	agent.axe("inbox")
	agent.shot(dir, "inbox")
	agent.send("Gern: Termin am Montag um 9 Uhr.")

	// The citizen sees the answer as the Bürgeramt's, by Anna Agent.
	citizen.do("the office's answer arrives",
		visibleX(`//ol[@id="messages"]/li[contains(@class,"office")]/p[.="Gern: Termin am Montag um 9 Uhr."]`))
	whoLine := run(citizen, "who answered", chromedp.Text(chromedp.Search(`//ol[@id="messages"]/li[contains(@class,"office")]/span[@class="who"]`)))
	if !strings.Contains(whoLine, "Bürgeramt Musterstadt") || !strings.Contains(whoLine, "Anna Agent") {
		t.Fatalf("the answer is not shown as the office's, by its agent: %q", whoLine)
	}
	citizen.axe("answered")
	citizen.shot(dir, "answered")
	t.Logf("screenshots in %s", dir)
}

// TestWebInterop: a message from the browser decrypts in the Go SDK, and
// one from the Go SDK decrypts in the browser; both sides are the same
// protocol code, one compiled to WebAssembly.
func TestWebInterop(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	goDev := srv.SignUp(t, "go@example.org", key)
	sdk := goDev.SDK(t, srv.URL, client.NewMemoryStore())
	if _, err := sdk.Publish(ctx); err != nil {
		t.Fatal(err)
	}

	br := newTab(t, "browser")
	account := br.signUp(srv, dir, "web@example.org", "Wera Web", "web passphrase")
	br.do("open the Go user's conversation", typeEnter("#new-peer", goDev.AccountID), visible("#text"))
	br.send("aus dem Browser")

	stream, err := sdk.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var in *client.Incoming
	for {
		if in, err = stream.Receive(rctx); err != nil {
			t.Fatalf("the Go SDK did not receive the browser's message: %v", err)
		}
		if in.Message.Kind == kind.Text {
			break
		}
	}
	if tb := in.Message.Body.(*kind.TextBody); tb.Text != "aus dem Browser" || in.SenderAccount != account {
		t.Fatalf("the Go SDK read %q from %s", tb.Text, in.SenderAccount)
	}
	p, err := sdk.Profile(account)
	if err != nil || p == nil || p.DisplayName != "Wera Web" {
		t.Fatalf("the browser's profile: %+v, %v", p, err)
	}

	m, err := kind.New(client.NewMessageID(), time.Now(), &kind.TextBody{Text: "aus Go"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Send(ctx, in.Reply, m); err != nil {
		t.Fatal(err)
	}
	br.do("the Go SDK's message arrives",
		visibleX(fmt.Sprintf(`//ol[@id="messages"]/li[not(contains(@class,"mine"))]/p[.=%q]`, "aus Go")))
	br.shot(dir, "interop")
}
