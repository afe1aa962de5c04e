package webapp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// goUser is a person on the Go SDK, as the CLI runs it.
type goUser struct {
	t       *testing.T
	account string
	sdk     *client.Client
	stream  *client.Stream
}

func newGoUser(t *testing.T, srv *kanaldtest.Server, email string) *goUser {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev := srv.SignUp(t, email, key)
	u := &goUser{t: t, account: dev.AccountID, sdk: dev.SDK(t, srv.URL, client.NewMemoryStore())}
	if _, err := u.sdk.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := u.sdk.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	u.stream = s
	return u
}

// receive reads the stream until a message for which want is true.
func (u *goUser) receive(what string, want func(*client.Incoming) bool) *client.Incoming {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		in, err := u.stream.Receive(ctx)
		if err != nil {
			u.t.Fatalf("the Go SDK waiting for %s: %v", what, err)
		}
		if want(in) {
			return in
		}
	}
}

func (u *goUser) send(to client.Peer, body kind.Body) *kind.Message {
	u.t.Helper()
	m, err := kind.New(client.NewMessageID(), time.Now(), body)
	if err != nil {
		u.t.Fatal(err)
	}
	if _, err := u.stream.Send(context.Background(), to, m); err != nil {
		u.t.Fatal(err)
	}
	return m
}

// press focuses an element and presses a key, as a keyboard user does.
func press(sel, key string) chromedp.Action[chromedp.Void] {
	return againIfRedrawn(chromedp.Steps(chromedp.Focus(chromedp.CSS(sel)), chromedp.KeyEvent(key)))
}

func pressX(xpath, key string) chromedp.Action[chromedp.Void] {
	return againIfRedrawn(chromedp.Steps(chromedp.Focus(chromedp.Search(xpath)), chromedp.KeyEvent(key)))
}

// againIfRedrawn runs focus-and-press a again when the page redrew the
// element between finding and focusing it (a message list that a notice
// arriving redraws): the browser then no longer knows the node found, the
// focus fails before any key is pressed, and the element is found anew,
// as a person would find the redrawn button. At most three tries.
func againIfRedrawn(a chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for try := 1; ; try++ {
			v, err := a(ctx, t)
			if err == nil || try == 3 || !strings.Contains(err.Error(), "Could not find node with given id") {
				return v, err
			}
		}
	}
}

// pressUntil focuses the element at xpath and presses key until done
// is visible: an incoming message may render the conversation again
// between finding the element and pressing the key.
func (b *tab) pressUntil(what, xpath, key, done string) {
	b.t.Helper()
	var err error
	for range 4 {
		ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
		_, err = chromedp.Run(ctx, chromedp.Steps(pressX(xpath, key), visibleX(done)))
		cancel()
		if err == nil {
			return
		}
	}
	b.t.Fatalf("%s: %s: %v", b.name, what, err)
}

// axeBoth runs axe-core on the page in German and in English.
func (b *tab) axeBoth(step string) {
	b.t.Helper()
	for range 2 {
		b.do("switch language", press("#lang", kb.Enter))
		b.axe(step + " (" + run(b, "lang", chromedp.Evaluate[string](`document.documentElement.lang`)) + ")")
	}
}

// pageFile reads back the bytes the page offers for download: the Blob
// behind the link it made for the attachment called name.
func (b *tab) pageFile(name string) []byte {
	b.t.Helper()
	s := run(b, "read "+name+" back", chromedp.Evaluate[string](fmt.Sprintf(`(async () => {
		const e = state.entries.find((x) => x.kind === "attachment" && x.file && x.file.name === %q);
		const blob = groups.fileOf(e.from, e.id);
		if (!blob) return "none";
		const u = new Uint8Array(await blob.arrayBuffer());
		let s = ""; for (const c of u) s += String.fromCharCode(c);
		return blob.type + " " + btoa(s);
	})()`, name), chromedp.EvalAwaitPromise))
	typ, b64, _ := strings.Cut(s, " ")
	if typ != "application/octet-stream" {
		b.t.Fatalf("%s: the page offers %s as %q", b.name, name, s[:min(len(s), 40)])
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		b.t.Fatal(err)
	}
	return data
}

