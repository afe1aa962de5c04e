package webapp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps/cases"
	cclient "github.com/kanal-server/kanal/miniapps/cases/client"
	"github.com/kanal-server/kanal/miniapps/forms"
	fclient "github.com/kanal-server/kanal/miniapps/forms/client"
)

// webTemplate is a form with one field of every kind the page renders:
// text (prefilled), a pattern with help, e-mail, date, a list of rows, a
// decimal number, multiple choice, yes/no that shows a long text field,
// one choice, a box to tick, and a file.
const webTemplate = `{"format": 1, "id": "sperrmuell-web", "version": "1.0.0", "org": {"id": %q, "name": %q},
 "title": {"de": "Sperrmüll anmelden", "en": "Book a bulky waste collection"},
 "description": {"de": "Wir holen Sperrmüll an Ihrer Adresse ab.", "en": "We collect bulky waste at your address."},
 "schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": false,
  "properties": {
   "family_name": {"type": "string", "minLength": 1, "maxLength": 100},
   "given_name": {"type": "string", "minLength": 1, "maxLength": 100},
   "postcode": {"type": "string", "pattern": "^[0-9]{5}$"},
   "email": {"type": "string", "format": "email", "maxLength": 200},
   "pickup_date": {"type": "string", "format": "date"},
   "items": {"type": "array", "minItems": 1, "maxItems": 30, "items": {"type": "object", "additionalProperties": false,
     "required": ["item", "count"], "properties": {"item": {"type": "string", "minLength": 1, "maxLength": 80}, "count": {"type": "integer", "minimum": 1, "maximum": 50}}}},
   "volume_m3": {"type": "number", "exclusiveMinimum": 0, "maximum": 5, "multipleOf": 0.5},
   "materials": {"type": "array", "minItems": 1, "items": {"enum": ["wood", "metal", "plastic"]}},
   "appliances": {"type": "boolean"},
   "appliance_list": {"type": "string", "minLength": 1, "maxLength": 500},
   "weekday": {"enum": ["monday", "wednesday", "friday"]},
   "kerbside": {"const": true}},
  "required": ["family_name", "given_name", "postcode", "items", "volume_m3", "materials", "appliances", "weekday", "kerbside"]},
 "layout": {"pages": [
  {"title": {"de": "Wer", "en": "Who"}, "fields": [
   {"name": "family_name", "label": {"de": "Familienname", "en": "Family name"}},
   {"name": "given_name", "label": {"de": "Vorname", "en": "Given name"}},
   {"name": "postcode", "label": {"de": "Postleitzahl", "en": "Postcode"}, "help": {"de": "fünf Ziffern", "en": "five digits"}},
   {"name": "email", "label": {"de": "E-Mail für Rückfragen", "en": "E-mail for questions"}},
   {"name": "pickup_date", "label": {"de": "Wunschtermin", "en": "Preferred date"}}]},
  {"title": {"de": "Was", "en": "What"}, "fields": [
   {"name": "items", "label": {"de": "Gegenstände und Anzahl", "en": "Items and number"}},
   {"name": "volume_m3", "label": {"de": "Menge in Kubikmetern", "en": "Volume in cubic metres"}, "help": {"de": "in Schritten von 0,5", "en": "in steps of 0.5"}},
   {"name": "materials", "label": {"de": "Materialien", "en": "Materials"}},
   {"name": "appliances", "label": {"de": "Sind Elektrogeräte dabei?", "en": "Are there electrical appliances?"}},
   {"name": "appliance_list", "label": {"de": "Welche Elektrogeräte?", "en": "Which appliances?"},
    "show_if": {"field": "appliances", "equals": true}, "require_if": {"field": "appliances", "equals": true}},
   {"name": "weekday", "label": {"de": "Wochentag", "en": "Weekday"}},
   {"name": "kerbside", "label": {"de": "Ich stelle alles an den Straßenrand.", "en": "I put everything at the kerbside."}},
   {"name": "photo", "label": {"de": "Foto", "en": "Photo"}}]}]},
 "attachments": [{"name": "photo", "media_types": ["image/jpeg", "image/png"], "max_bytes": 1048576}],
 "statuses": [{"id": "received", "label": {"de": "Eingegangen", "en": "Received"}},
  {"id": "in_progress", "label": {"de": "In Bearbeitung", "en": "In progress"}},
  {"id": "needs_information", "label": {"de": "Rückfrage", "en": "Needs information"}},
  {"id": "decided", "label": {"de": "Entschieden", "en": "Decided"}, "final": true}],
 "processing_days": 14}`

