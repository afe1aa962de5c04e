package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/payments"
)

const (
	pspSecret = "whsec_e2e_0123456789abcdef0123456789"
	pspKey    = "psp_e2e_key"
)

// e2ePSP is the outside card/wallet provider for the end-to-end test: it
// creates payments for kanald and, when the test says the citizen has
// paid, signs and delivers the webhook as a real provider would.
type e2ePSP struct {
	srv *httptest.Server
	mu  sync.Mutex
	pay map[string]payments.WebhookEvent // by payment id
}

func newE2EPSP(t *testing.T) *e2ePSP {
	p := &e2ePSP{pay: map[string]payments.WebhookEvent{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			AmountCents int64  `json:"amount_cents"`
			Currency    string `json:"currency"`
			Reference   string `json:"reference"`
			RequestID   string `json:"request_id"`
		}
		if r.Header.Get("Authorization") != "Bearer "+pspKey || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		id := fmt.Sprintf("pay_%d", len(p.pay)+1)
		p.pay[id] = payments.WebhookEvent{ID: "evt_" + id, Type: "payment.succeeded", PaymentID: id, RequestID: in.RequestID,
			AmountCents: in.AmountCents, FeeCents: 49, Currency: in.Currency}
		p.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": id, "checkout_url": "https://psp.example/checkout/" + id})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// deliver posts the signed payment.succeeded webhook of payment id to
// kanald n times at once and returns the answers' statuses.
func (p *e2ePSP) deliver(t *testing.T, kanald, id string, n int, sign func([]byte) string) []string {
	t.Helper()
	p.mu.Lock()
	ev, ok := p.pay[id]
	p.mu.Unlock()
	if !ok {
		t.Fatalf("no payment %s at the provider", id)
	}
	body, _ := json.Marshal(ev)
	hdr := sign(body)
	out := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, kanald+"/v1/payments/webhooks/psp", bytes.NewReader(body))
			req.Header.Set(payments.SignatureHeader, hdr)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out[i] = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}()
	}
	wg.Wait()
	return out
}

