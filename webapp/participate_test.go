package webapp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/payments"
	pclient "github.com/kanal-server/kanal/payments/client"
	"github.com/kanal-server/kanal/payments/jws"
	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// office is one organisation's member on the Go SDK, as the CLI runs it:
// a device with a substantial session (device key and password).
type office struct {
	org    string
	dev    *kanaldtest.Device
	sdk    *client.Client
	certs  memberCerts
	stream *client.Stream
}

type memberCerts struct{ dev, mem, org []byte } // DER

// newOffice has the operator create and verify an organisation of kind,
// and makes email its member in role, with a device and an SDK.
func newOffice(t *testing.T, srv *kanaldtest.Server, op *idclient.Client, name, kindOf, email, role string) *office {
	t.Helper()
	ctx := context.Background()
	org, err := op.CreateOrg(ctx, name, kindOf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	const password = "office password 1234"
	ic, v := srv.Verify(t, email)
	enroller := ic.WithToken(v.SetupToken)
	if err := enroller.SetPassword(ctx, password, ""); err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev := srv.Enrol(t, v.AccountID, enroller, "laptop", key, password)
	if _, err := op.AddMember(ctx, org.OrgID, email, role); err != nil {
		t.Fatal(err)
	}
	o := &office{org: org.OrgID, dev: dev, sdk: dev.SDK(t, srv.URL, client.NewMemoryStore())}
	if _, err := o.sdk.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := dev.Identity.DirectoryOrg(ctx, org.OrgID)
	if err != nil {
		t.Fatal(err)
	}
	o.certs.org = der(t, d.Certificate)
	for _, m := range d.Members {
		for _, md := range m.Devices {
			if md.DeviceID == dev.DeviceID {
				o.certs.dev, o.certs.mem = der(t, md.Certificate), der(t, md.MembershipCertificate)
			}
		}
	}
	if o.certs.mem == nil {
		t.Fatalf("%s's device has no membership certificate of %s", email, name)
	}
	return o
}

func der(t *testing.T, p string) []byte {
	t.Helper()
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		t.Fatalf("not PEM: %.60q", p)
	}
	return blk.Bytes
}