// publish signs the test template as the office's member and publishes it.
func (o *office) publish(t *testing.T, srv *kanaldtest.Server, name string) *forms.Template {
	t.Helper()
	tpl, err := forms.Decode([]byte(fmt.Sprintf(webTemplate, o.org, name)))
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := forms.Sign(tpl, nil, orgsig.Member{Key: o.dev.Key, DeviceCert: o.certs.dev, Membership: o.certs.mem, OrgCert: o.certs.org},
		o.dev.CA, time.Now(), o.dev.Intermediates...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fclient.New(srv.URL, o.dev.Token, nil).Publish(context.Background(), signed); err != nil {
		t.Fatal(err)
	}
	return tpl
}

// setLang switches the page to de or en with the keyboard, if it is not.
func (b *tab) setLang(l string) {
	b.t.Helper()
	if run(b, "lang", chromedp.Evaluate[string](`document.documentElement.lang`)) != l {
		b.do("switch to "+l, chromedp.Focus(chromedp.CSS("#lang")), chromedp.KeyEvent(kb.Enter),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`html[lang=%q] body`, l))))
	}
}

// openConvNamed opens the conversation whose button names name.
func openConvNamed(name string) chromedp.Action[chromedp.Void] {
	x := fmt.Sprintf(`//ul[@id="convs"]//button[contains(., %q)]`, name)
	return chromedp.Steps(visibleX(x), chromedp.Focus(chromedp.Search(x)), chromedp.KeyEvent(kb.Enter))
}