// TestPaymentsSession is issue 9's end-to-end test with the real kanald and
// kanal binaries: a merchant sends an offer in the chat, the citizen
// countersigns it, the contract verifies offline, the payment request is
// paid through the provider's signed webhook (delivered twice at once),
// payment.status paid reaches both parties, and the books balance; then
// an office fee is paid by bank transfer from a camt.053 statement.
func TestPaymentsSession(t *testing.T) {
	psp := newE2EPSP(t)
	srv := kanaldtest.Start(t, bin.kanald, "KANAL_PSP_URL="+psp.srv.URL, "KANAL_PSP_API_KEY="+pspKey, "KANAL_PSP_WEBHOOK_SECRET="+pspSecret)
	s := &session{
		t:    t,
		work: t.TempDir(),
		vars: map[string]string{"DUE": time.Now().AddDate(0, 0, 14).Format(time.DateOnly),
			"CRED":  strings.Repeat("Bäckerei Körner ", 4) + "Söhne!", // 70 characters, 78 bytes
			"EUROS": strings.Repeat("€", 70)},                         // 70 characters, 210 bytes
		env: []string{
			"PATH=" + os.Getenv("PATH"),
			"KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple",
			"KANAL_PASSWORD=Tr0ub4dor&3-but-longer",
		},
	}
	camt, err := filepath.Abs("../../payments/testdata/camt053.xml")
	if err != nil {
		t.Fatal(err)
	}
	s.vars["CAMT"] = camt
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
		// Carl's device comes online once and publishes its keys, as the
		// app does when it starts; nothing is waiting for him yet.
		{home: "carl", cmd: "kanal pay wait none --timeout 2s", exit: 1, want: []string{"nothing arrived"}},

		// Must-show 1: offer in the chat → countersigned → verifies offline.
		{home: "mia", cmd: "kanal offer send --org $ORG --to $CARL --item 'Hochzeitstorte, drei Etagen|1|189.00|7' --item 'Lieferung|1|25.00|19' --terms 'Lieferung am 20. Juni.'",
			want: []string{"Sent offer over EUR 214.00"}, set: map[string]string{"OFFER": `(?m)^(of_\S+)$`}},
		// The offer arrives and is shown, but a binding signature needs
		// confirmation: without a terminal and without --yes, nothing is
		// signed. The offer stays available by its id.
		{home: "carl", cmd: "kanal offer sign --out contract.jws", exit: 1, want: []string{"Offer $OFFER from Bäckerei Korn", "not confirmed"}},
		{home: "carl", cmd: "kanal offer list", want: []string{"$OFFER", "Bäckerei Korn", "EUR 214.00", "open"}},
		{home: "carl", cmd: "kanal offer show $OFFER", want: []string{"Hochzeitstorte", "total EUR 214.00 (VAT included: EUR 16.35)", "role seller"}},
		{home: "carl", cmd: "kanal offer sign $OFFER --yes --out contract.jws", want: []string{"Offer $OFFER from Bäckerei Korn", "Hochzeitstorte", "total EUR 214.00 (VAT included: EUR 16.35)"},
			set: map[string]string{"CONTRACT": `(?m)^([0-9a-f]{64})$`}},
		{home: "carl", cmd: "kanal directory ca > ca.pem"},
		{home: "carl", cmd: "kanal directory ca --crl > crl.pem"},
		{cmd: "kanal verify contract.jws --ca ca.pem", want: []string{"Contract $CONTRACT verifies.", "role seller", "level substantial",
			"neither device was revoked at signing time (checked against the certificate statuses embedded at signing)"}},
		{cmd: "kanal verify contract.jws --ca ca.pem --crl crl.pem", want: []string{"Contract $CONTRACT verifies.", "checked against the given revocation list"}},
		// Must-show 3: one byte changed, and the contract fails.
		{do: func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(s.work, "contract.jws"))
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/3] ^= 0x01
			os.WriteFile(filepath.Join(s.work, "altered.jws"), b, 0o644)
		}},
		{cmd: "kanal verify altered.jws --ca ca.pem", exit: 1, not: []string{"verifies."}},

		// The payment request for the contract, sent in the chat.
		{home: "mia", cmd: "kanal pay request --org $ORG --contract $CONTRACT --creditor 'Bäckerei Korn' --iban 'DE02 1203 0000 0000 2020 51' --purpose 'Auftrag $OFFER' --due $DUE --key req-1",
			want: []string{"EUR 214.00"}, set: map[string]string{"REQ": `(?m)^(pr_\S+)$`}},
		{home: "mia", cmd: "kanal pay request --org $ORG --contract $CONTRACT --creditor 'Bäckerei Korn' --iban 'DE02 1203 0000 0000 2020 51' --purpose 'Auftrag $OFFER' --due $DUE --key req-1",
			want: []string{"$REQ", "answered from the first request"}},
		{home: "mia", cmd: "kanal -v pay request --org $ORG --contract $CONTRACT --creditor 'Bäckerei Korn' --iban 'DE02 1203 0000 0000 2020 51' --purpose 'anders' --due $DUE --key req-1",
			exit: 1, want: []string{"(urn:kanal:problem:idempotency-key-reused)"}},
		// A wrong IBAN is refused before kanald is asked (kanald's own
		// refusal of it is payments.TestBadCreatesChangeNothing's).
		{home: "mia", cmd: "kanal -v pay request --org $ORG --to $CARL --amount 10.00 --creditor 'Bäckerei Korn' --iban 'DE03 1203 0000 0000 2020 51' --purpose x --due $DUE",
			exit: 1, want: []string{"iban: invalid IBAN: checksum does not match"}, not: []string{"urn:kanal:problem"}},
		{home: "carl", cmd: "kanal -v pay request --org $ORG --to $CARL --amount 10.00 --creditor 'Bäckerei Korn' --iban 'DE02 1203 0000 0000 2020 51' --purpose x --due $DUE",
			exit: 1, want: []string{"(urn:kanal:problem:forbidden)"}},
		{home: "carl", cmd: "kanal pay show $REQ", want: []string{"open", "EUR 214.00", "DE02120300000000202051"}},
		// Must-show 5 through the CLI: the PNG decodes to the EPC fields.
		{home: "carl", cmd: "kanal pay qr $REQ --out qr.png"},
		{do: func(t *testing.T) {
			lines := strings.Split(decodePNG(t, filepath.Join(s.work, "qr.png")), "\n")
			want := []string{"BCD", "002", "1", "SCT", "", "Bäckerei Korn", "DE02120300000000202051", "EUR214.00", ""}
			if len(lines) < len(want)+1 || strings.Join(lines[:len(want)], "|") != strings.Join(want, "|") || !strings.HasPrefix(lines[9], "RF") {
				t.Fatalf("QR code decodes to %q", lines)
			}
		}},
		{home: "carl", cmd: "kanal pay checkout $REQ", set: map[string]string{"PAY": `/checkout/(\S+)`}},
		// Must-show 4: the provider delivers the webhook twice, at once.
		{do: func(t *testing.T) {
			sign := func(b []byte) string { return payments.SignWebhook([]byte(pspSecret), time.Now(), b) }
			got := psp.deliver(t, srv.URL, s.vars["PAY"], 2, sign)
			joined := strings.Join(got, "\n")
			if !strings.Contains(joined, `200 {"status":"applied"}`) || !strings.Contains(joined, `200 {"status":"duplicate"}`) {
				t.Fatalf("deliveries: %q", got)
			}
			bad := psp.deliver(t, srv.URL, s.vars["PAY"], 1, func(b []byte) string {
				return payments.SignWebhook([]byte("whsec_not_the_secret_at_all_000000"), time.Now(), b)
			})
			if !strings.HasPrefix(bad[0], "400 ") || !strings.Contains(bad[0], "invalid-webhook") {
				t.Fatalf("bad signature: %q", bad)
			}
			old := psp.deliver(t, srv.URL, s.vars["PAY"], 1, func(b []byte) string { return payments.SignWebhook([]byte(pspSecret), time.Now().Add(-time.Hour), b) })
			if !strings.HasPrefix(old[0], "400 ") {
				t.Fatalf("old timestamp: %q", old)
			}
		}},
		{home: "carl", cmd: "kanal pay wait $REQ --status paid", want: []string{"$REQ paid EUR 214.00"}},
		{home: "mia", cmd: "kanal pay wait $REQ --status paid", want: []string{"$REQ paid EUR 214.00"}},
		{home: "mia", cmd: "kanal pay show $REQ", want: []string{"paid", "EUR 214.00 (psp)", "open → paid"}},
		{cmd: "kanal admin payments books", env: op, want: []string{"balanced:", "provider_clearing", "213.51", "provider_fees"}},

		// Must-show 2: a fee paid by bank transfer, matched from camt.053;
		// the lines that match nothing are listed, not lost.
		{home: "mia", cmd: "kanal pay request --org $ORG --to $CARL --amount 37.00 --reference 'RF18 5390 0754 7034' --creditor 'Bäckerei Korn' --iban DE89370400440532013000 --purpose 'Kurs Brotbacken' --due $DUE",
			set: map[string]string{"FEE": `(?m)^(pr_\S+)$`}},
		{cmd: "kanal admin payments import-camt $CAMT", env: op, want: []string{"1 matched, 2 unmatched", "pays $FEE", "Hans Beispiel", "no RF creditor reference"}},
		{cmd: "kanal admin payments import-camt $CAMT", env: op, want: []string{"0 matched, 0 unmatched, 3 already imported"}},
		{cmd: "kanal admin payments unmatched", env: op, want: []string{"EUR 110.00", "Hans Beispiel", "no RF creditor reference", "EUR 3.70"}},
		{home: "carl", cmd: "kanal pay show $FEE", want: []string{"paid", "EUR 37.00 (bank)"}},
		{cmd: "kanal admin payments books", env: op, want: []string{"balanced:", "unallocated"}},
		{cmd: "kanal admin payments audit", env: op, want: []string{"contract.register", "request.create", "request.paid", "statement.import"}},
		// Bad input and forbidden calls at the HTTP edge: clear problems,
		// and the books are exactly as they were.
		{do: func(t *testing.T) { badPaymentCalls(t, s, srv.URL) }},

		// A 70-character creditor with umlauts (more than 70 bytes) is one
		// rule end to end: created, and sent in the chat. Without --key,
		// running the same command again replays the first request instead
		// of creating a second one.
		{home: "mia", cmd: "kanal pay request --org $ORG --to $CARL --amount 12.00 --creditor '$CRED' --iban DE89370400440532013000 --purpose 'Brötchen für Jürgen' --due $DUE",
			set: map[string]string{"UML": `(?m)^(pr_\S+)$`}},
		{home: "mia", cmd: "kanal pay request --org $ORG --to $CARL --amount 12.00 --creditor '$CRED' --iban DE89370400440532013000 --purpose 'Brötchen für Jürgen' --due $DUE",
			want: []string{"$UML", "answered from the first request"}},
		{home: "carl", cmd: "kanal pay show $UML", want: []string{"open", "EUR 12.00", "Söhne"}},
		// Within the character limits but over the QR code's 331 bytes:
		// refused at creation with a problem, not a 500 at 'pay qr'.
		{home: "mia", cmd: "kanal -v pay request --org $ORG --to $CARL --amount 12.00 --creditor '$EUROS' --iban DE89370400440532013000 --purpose '$EUROS' --due $DUE",
			exit: 1, want: []string{"331", "(urn:kanal:problem:validation)"}, not: []string{"pr_"}},
		// A Swiss IBAN needs the BIC: refused before kanald is asked
		// (kanald's own refusal is payments.TestBICForNonEEASEPACountries').
		{home: "mia", cmd: "kanal -v pay request --org $ORG --to $CARL --amount 12.00 --creditor 'Stadt Zürich' --iban CH9300762011623852957 --purpose Gebühr --due $DUE",
			exit: 1, want: []string{"bic is required"}, not: []string{"urn:kanal:problem"}},
	}...))
}