// pngOf is a w×h picture, a gradient, as PNG.
func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func blobCount(t *testing.T, srv *kanaldtest.Server) int {
	t.Helper()
	d, err := db.Open(context.Background(), "sqlite:"+filepath.Join(srv.DataDir, "kanal.db"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int
	if err := d.QueryRow(context.Background(), `SELECT COUNT(*) FROM messaging_blobs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWebGroupsAndFiles: two people in browsers and one on the Go SDK
// against the real kanald, the keyboard only. Anna creates a group in her
// browser with Ben (a contact: he wrote to her) and Carl (by account id);
// Ben accepts in his browser, Carl with the SDK; the group's name reaches
// both from Anna's browser, end to end; messages go every way; a file
// from Anna's browser is byte for byte the file in Carl's SDK and in Ben's
// page, and a picture from Carl's SDK is byte for byte the one Anna's page
// offers, shown inline with its name as alternative text; a file over the
// SDK's limit is refused before anything is uploaded; Carl leaves with the
// SDK and Ben with the page, and the others see it. axe-core checks every
// new state in German and English.
func TestWebGroupsAndFiles(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	carl := newGoUser(t, srv, "carl@example.org")
	if _, err := carl.sdk.SetProfile("Carl Go", nil); err != nil {
		t.Fatal(err)
	}

	anna := newTab(t, "anna")
	ben := newTab(t, "ben")
	anna.timeout, ben.timeout = 4*time.Minute, 4*time.Minute
	annaAcc := anna.signUp(srv, dir, "anna@example.org", "Anna Admin", "anna passphrase")
	ben.signUp(srv, dir, "ben@example.org", "Ben Browser", "ben passphrase")

	// Ben writes to Anna, so that he is her contact.
	ben.do("open Anna", typeEnter("#new-peer", annaAcc), visible("#text"))
	ben.send("Hallo Anna")
	anna.do("Ben's message arrives", visibleX(`//ul[@id="convs"]//button[contains(., "Ben Browser")]`),
		pressX(`//ul[@id="convs"]//button[contains(., "Ben Browser")]`, kb.Enter), visible("#text"))
	anna.send("Hallo Ben")
	ben.do("Anna's answer", visibleX(`//ol[@id="messages"]/li/p[.="Hallo Ben"]`))

	// Anna creates the group: a name, Ben from her contacts, Carl by id.
	anna.do("name the group", chromedp.SendKeys(chromedp.CSS("#group-name"), "Elternbeirat 3b"),
		visibleX(`//fieldset[@id="group-contacts"]//label[.="Ben Browser"]`))
	anna.axeBoth("new group")
	anna.shot(dir, "new-group")
	anna.do("create the group",
		press(`#group-contacts input[type="checkbox"]`, " "),
		chromedp.SendKeys(chromedp.CSS("#group-accounts"), carl.account), chromedp.KeyEvent(kb.Enter),
		visibleX(`//h2[@id="h-conv"][contains(., "Elternbeirat 3b")]`), visible("#group-leave"))
	group := run(anna, "group id", chromedp.Evaluate[string](`state.current.group`))
	if !messaging.ValidGroupID(group) {
		t.Fatalf("the page opened %q", group)
	}
	anna.axeBoth("group created")
	anna.shot(dir, "group-created")

	// Ben sees the invitation and accepts it; Carl accepts with the SDK.
	ben.do("the invitation arrives", visibleX(`//ul[@id="convs"]//button[contains(., "Anna Admin")][contains(., "nvitation")]`),
		pressX(`//ul[@id="convs"]//button[contains(., "nvitation")]`, kb.Enter), visible("#group-accept"))
	if !run(ben, "no writing before accepting", chromedp.Evaluate[bool](`document.getElementById("form-send").hidden`)) {
		t.Fatal("the page offers to write to a group Ben has not joined")
	}
	ben.axeBoth("invitation")
	ben.shot(dir, "invitation")
	ben.do("accept", press("#group-accept", kb.Enter), visible("#text"),
		visibleX(`//h2[@id="h-conv"][contains(., "Elternbeirat 3b")]`))
	if _, err := carl.sdk.AcceptInvitation(ctx, group); err != nil {
		t.Fatal(err)
	}
	in := carl.receive("the group's name", func(in *client.Incoming) bool { return in.Message.Kind == kind.GroupName })
	if b := in.Message.Body.(*kind.GroupNameBody); b.Name != "Elternbeirat 3b" || b.GroupID != group || in.SenderAccount != annaAcc {
		t.Fatalf("Carl got the name %+v from %s", b, in.SenderAccount)
	}
	anna.do("the members", visibleX(`//ul[@id="group-members"]/li[contains(., "Ben Browser")]`),
		visibleX(fmt.Sprintf(`//ul[@id="group-members"]/li[contains(., %q)]`, carl.account)),
		visibleX(`//ol[@id="messages"]/li/p[contains(., "Ben Browser")][contains(., "is now a member")]`))
	anna.axeBoth("members")
	anna.shot(dir, "members")

	// Messages every way.
	anna.send("Treffen am Donnerstag")
	ben.do("Anna's message", visibleX(`//ol[@id="messages"]/li/p[.="Treffen am Donnerstag"]`))
	in = carl.receive("Anna's message", func(in *client.Incoming) bool { return in.Message.Kind == kind.Text })
	if tb := in.Message.Body.(*kind.TextBody); tb.Text != "Treffen am Donnerstag" || in.Reply.GroupID != group || in.SenderAccount != annaAcc {
		t.Fatalf("Carl read %q in %+v from %s", tb.Text, in.Reply, in.SenderAccount)
	}
	carl.send(client.Peer{GroupID: group}, &kind.TextBody{Text: "Ich bringe Kuchen"})
	anna.do("Carl's message, with his name", visibleX(`//ol[@id="messages"]/li/p[.="Ich bringe Kuchen"]`),
		visibleX(`//ul[@id="group-members"]/li[contains(., "Carl Go")]`))
	ben.do("Carl's message", visibleX(`//ol[@id="messages"]/li/p[.="Ich bringe Kuchen"]`))
	ben.send("Prima")
	anna.do("Ben's answer", visibleX(`//ol[@id="messages"]/li/p[.="Prima"]`))
	in = carl.receive("Ben's answer", func(in *client.Incoming) bool { return in.Message.Kind == kind.Text })
	if tb := in.Message.Body.(*kind.TextBody); tb.Text != "Prima" || in.Reply.GroupID != group {
		t.Fatalf("Carl read %q in %+v", tb.Text, in.Reply)
	}
	ben.axeBoth("group conversation")
	ben.shot(dir, "group-conversation")

	// A file from Anna's browser: Carl's SDK and Ben's page get its bytes.
	protocol := make([]byte, 150_000)
	rand.Read(protocol)
	path := filepath.Join(t.TempDir(), "protokoll.pdf")
	if err := os.WriteFile(path, protocol, 0o600); err != nil {
		t.Fatal(err)
	}
	anna.do("attach the file", chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{path}),
		press("#file", kb.Tab), chromedp.KeyEvent(kb.Enter),
		visibleX(`//ol[@id="messages"]/li[contains(@class,"mine")]/p[contains(., "protokoll.pdf")]`))
	in = carl.receive("Anna's file", func(in *client.Incoming) bool { return in.Message.Kind == kind.Attachment })
	att := in.Message.Body.(*kind.AttachmentBody)
	if att.Name != "protokoll.pdf" || att.MIME != "application/pdf" || in.Reply.GroupID != group {
		t.Fatalf("Carl got the attachment %q (%s) in %+v", att.Name, att.MIME, in.Reply)
	}
	got, err := carl.sdk.DownloadAttachment(ctx, att)
	if err != nil || !bytes.Equal(got, protocol) {
		t.Fatalf("Carl's SDK downloads %d bytes, %v; the file has %d", len(got), err, len(protocol))
	}
	ben.do("Anna's file arrives", visibleX(`//ol[@id="messages"]/li/p[contains(., "protokoll.pdf")]`))
	ben.pressUntil("download Anna's file", `//ol[@id="messages"]//button[@class="download"]`, kb.Enter,
		`//ol[@id="messages"]//a[@download="protokoll.pdf"]`)
	if got := ben.pageFile("protokoll.pdf"); !bytes.Equal(got, protocol) {
		t.Fatalf("Ben's page offers %d bytes, the file has %d", len(got), len(protocol))
	}
	ben.axeBoth("file downloaded")
	ben.shot(dir, "file-downloaded")

	// A picture from Carl's SDK, shown in Anna's page and offered with
	// the same bytes.
	picture := pngOf(t, 96, 64)
	pb, err := carl.sdk.UploadAttachment(ctx, picture, "image/png", "klassenfoto.png")
	if err != nil {
		t.Fatal(err)
	}
	carl.send(client.Peer{GroupID: group}, pb)
	anna.do("Carl's picture arrives", visibleX(`//ol[@id="messages"]/li/p[contains(., "klassenfoto.png")]`))
	anna.pressUntil("download Carl's picture", `//ol[@id="messages"]/li[p[contains(., "klassenfoto.png")]]/button`, kb.Enter,
		`//ol[@id="messages"]//img[contains(@alt, "klassenfoto.png")]`)
	anna.do("the link", visibleX(`//ol[@id="messages"]//a[@download="klassenfoto.png"]`))
	if got := anna.pageFile("klassenfoto.png"); !bytes.Equal(got, picture) {
		t.Fatalf("Anna's page offers %d bytes, the picture has %d", len(got), len(picture))
	}
	anna.axeBoth("picture")
	anna.shot(dir, "picture")

	// Over the limit: refused before anything is read or uploaded.
	huge := filepath.Join(t.TempDir(), "film.mp4")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, kind.MaxAttachment); err != nil {
		t.Fatal(err)
	}
	blobs := blobCount(t, srv)
	anna.do("attach a file too large", chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{huge}),
		press("#file", kb.Tab), chromedp.KeyEvent(kb.Enter),
		visibleX(`//p[@id="status"][contains(@class, "error")][contains(., "film.mp4")]`))
	if n := blobCount(t, srv); n != blobs {
		t.Fatalf("a file over the limit left %d blobs, %d before", n, blobs)
	}
	anna.axeBoth("file too large")
	anna.shot(dir, "file-too-large")

	// Carl leaves with the SDK, Ben with the page.
	if _, err := carl.sdk.RemoveGroupMember(ctx, group, carl.account); err != nil {
		t.Fatal(err)
	}
	anna.do("Carl left", visibleX(`//ol[@id="messages"]/li/p[contains(., "Carl Go")][contains(., "left")]`))
	// Carl's leaving renders Ben's group panel again: wait for it, and
	// press as pressUntil does, in case another render comes between.
	ben.do("Carl left", visibleX(`//ol[@id="messages"]/li/p[contains(., "Carl Go")][contains(., "left")]`))
	ben.pressUntil("leave", `//button[@id="group-leave"]`, kb.Enter, `//section[@id="group-panel"]/p`)
	if !run(ben, "no writing after leaving", chromedp.Evaluate[bool](`document.getElementById("form-send").hidden`)) {
		t.Fatal("the page offers to write to a group Ben left")
	}
	ben.axeBoth("left")
	ben.shot(dir, "left")
	anna.do("Ben left", visibleX(`//ol[@id="messages"]/li/p[contains(., "Ben Browser")][contains(., "left")]`))
	if n := run(anna, "members", chromedp.Evaluate[int](`document.querySelectorAll("#group-members li").length`)); n != 1 {
		t.Fatalf("after both left, Anna's page lists %d members", n)
	}
	anna.shot(dir, "alone")
	t.Logf("screenshots in %s", dir)
}