// TestWebFormAndCaseInbox: an office's member (Go SDK, as kanal form
// request does; the page does not send form requests) sends a citizen a
// form request; the citizen, in the browser, opens the form rendered from
// the template the browser verified, fills it with the keyboard — one
// attempt with a wrong postcode first, which shows the error at its field
// and sends nothing — and submits; kanald has the case, the receipt shows
// it. An agent of the office, in another browser, opens the case inbox,
// sees the case with its answers checked on her device, exactly as typed,
// moves it to in progress and writes to the citizen as the office.
// axe-core checks every new state, in German and English.
func TestWebFormAndCaseInbox(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
	amt := newOffice(t, srv, op, "Bürgeramt Musterstadt", "office", "anna@buergeramt.example", "agent")
	tpl := amt.publish(t, srv, "Bürgeramt Musterstadt")
	inboxAPI := cclient.New(srv.URL, amt.dev.Token, nil)

	agent := newTab(t, "agent")
	agentAccount := agent.signUp(srv, dir, "bernd@buergeramt.example", "Bernd Agent", "agent passphrase")
	if _, err := op.AddMember(ctx, amt.org, agentAccount, "agent"); err != nil {
		t.Fatal(err)
	}
	agent.do("unlock as agent", chromedp.Reload(), visible("#unlock-pass"), typeEnter("#unlock-pass", "agent passphrase"),
		visible("#cases-"+amt.org))

	citizen := newTab(t, "citizen")
	account := citizen.signUp(srv, dir, "clara@example.org", "Clara Citizen", "citizen passphrase")
	citizen.setLang("de")

	amt.send(t, account, &kind.FormRequestBody{RequestID: "fr_webtest01", TemplateID: tpl.ID, Version: tpl.Version,
		TemplateHash: tpl.Hash(), Title: tpl.Title.DE, Prefill: json.RawMessage(`{"family_name":"Citizen"}`)})
	citizen.do("the form request arrives", openConvNamed("Bürgeramt Musterstadt"),
		visibleX(`//ol[@id="messages"]/li/p[contains(., "Sperrmüll anmelden")]`),
		chromedp.Focus(chromedp.Search(`//ol[@id="messages"]/li/button[@class="open-item"]`)), chromedp.KeyEvent(kb.Enter),
		visible("#form-fill"))
	if f := run(citizen, "focus", chromedp.Evaluate[string](`document.activeElement.id`)); f != "h-form" {
		t.Fatalf("the form opened with the focus on %q", f)
	}
	// Every kind of field has its control, and labels are tied to them.
	controls := run(citizen, "controls", chromedp.Evaluate[string](`[...document.querySelectorAll("#form-fill .field")].map((w) => w.dataset.field + "=" + w.dataset.control + (w.hidden ? "(hidden)" : "")).join(" ")`))
	if want := "family_name=text given_name=text postcode=text email=email pickup_date=date items=list volume_m3=number materials=checks appliances=boolean appliance_list=textarea(hidden) weekday=choice kerbside=confirm photo=file"; controls != want {
		t.Fatalf("the form's controls:\n%s\nwant\n%s", controls, want)
	}
	if v := run(citizen, "prefill", chromedp.Evaluate[string](`document.getElementById("ff-family_name").value`)); v != "Citizen" {
		t.Fatalf("the prefilled family name is %q", v)
	}
	citizen.axe("form")
	citizen.shot(dir, "form")

	// The keyboard fills it; the postcode has four digits.
	citizen.do("fill in",
		chromedp.SendKeys(chromedp.CSS("#ff-given_name"), "Clara"),
		chromedp.SendKeys(chromedp.CSS("#ff-postcode"), "1234"),
		chromedp.SendKeys(chromedp.CSS("#ff-email"), "clara@example.org"),
		chromedp.SendKeys(chromedp.CSS("#ff-items-0-item"), "Sofa"),
		chromedp.SendKeys(chromedp.CSS("#ff-items-0-count"), "1"),
		press("#ff-items-add", kb.Enter), visible("#ff-items-1-item"),
		chromedp.SendKeys(chromedp.CSS("#ff-items-1-item"), "Matratze"),
		chromedp.SendKeys(chromedp.CSS("#ff-items-1-count"), "2"),
		chromedp.SendKeys(chromedp.CSS("#ff-volume_m3"), "1,5"),
		press("#ff-materials-0", " "), press("#ff-materials-1", " "),
		press("#ff-appliances-0", " "), visible("#ff-appliance_list"),
		chromedp.SendKeys(chromedp.CSS("#ff-appliance_list"), "Kühlschrank"),
		press("#ff-weekday-1", " "),
		press("#ff-kerbside", " "),
		press("#form-submit", kb.Enter),
		visible("#form-errors"))
	if f := run(citizen, "focus", chromedp.Evaluate[string](`document.activeElement.id`)); f != "h-form-errors" {
		t.Fatalf("after the refused attempt the focus is on %q", f)
	}
	errState := run(citizen, "postcode error", chromedp.Evaluate[string](`(() => { const i = document.getElementById("ff-postcode");
		return i.getAttribute("aria-invalid") + "|" + i.getAttribute("aria-describedby") + "|" + document.getElementById("ff-postcode-error").textContent + "|" +
		document.querySelectorAll("#form-errors li").length + "|" + document.querySelectorAll("[aria-invalid=true]").length })()`))
	parts := strings.Split(errState, "|")
	if parts[0] != "true" || parts[1] != "ff-postcode-help ff-postcode-error" || parts[2] == "" || parts[3] != "1" || parts[4] != "1" {
		t.Fatalf("the wrong postcode is not shown at its field: %q", errState)
	}
	if n := run(citizen, "answers kept", chromedp.Evaluate[string](`document.getElementById("ff-items-1-item").value + "/" + document.getElementById("ff-appliance_list").value`)); n != "Matratze/Kühlschrank" {
		t.Fatalf("after the refused attempt the answers are %q", n)
	}
	list, err := inboxAPI.List(ctx, amt.org, cases.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Cases) != 0 {
		t.Fatalf("the refused attempt opened %d cases", len(list.Cases))
	}
	citizen.axe("form errors")
	citizen.shot(dir, "form-errors")
	citizen.setLang("en")
	if e := run(citizen, "error in English", chromedp.Text(chromedp.CSS("#ff-postcode-error"))); e == parts[2] || e == "" {
		t.Fatalf("the error in English is %q (German %q)", e, parts[2])
	}
	citizen.axe("form errors in English")
	citizen.shot(dir, "form-errors-en")
	citizen.setLang("de")

	// Corrected, it goes.
	citizen.do("correct and send",
		chromedp.SendKeys(chromedp.CSS("#ff-postcode"), "5"),
		press("#form-submit", kb.Enter),
		visible("#h-form-receipt"))
	if s := run(citizen, "receipt", chromedp.Text(chromedp.CSS("#form-case-status"))); s != "Eingegangen" {
		t.Fatalf("the receipt shows the status %q", s)
	}
	caseID := run(citizen, "case id", chromedp.Text(chromedp.CSS("#form-case")))
	citizen.axe("form receipt")
	citizen.shot(dir, "form-receipt")
	citizen.setLang("en")
	citizen.axe("form receipt in English")
	citizen.shot(dir, "form-receipt-en")
	citizen.setLang("de")

	list, err = inboxAPI.List(ctx, amt.org, cases.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Cases) != 1 || list.Cases[0].ID != caseID || list.Cases[0].Citizen != account || list.Cases[0].Status != cases.StatusReceived ||
		list.Cases[0].TemplateHash != tpl.Hash() {
		t.Fatalf("kanald's cases after the submission: %+v (the page shows %s)", list.Cases, caseID)
	}
	// What went end to end is what was typed, typed as the schema says.
	in := amt.receive(t, kind.FormSubmission)
	sub := in.Message.Body.(*kind.FormSubmissionBody)
	var got, want map[string]any
	if err := json.Unmarshal(sub.Answers, &got); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(`{"family_name":"Citizen","given_name":"Clara","postcode":"12345","email":"clara@example.org",
		"items":[{"item":"Sofa","count":1},{"item":"Matratze","count":2}],"volume_m3":1.5,"materials":["wood","metal"],
		"appliances":true,"appliance_list":"Kühlschrank","weekday":"wednesday","kerbside":true}`), &want)
	if !reflect.DeepEqual(got, want) || sub.CaseID != caseID || sub.RequestID != "fr_webtest01" || in.SenderAccount != account {
		t.Fatalf("the office received case %s, request %s from %s:\n%s", sub.CaseID, sub.RequestID, in.SenderAccount, sub.Answers)
	}

	// The agent's case inbox: the submission reached her browser, was
	// checked there, and shows as typed.
	agent.setLang("de")
	agent.do("the submission arrives", openConvNamed("Clara Citizen"),
		visibleX(`//ol[@id="messages"]/li/p[contains(., "Formular eingereicht")]`),
		press("#cases-"+amt.org, kb.Enter), visible("#case-list"))
	row := run(agent, "inbox row", chromedp.Text(chromedp.CSS("#case-list tbody tr")))
	for _, w := range []string{caseID, "sperrmuell-web 1.0.0", "Clara Citizen", "Eingegangen", "auf diesem Gerät, geprüft"} {
		if !strings.Contains(row, w) {
			t.Errorf("the inbox row does not show %q: %q", w, row)
		}
	}
	agent.axe("case inbox")
	agent.shot(dir, "case-inbox")
	agent.do("open the case", press(fmt.Sprintf(`#case-list button[data-case=%q]`, caseID), kb.Enter), visible("#case-answers"))
	answers := run(agent, "answers", chromedp.Evaluate[string](`[...document.querySelectorAll("#case-answers dt")].map((dt) => dt.textContent + " = " + dt.nextElementSibling.textContent).join("\n")`))
	const wantAnswers = `Familienname = Citizen
Vorname = Clara
Postleitzahl = 12345
E-Mail für Rückfragen = clara@example.org
Gegenstände und Anzahl = item: Sofa, count: 1; item: Matratze, count: 2
Menge in Kubikmetern = 1.5
Materialien = wood; metal
Sind Elektrogeräte dabei? = Ja
Welche Elektrogeräte? = Kühlschrank
Wochentag = wednesday
Ich stelle alles an den Straßenrand. = Ja`
	if answers != wantAnswers {
		t.Fatalf("the agent sees the answers\n%s\nwant\n%s", answers, wantAnswers)
	}
	agent.axe("case")
	agent.shot(dir, "case")
	agent.setLang("en")
	agent.axe("case in English")
	agent.shot(dir, "case-en")
	agent.setLang("de")

	// In progress, with a word to the citizen as the office.
	agent.do("change the status",
		chromedp.SendKeys(chromedp.CSS("#case-message"), "Wir holen am Mittwoch ab."),
		chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter),
		visibleX(`//dd[@id="case-status"][.="In Bearbeitung"]`))
	agent.axe("case in progress")
	agent.shot(dir, "case-in-progress")
	res, err := inboxAPI.Get(ctx, caseID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Case.Status != cases.StatusInProgress {
		t.Fatalf("kanald's case is %s", res.Case.Status)
	}
	citizen.do("the office's word arrives",
		visibleX(`//ol[@id="messages"]/li[contains(@class,"office")]/p[.="Wir holen am Mittwoch ab."]`))
	citizen.shot(dir, "office-answered")
	t.Logf("screenshots in %s", dir)
}