// badPaymentCalls sends what a user must not be able to do, or what is
// malformed, straight to kanald with the users' own session tokens.
func badPaymentCalls(t *testing.T, s *session, base string) {
	token := func(home string) string {
		st, err := keystore.Open(filepath.Join(s.work, home, "keystore"), []byte("correct horse battery staple"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Data.SessionToken
	}
	mia, carl, op := token("mia"), token("carl"), s.vars["OPTOKEN"]
	call := func(method, path, tok, ctype, key, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, before := call("GET", "/v1/admin/payments/books", op, "", "", "")
	org, req := "/v1/orgs/"+s.vars["ORG"], "/v1/payment-requests/"+s.vars["REQ"]
	fee := func(amount string) string {
		return `{"payer_account":"` + s.vars["CARL"] + `","amount_cents":` + amount + `,"creditor":"Bäckerei Korn","iban":"DE89370400440532013000","purpose":"x","due_date":"` + s.vars["DUE"] + `"}`
	}
	for _, c := range []struct {
		name                                string
		method, path, tok, ctype, key, body string
		status                              int
		typ                                 string
	}{
		{"no idempotency key", "POST", org + "/payment-requests", mia, "application/json", "", fee("100"), 400, "idempotency-key-required"},
		{"unknown field", "POST", org + "/payment-requests", mia, "application/json", "b1", `{"bogus":1}`, 400, "invalid-json"},
		{"fractional cents", "POST", org + "/payment-requests", mia, "application/json", "b2", fee("37.5"), 400, "invalid-json"},
		{"negative amount", "POST", org + "/payment-requests", mia, "application/json", "b3", fee("-3700"), 422, "validation"},
		{"huge body", "POST", org + "/payment-requests", mia, "application/json", "b4", `{"purpose":"` + strings.Repeat("x", 100<<10) + `"}`, 413, "too-large"},
		{"not a contract", "POST", "/v1/contracts", carl, "application/json", "b5", `{"contract":"a.b.c"}`, 422, "invalid-contract"},
		{"payer cancels", "POST", req + "/cancel", carl, "application/json", "", `{}`, 403, "forbidden"},
		{"seller refunds", "POST", req + "/refunds", mia, "application/json", "b6", `{"amount_cents":100}`, 403, "forbidden"},
		{"seller reads the audit log", "GET", org + "/payments/audit", mia, "", "", "", 403, "forbidden"},
		{"no session", "GET", req, "", "", "", "", 401, "invalid-token"},
		{"citizen as operator", "GET", "/v1/admin/payments/books", carl, "", "", "", 401, "invalid-token"},
		{"statement as JSON", "POST", "/v1/admin/payments/statements", op, "application/json", "", `{}`, 415, "unsupported-media-type"},
		{"unknown provider", "POST", "/v1/payments/webhooks/other", "", "application/json", "", `{}`, 404, "not-found"},
	} {
		if got, b := call(c.method, c.path, c.tok, c.ctype, c.key, c.body); got != c.status || !strings.Contains(b, "urn:kanal:problem:"+c.typ) {
			t.Errorf("%s: %d %s, want %d %s", c.name, got, b, c.status, c.typ)
		}
	}
	if _, after := call("GET", "/v1/admin/payments/books", op, "", "", ""); after != before || !strings.Contains(after, `"balanced":true`) {
		t.Fatalf("books changed or unbalanced:\n%s\n%s", before, after)
	}
}

func decodePNG(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return decodeQRImage(t, img)
}