// send sends body to the citizen as the organisation.
func (o *office) send(t *testing.T, citizen string, body kind.Body) {
	t.Helper()
	m, err := kind.New(client.NewMessageID(), time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.sdk.Send(context.Background(), client.Peer{OrgID: o.org, AccountID: citizen}, m); err != nil {
		t.Fatal(err)
	}
}

// receive waits for a message of kind k to the office.
func (o *office) receive(t *testing.T, k kind.Kind) *client.Incoming {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if o.stream == nil {
		s, err := o.sdk.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		o.stream = s
		t.Cleanup(func() { s.Close() })
	}
	for {
		in, err := o.stream.Receive(ctx)
		if err != nil {
			t.Fatalf("waiting for a %s: %v", k, err)
		}
		if in.Message.Kind == k {
			return in
		}
	}
}

// TestWebSurveyOfferPayment: a citizen in the browser answers a council's
// survey and gets a receipt that checks against the board; accepts an
// office's offer only after a confirmation that names the amount (the
// keyboard only: Cancel signs nothing), which registers the contract and
// sends it to the office; and is shown the payment request for it with
// its EPC QR code, which, decoded from the screenshot, is byte for byte
// the payload kanal pay qr prints. axe-core checks every new view.
func TestWebSurveyOfferPayment(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
	council := newOffice(t, srv, op, "Stadtrat Musterstadt", "council", "olga@stadtrat.example", "organiser")
	amt := newOffice(t, srv, op, "Bürgeramt Musterstadt", "office", "anna@buergeramt.example", "agent")
	roots, err := ca.TrustPool(amt.dev.CA, amt.dev.Intermediates)
	if err != nil {
		t.Fatal(err)
	}

	citizen := newTab(t, "citizen")
	account := citizen.signUp(srv, dir, "clara@example.org", "Clara Citizen", "citizen passphrase")
	citizen.do("switch to German", chromedp.Focus(chromedp.CSS("#lang")), chromedp.KeyEvent(kb.Enter),
		visibleX(`//h1[@id="h-app"][.="Unterhaltungen"]`))

	// The council's organiser defines an anonymous survey and invites the
	// citizen in the chat.
	organiser := sclient.New(srv.URL, nil).WithToken(council.dev.Token)
	draft, err := organiser.Create(ctx, council.org, surveys.ModeAnonymous)
	if err != nil {
		t.Fatal(err)
	}
	tally, err := surveys.NewTallyKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	def := &surveys.Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: council.org, Title: "Marktplatz", Mode: surveys.ModeAnonymous,
		Description: "Wie soll der Marktplatz werden?", Results: surveys.ResultsPublic,
		Audience: surveys.Audience{Kind: surveys.AudienceLevel, Level: ca.LevelLow}, OpensAt: now, ClosesAt: now.Add(time.Hour),
		TokenKey: draft.TokenKey, TallyKey: tally.Public, SignedAt: now,
		Questions: []surveys.Question{
			{Kind: surveys.KindSingle, Prompt: "Soll der Marktplatz autofrei werden?", Options: []string{"Ja", "Nein"}},
			{Kind: surveys.KindMultiple, Prompt: "Was fehlt?", Options: []string{"Bänke", "Bäume", "Brunnen", "Licht"}, Min: 1, Max: 2},
			{Kind: surveys.KindRanking, Prompt: "Ordnen Sie die Markttage", Options: []string{"Montag", "Mittwoch", "Samstag"}},
			{Kind: surveys.KindScale, Prompt: "Wie gern sind Sie dort?"},
			{Kind: surveys.KindText, Prompt: "Was noch?", Max: 200, Optional: true},
		}}
	signed, err := surveys.Sign(def, council.dev.Key, council.certs.dev, council.certs.mem, council.certs.org)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := organiser.Define(ctx, draft.SurveyID, signed); err != nil {
		t.Fatal(err)
	}
	council.send(t, account, &kind.SurveyInviteBody{SurveyID: draft.SurveyID, Title: def.Title, ClosesAt: def.ClosesAt})

	// The citizen opens the invitation and answers with the keyboard.
	citizen.do("the invitation arrives", visibleX(`//ul[@id="convs"]//button[contains(., "Stadtrat Musterstadt")]`),
		chromedp.Focus(chromedp.Search(`//ul[@id="convs"]//button[contains(., "Stadtrat Musterstadt")]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(`//ol[@id="messages"]/li/p[contains(., "Marktplatz")]`),
		chromedp.Focus(chromedp.Search(`//ol[@id="messages"]/li/button[@class="open-item"]`)), chromedp.KeyEvent(kb.Enter),
		visible("#form-ballot"))
	citizen.axe("ballot")
	citizen.shot(dir, "ballot")
	press := func(sel, key string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(chromedp.Focus(chromedp.CSS(sel)), chromedp.KeyEvent(key))
	}
	citizen.do("answer",
		press("#q0-0", " "),                      // Ja
		press("#q1-1", " "), press("#q1-3", " "), // Bäume, Licht
		press("#q2-0", "2"), press("#q2-1", "3"), press("#q2-2", "1"), // ranked Samstag, Montag, Mittwoch
		press("#q3-4", " "), // 4
		chromedp.SendKeys(chromedp.CSS("#q4-text"), "Mehr Schatten"),
		chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter),
		visible("#h-receipt"))
	check := run(citizen, "receipt", chromedp.Text(chromedp.CSS("#receipt-check")))
	if !strings.HasPrefix(check, "Geprüft") {
		t.Fatalf("the receipt is not shown as checked: %q", check)
	}
	citizen.axe("receipt")
	citizen.shot(dir, "receipt")
	sv, err := organiser.Get(ctx, draft.SurveyID)
	if err != nil {
		t.Fatal(err)
	}
	if sv.BoardLength != 1 || sv.TokensIssued != 1 {
		t.Fatalf("after the browser's vote the board has %d ballots, %d tokens issued", sv.BoardLength, sv.TokensIssued)
	}
	// The ballot says what the citizen chose: the organiser closes the
	// survey and kanald counts it with the tally key.
	if _, err := organiser.Close(ctx, draft.SurveyID, council.dev.Key); err != nil {
		t.Fatal(err)
	}
	res, err := organiser.Tally(ctx, draft.SurveyID, tally.Private, roots)
	if err != nil {
		t.Fatal(err)
	}
	st, err := surveys.VerifyResult(res, roots)
	if err != nil {
		t.Fatal(err)
	}
	if got := tallyOf(st.Result); got != wantTally {
		t.Fatalf("the browser's ballot counted as\n%s\nwant\n%s", got, wantTally)
	}

	// The office sends an offer; the citizen sees its items and total.
	issued := time.Now().UTC().Truncate(time.Second)
	offer := jws.Offer{Version: 1, OfferID: "of_webtest01", OrgID: amt.org, OrgName: "Bürgeramt Musterstadt", BuyerAccount: account,
		Items: []jws.Item{{Description: "Reisepass", Quantity: 1, UnitCents: 3700, VATBasisPoints: 0},
			{Description: "Expresszuschlag", Quantity: 2, UnitCents: 1600, VATBasisPoints: 1900}},
		Currency: "EUR", Terms: "Abholung im Bürgeramt", IssuedAt: issued, ValidUntil: issued.Add(72 * time.Hour)}
	offer.TotalCents, offer.VATCents = jws.Totals(offer.Items)
	offerJWS, err := jws.SignOffer(offer, jws.Seller{Key: amt.dev.Key, DeviceCert: amt.certs.dev, Membership: amt.certs.mem, OrgCert: amt.certs.org}, roots)
	if err != nil {
		t.Fatal(err)
	}
	pay := pclient.New(srv.URL, amt.dev.Token, nil)
	if _, _, err := pay.RegisterOffer(ctx, offerJWS); err != nil {
		t.Fatal(err)
	}
	amt.send(t, account, &kind.OfferBody{OfferID: offer.OfferID, JWS: offerJWS})
	citizen.do("the offer arrives", visibleX(`//ul[@id="convs"]//button[contains(., "Bürgeramt Musterstadt")]`),
		chromedp.Focus(chromedp.Search(`//ul[@id="convs"]//button[contains(., "Bürgeramt Musterstadt")]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(`//ol[@id="messages"]/li/p[contains(., "Angebot")]`),
		chromedp.Focus(chromedp.Search(`//ol[@id="messages"]/li[p[contains(., "Angebot")]]/button`)), chromedp.KeyEvent(kb.Enter),
		visible("#offer-accept"))
	if total := run(citizen, "total", chromedp.Text(chromedp.CSS("#offer-total"))); total != eur69 {
		t.Fatalf("the offer's total shows as %q, want %q", total, eur69)
	}
	citizen.axe("offer")
	citizen.shot(dir, "offer")

	// Cancel signs nothing: Enter opens the dialog, Escape closes it.
	citizen.do("open and cancel", chromedp.Focus(chromedp.CSS("#offer-accept")), chromedp.KeyEvent(kb.Enter), visible("#offer-confirm"),
		chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#offer-confirm")))
	if s := run(citizen, "state", chromedp.Text(chromedp.CSS("#offer-state"))); !strings.HasPrefix(s, "Offen") {
		t.Fatalf("after Cancel the offer is %q", s)
	}
	if f := run(citizen, "focus", chromedp.Evaluate[string](`document.activeElement.id`)); f != "offer-accept" {
		t.Fatalf("after Cancel the focus is on %q, want the accept button", f)
	}

	// The SDK signs only the total the page showed: a script that asks it
	// to accept with another amount (a page bug, an injected script) gets
	// nothing signed.
	offerMsg := run(citizen, "offer message id", chromedp.Evaluate[string](`state.entries.find((e) => e.kind === "offer").id`))
	refused := run(citizen, "accept another amount", chromedp.Evaluate[string](
		fmt.Sprintf(`kanalGo.acceptOffer(%q, "6800", "citizen account password").then(() => "signed", (e) => e.message)`, offerMsg),
		chromedp.EvalAwaitPromise))
	if !strings.Contains(refused, "not the offer's total") {
		t.Fatalf("accepting 68.00 for an offer of 69.00: %q", refused)
	}

	// The confirmation names the amount; the keyboard signs it: the
	// password field has the focus, Tab passes Cancel, Enter on the
	// button that names 69,00 €.
	citizen.do("confirm", chromedp.KeyEvent(kb.Enter), visible("#offer-confirm"))
	if f := run(citizen, "focus", chromedp.Evaluate[string](`document.activeElement.id`)); f != "offer-password" {
		t.Fatalf("the dialog opened with the focus on %q", f)
	}
	citizen.do("type the account password", chromedp.KeyEvent("citizen account password"), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Tab))
	if f := run(citizen, "sign button", chromedp.Evaluate[string](`document.activeElement.id + ": " + document.activeElement.textContent`)); f != "offer-sign: "+eur69+" verbindlich unterschreiben" {
		t.Fatalf("two Tabs from the password reach %q", f)
	}
	citizen.axe("confirm")
	citizen.shot(dir, "confirm")
	citizen.do("sign", chromedp.KeyEvent(kb.Enter), visibleX(`//p[@id="offer-state"][starts-with(., "Unterschrieben")]`))
	citizen.axe("signed")
	citizen.shot(dir, "signed")
	in := amt.receive(t, kind.Contract)
	cb := in.Message.Body.(*kind.ContractBody)
	c, err := jws.VerifyContract(cb.JWS, jws.VerifyOptions{CA: amt.dev.CA})
	if err != nil {
		t.Fatalf("the contract from the browser does not verify: %v", err)
	}
	if c.ID != cb.ContractID || c.Offer.Offer.OfferID != offer.OfferID || c.Buyer.AccountID != account || in.SenderAccount != account {
		t.Fatalf("the contract %s (offer %s, buyer %s) from %s", c.ID, c.Offer.Offer.OfferID, c.Buyer.AccountID, in.SenderAccount)
	}
	if s := run(citizen, "state", chromedp.Text(chromedp.CSS("#offer-state"))); !strings.Contains(s, cb.ContractID) {
		t.Fatalf("the signed state %q does not name contract %s", s, cb.ContractID)
	}
	if _, err := pay.Contract(ctx, cb.ContractID); err != nil {
		t.Fatalf("the contract is not registered: %v", err)
	}

	// The office requests the payment for the contract, as kanal pay
	// request does, and sends it in the chat.
	r, _, err := pay.CreateRequest(ctx, amt.org, "web-test-1", payments.CreateParams{ContractID: cb.ContractID,
		Creditor: "Stadtkasse Musterstadt", IBAN: "DE89370400440532013000", Purpose: "Reisepass, Expresszuschlag", DueDate: time.Now().AddDate(0, 0, 14).Format(time.DateOnly)})
	if err != nil {
		t.Fatal(err)
	}
	amt.send(t, account, &kind.PaymentRequestBody{RequestID: r.RequestID, AmountCents: r.AmountCents, Currency: r.Currency,
		Creditor: r.Creditor, IBAN: r.IBAN, Reference: r.Reference, DueDate: r.DueDate, Purpose: r.Purpose, BIC: r.BIC, ContractID: r.ContractID})
	citizen.do("the payment request arrives", visibleX(`//ol[@id="messages"]/li/p[contains(., "Zahlungsaufforderung")]`),
		chromedp.Focus(chromedp.Search(`//ol[@id="messages"]/li[p[contains(., "Zahlungsaufforderung")]]/button`)), chromedp.KeyEvent(kb.Enter),
		visible("#epc-qr"), chromedp.WaitReady(`#epc-qr`))
	facts := run(citizen, "facts", chromedp.Text(chromedp.CSS("#detail dl")))
	for _, want := range []string{eur69, "Stadtkasse Musterstadt", "DE89370400440532013000", r.Reference, "offen"} {
		if !strings.Contains(facts, want) {
			t.Errorf("the payment request does not show %q: %q", want, facts)
		}
	}
	citizen.axe("payment")
	citizen.shot(dir, "payment")
	png := qrShot(citizen)
	// kanal pay qr prints GET /v1/payment-requests/{id}/epc through the
	// same client call.
	want, err := pay.EPC(ctx, r.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodePNG(t, png); got != want {
		t.Fatalf("the QR code in the screenshot decodes as\n%q\nkanal pay qr prints\n%q", got, want)
	}
	if !strings.Contains(want, "\nEUR69.00\n") || !strings.Contains(want, "\n"+r.Reference) {
		t.Fatalf("the EPC payload %q is not for EUR 69.00 with reference %s", want, r.Reference)
	}

	// The same page in English.
	citizen.do("switch to English", chromedp.Focus(chromedp.CSS("#lang")), chromedp.KeyEvent(kb.Enter),
		visibleX(`//h2[@id="h-detail"][starts-with(., "Payment request from")]`))
	citizen.axe("payment in English")
	citizen.shot(dir, "payment-en")
	t.Logf("screenshots in %s", dir)
}

// eur69 is 69 euro as German shows it (Intl.NumberFormat): a no-break
// space before the sign.
const eur69 = "69,00\u00a0€"

// wantTally is the count of the one ballot the browser cast: Ja; Bäume
// and Licht; Samstag, Montag, Mittwoch ranked (Borda points 2, 1, 0); 4
// on the scale; one text.
const wantTally = `valid 1
Ja=1 Nein=0
Bänke=0 Bäume=1 Brunnen=0 Licht=1
Montag=0/1 Mittwoch=0/0 Samstag=1/2
1=0 2=0 3=0 4=1 5=0 mean 4.00
texts ["Mehr Schatten"]
`

// tallyOf writes a result as wantTally: option counts (and a ranking's
// first places/points), a scale's mean, the texts.
func tallyOf(r surveys.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "valid %d\n", r.Valid)
	for _, q := range r.Questions {
		var parts []string
		for _, o := range q.Options {
			if q.Kind == surveys.KindRanking {
				parts = append(parts, fmt.Sprintf("%s=%d/%d", o.Label, o.Count, o.Points))
			} else {
				parts = append(parts, fmt.Sprintf("%s=%d", o.Label, o.Count))
			}
		}
		switch q.Kind {
		case surveys.KindScale:
			parts = append(parts, fmt.Sprintf("mean %.2f", q.Mean))
		case surveys.KindText:
			parts = append(parts, fmt.Sprintf("texts %q", q.Texts))
		}
		fmt.Fprintln(&b, strings.Join(parts, " "))
	}
	return b.String()
}

// qrShot waits until the page's EPC QR code (#epc-qr) is decoded and
// painted, and returns a screenshot of it alone: the symbol and its quiet
// zone, as the citizen's screen shows it.
func qrShot(b *tab) []byte {
	b.t.Helper()
	run(b, "the QR code painted", chromedp.Evaluate[bool](`document.getElementById("epc-qr").decode()
		.then(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done(true)))))`, chromedp.EvalAwaitPromise))
	return run(b, "screenshot of the QR code", chromedp.Screenshot(chromedp.CSS("#epc-qr")))
}

// decodePNG decodes the QR code of a qrShot module by module (ZXing's
// pure-barcode mode): whether the page shows the symbol of the payload.
// How often a scanner's detector finds such a code in a larger picture
// is payments/epc's TestZXingDetectorFindsTheCodes.
func decodePNG(t *testing.T, b []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("no QR code in the screenshot: %v", err)
	}
	return res.GetText()
}

// TestAttackPaymentRequestMismatch: the QR code a citizen pays with must
// be what the office asked for. The adversary changes the IBAN on one
// side only — kanald's record (a server or database that redirects the
// money) or the chat message — here the message names another IBAN than
// the record. The browser shows the mismatch and no QR code; the request
// stays open and unpaid.
func TestAttackPaymentRequestMismatch(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
	amt := newOffice(t, srv, op, "Bürgeramt Musterstadt", "office", "anna@buergeramt.example", "agent")
	citizen := newTab(t, "citizen")
	account := citizen.signUp(srv, dir, "clara@example.org", "Clara Citizen", "citizen passphrase")

	pay := pclient.New(srv.URL, amt.dev.Token, nil)
	r, _, err := pay.CreateRequest(ctx, amt.org, "web-attack-1", payments.CreateParams{PayerAccount: account, AmountCents: 3700,
		Creditor: "Stadtkasse Musterstadt", IBAN: "DE89370400440532013000", Purpose: "Reisepass", DueDate: time.Now().AddDate(0, 0, 14).Format(time.DateOnly)})
	if err != nil {
		t.Fatal(err)
	}
	amt.send(t, account, &kind.PaymentRequestBody{RequestID: r.RequestID, AmountCents: r.AmountCents, Currency: r.Currency,
		Creditor: r.Creditor, IBAN: "DE02120300000000202051", Reference: r.Reference, DueDate: r.DueDate, Purpose: r.Purpose})
	citizen.do("the payment request arrives", visibleX(`//ul[@id="convs"]//button[contains(., "Bürgeramt Musterstadt")]`),
		chromedp.Focus(chromedp.Search(`//ul[@id="convs"]//button[contains(., "Bürgeramt Musterstadt")]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(`//ol[@id="messages"]/li/button[@class="open-item"]`),
		chromedp.Focus(chromedp.Search(`//ol[@id="messages"]/li/button[@class="open-item"]`)), chromedp.KeyEvent(kb.Enter),
		visibleX(`//p[@id="status"][contains(., "does not match")]`))
	if n := run(citizen, "QR codes", chromedp.Evaluate[int](`document.querySelectorAll("#epc-qr, #detail img").length`)); n != 0 {
		t.Fatalf("a QR code is shown for a request whose IBAN differs from kanald's record (%d images)", n)
	}
	citizen.shot(dir, "mismatch")
	after, err := pay.Request(ctx, r.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != payments.StatusOpen || after.IBAN != "DE89370400440532013000" || after.PaidCents != 0 {
		t.Fatalf("the request changed: %+v", after)
	}
}
