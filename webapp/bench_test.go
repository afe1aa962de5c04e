package webapp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// BenchmarkWebLoad is the app's time to interactive: a fresh navigation
// until kanal.wasm runs and the first form takes input, as the page
// measures it (performance.now() at that point), with the browser's HTTP
// cache on (kanal.wasm revalidated by ETag).
func BenchmarkWebLoad(b *testing.B) {
	chromium(b)
	srv := kanaldtest.Start(b, kanald)
	br := newTab(b, "load")
	br.do("first load", chromedp.Navigate(srv.URL+"/"), visible("#email"))
	var total float64
	for range b.N {
		br.do("load", chromedp.Navigate(srv.URL+"/?"+strconv.Itoa(b.N)), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="1"]`)))
		ms, err := strconv.ParseFloat(run(br, "readyMs", chromedp.Evaluate[string](`document.body.dataset.readyMs`)), 64)
		if err != nil {
			b.Fatal(err)
		}
		total += ms
	}
	b.ReportMetric(total/float64(b.N), "ms-to-interactive")
}

// BenchmarkWebThousandMessages: 1,000 messages from the Go SDK wait in
// the browser's mailbox; the browser unlocks, receives and decrypts them
// all (kept in its encrypted store), then opens the conversation and
// renders them. Reported: unlock (Argon2id, login, prekey check),
// decrypt-1000 (from unlocked until the 1,000th is kept) and render-1000.
func BenchmarkWebThousandMessages(b *testing.B) {
	chromium(b)
	ctx := context.Background()
	srv := kanaldtest.Start(b, kanald, "KANAL_SEND_LIMIT=100000") // the Go side sends 1,000 at once
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	goDev := srv.SignUp(b, "bench@example.org", key)
	sdk := goDev.SDK(b, srv.URL, client.NewMemoryStore())
	if _, err := sdk.Publish(ctx); err != nil {
		b.Fatal(err)
	}
	br := newTab(b, "bench")
	account := br.signUp(srv, b.TempDir(), "web-bench@example.org", "Wera Web", "web passphrase")
	br.do("open", typeEnter("#new-peer", goDev.AccountID), visible("#text"))
	br.send("hallo")
	stream, err := sdk.Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	for {
		in, err := stream.Receive(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if in.Message.Kind == kind.Text && in.SenderAccount == account {
			break
		}
	}
	to := client.Peer{AccountID: account}
	br.timeout = 10 * time.Minute // the machine may be loaded
	interval, noLimit := chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(0)
	const n = 1000
	var unlock, decrypt, render time.Duration
	for i := range b.N {
		br.do("reload", chromedp.Reload(), visible("#unlock-pass"))
		for j := range n {
			m, err := kind.New(client.NewMessageID(), time.Now(), &kind.TextBody{Text: fmt.Sprintf("Nachricht %d/%d", j, i)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := stream.Send(ctx, to, m); err != nil {
				b.Fatal(err)
			}
		}
		want := (i+1)*n + 1
		start := time.Now()
		br.do("unlock", typeEnter("#unlock-pass", "web passphrase"), visible("#h-app"))
		unlocked := time.Now()
		br.do("receive", chromedp.Poll[chromedp.Void](fmt.Sprintf(`state.entries.filter(e => e.from !== "me").length >= %d`, want-1), interval, noLimit))
		received := time.Now()
		br.do("render", chromedp.Focus(chromedp.CSS("#convs button")), chromedp.KeyEvent(kb.Enter),
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll("#messages li").length >= %d`, want), interval, noLimit))
		rendered := time.Now()
		unlock += unlocked.Sub(start)
		decrypt += received.Sub(unlocked)
		render += rendered.Sub(received)
	}
	b.ReportMetric(float64(unlock.Milliseconds())/float64(b.N), "ms-unlock")
	b.ReportMetric(float64(decrypt.Milliseconds())/float64(b.N), "ms-decrypt-1000")
	b.ReportMetric(float64(render.Milliseconds())/float64(b.N), "ms-render-1000")
}