// TestAttackFormRequestRefused: the page fills in only a form its office
// published, in the version the request names. The adversaries: an
// office's member whose request names a template hash the catalogue does
// not have (an altered template, or a catalogue that serves another
// version); another office's agent who sends the Bürgeramt's form in his
// own conversation, so that the answers would reach him; and an account
// that is no office at all sending a form request directly. The page
// refuses each: nothing to fill is rendered, and no case is opened.
func TestAttackFormRequestRefused(t *testing.T) {
	chromium(t)
	ctx := context.Background()
	dir := artefacts(t)
	srv := kanaldtest.Start(t, kanald)
	op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
	amt := newOffice(t, srv, op, "Bürgeramt Musterstadt", "office", "anna@buergeramt.example", "agent")
	other := newOffice(t, srv, op, "Ordnungsamt Musterstadt", "office", "otto@ordnungsamt.example", "agent")
	tpl := amt.publish(t, srv, "Bürgeramt Musterstadt")

	citizen := newTab(t, "citizen")
	account := citizen.signUp(srv, dir, "clara@example.org", "Clara Citizen", "citizen passphrase")
	citizen.setLang("en")

	refused := func(conv, request, want string) {
		t.Helper()
		citizen.do("open "+request, openConvNamed(conv),
			visibleX(fmt.Sprintf(`//ol[@id="messages"]/li/p[contains(., %q)]`, request)),
			chromedp.Focus(chromedp.Search(fmt.Sprintf(`//ol[@id="messages"]/li[p[contains(., %q)]]/button[@class="open-item"]`, request))),
			chromedp.KeyEvent(kb.Enter),
			visibleX(fmt.Sprintf(`//p[@id="status"][contains(., %q)]`, want)))
		if n := run(citizen, "inputs", chromedp.Evaluate[int](`document.querySelectorAll("#form-panel, #form-fill, #form-panel input").length`)); n != 0 {
			t.Fatalf("%s: the page rendered a form to fill (%d elements)", request, n)
		}
		citizen.shot(dir, "refused-"+strings.ReplaceAll(strings.ToLower(request), " ", "-"))
	}

	// A hash the catalogue's (verified) template does not have.
	altered := "sha256:" + strings.Repeat("ab", 32)
	amt.send(t, account, &kind.FormRequestBody{RequestID: "fr_altered", TemplateID: tpl.ID, Version: tpl.Version, TemplateHash: altered, Title: "Altered form"})
	refused("Bürgeramt Musterstadt", "Altered form", "is not the one named")

	// The Bürgeramt's form, sent by the Ordnungsamt's agent in the
	// citizen's conversation with the Ordnungsamt.
	other.send(t, account, &kind.FormRequestBody{RequestID: "fr_wrongoffice", TemplateID: tpl.ID, Version: tpl.Version, TemplateHash: tpl.Hash(), Title: "Borrowed form"})
	refused("Ordnungsamt Musterstadt", "Borrowed form", "is not published by "+other.org)

	// A form request from a person, not an office: no button, and the SDK
	// refuses to render it when asked directly.
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mallory := srv.SignUp(t, "mallory@example.org", key)
	msdk := mallory.SDK(t, srv.URL, client.NewMemoryStore())
	if _, err := msdk.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := kind.New(client.NewMessageID(), time.Now(), &kind.FormRequestBody{RequestID: "fr_person", TemplateID: tpl.ID, Version: tpl.Version, TemplateHash: tpl.Hash(), Title: "Personal form"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := msdk.Send(ctx, client.Peer{AccountID: account}, m); err != nil {
		t.Fatal(err)
	}
	citizen.do("the person's request arrives", openConvNamed(mallory.AccountID),
		visibleX(`//ol[@id="messages"]/li/p[contains(., "Personal form")]`))
	if n := run(citizen, "buttons", chromedp.Evaluate[int](`document.querySelectorAll("#messages button").length`)); n != 0 {
		t.Fatalf("a form request from a person has %d buttons", n)
	}
	msg := run(citizen, "ask the SDK", chromedp.Evaluate[string](fmt.Sprintf(`kanalGo.form(%q).then(() => "rendered", (e) => e.message)`, m.ID), chromedp.EvalAwaitPromise))
	if !strings.Contains(msg, "no form.request") {
		t.Fatalf("the SDK on a form request from a person: %q", msg)
	}
	sub := run(citizen, "submit it anyway", chromedp.Evaluate[string](fmt.Sprintf(`kanalGo.submitForm(%q, "{}", []).then(() => "sent", (e) => e.message)`, m.ID), chromedp.EvalAwaitPromise))
	if sub == "sent" {
		t.Fatal("the SDK submitted a form a person requested")
	}
	for _, o := range []*office{amt, other} {
		list, err := cclient.New(srv.URL, o.dev.Token, nil).List(ctx, o.org, cases.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Cases) != 0 {
			t.Fatalf("%s has %d cases after refused requests", o.org, len(list.Cases))
		}
	}
}