// TestAttackTamperedAttachment: the server changes the bytes of a blob
// after it was uploaded. The page refuses it — the hash in the sender's
// end-to-end message does not match — says so, and offers nothing to
// download. A file whose name and type are HTML is shown as text and
// offered as bytes, never rendered.
func TestAttackTamperedAttachment(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	eve := newGoUser(t, srv, "sender@example.org")
	br := newTab(t, "receiver")
	br.timeout = 4 * time.Minute
	account := br.signUp(srv, dir, "receiver@example.org", "Rita Receiver", "receiver passphrase")

	file := []byte("Kontoauszug: 1.234,56 EUR")
	att, err := eve.sdk.UploadAttachment(ctx, file, "text/plain", "kontoauszug.txt")
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.Open(ctx, "sqlite:"+filepath.Join(srv.DataDir, "kanal.db"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var stored []byte
	if err := d.QueryRow(ctx, `SELECT data FROM messaging_blobs WHERE id = $1`, att.BlobID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	stored[len(stored)/2] ^= 1
	if _, err := d.Exec(ctx, `UPDATE messaging_blobs SET data = $1 WHERE id = $2`, stored, att.BlobID); err != nil {
		t.Fatal(err)
	}
	eve.send(client.Peer{AccountID: account}, att)

	br.do("the file arrives", visibleX(`//ul[@id="convs"]//button`), pressX(`//ul[@id="convs"]//button`, kb.Enter),
		visibleX(`//ol[@id="messages"]/li/p[contains(., "kontoauszug.txt")]`))
	br.do("download it", press(`#messages button.download`, kb.Enter),
		visibleX(`//p[@id="status"][contains(@class, "error")][contains(., "kontoauszug.txt")]`))
	if n := run(br, "links", chromedp.Evaluate[int](`document.querySelectorAll("#messages a, #messages img").length`)); n != 0 {
		t.Fatalf("the page offers %d links or pictures for a tampered file", n)
	}
	if got := run(br, "blob", chromedp.Evaluate[bool](`(() => { const e = state.entries.find((x) => x.kind === "attachment");
		return groups.fileOf(e.from, e.id) === undefined; })()`)); !got {
		t.Fatal("the page keeps a Blob of the tampered file")
	}
	br.axe("tampered")
	br.shot(dir, "tampered")

	// A file named and typed as HTML is text on the page and bytes in the
	// download.
	html := []byte(`<script>document.title = "pwned"</script>`)
	hatt, err := eve.sdk.UploadAttachment(ctx, html, "text/html", `<img src=x id=injected>.html`)
	if err != nil {
		t.Fatal(err)
	}
	eve.send(client.Peer{AccountID: account}, hatt)
	br.do("the HTML file arrives", visibleX(`//ol[@id="messages"]/li/p[contains(., "<img src=x id=injected>.html")]`),
		pressX(`//ol[@id="messages"]/li[p[contains(., "injected")]]/button`, kb.Enter),
		visibleX(`//ol[@id="messages"]//a[contains(., "injected")]`))
	if run(br, "injected", chromedp.Evaluate[bool](`document.getElementById("injected") !== null || document.title === "pwned"`)) {
		t.Fatal("the page rendered a received file name or file as HTML")
	}
	if got := br.pageFile(`<img src=x id=injected>.html`); !bytes.Equal(got, html) {
		t.Fatalf("the page offers %q", got)
	}
	br.shot(dir, "html-file")
}
