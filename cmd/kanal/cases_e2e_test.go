package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps/cases"
	"github.com/kanal-server/kanal/payments"
)

// TestFormsSession is a form's whole way on the real binaries, two kanald
// nodes on one PostgreSQL and the NATS server: the Bürgeramt's agent Anna
// (on node A) sends Clara the dog registration; Clara fills it in a
// terminal (tmux) — one answer refused first, with the reason in German
// and English, then corrected — submits it and pays its fee. Anna and her
// colleague Ben (on node B) see the case, their clients having checked
// the answers again; Anna assigns it to herself and asks for information,
// Ben adds an internal note, Clara answers, and the case is decided. Every
// step is in Clara's conversation with the office and in the agents'.
// Afterwards no table of the database holds any of Clara's answers.
func TestFormsSession(t *testing.T) {
	psp := newE2EPSP(t)
	env := []string{"KANAL_PSP_URL=" + psp.srv.URL, "KANAL_PSP_API_KEY=" + pspKey, "KANAL_PSP_WEBHOOK_SECRET=" + pspSecret}
	// Two nodes on PostgreSQL and NATS when they are there (always under
	// CI); else, for a developer without them, one embedded node.
	var nodeA, nodeB *kanaldtest.Server
	var dbURL string
	if os.Getenv("CI") != "" || os.Getenv(dbtest.PostgresEnv) != "" && os.Getenv("KANAL_TEST_NATS") != "" {
		base := dbtest.PostgresURL(t)
		natsURL := kanaldtest.NATSURL(t)
		dbURL = dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))
		env = append(env, "KANAL_DATABASE_URL="+dbURL, "KANAL_NATS_URL="+natsURL, "KANAL_CA_DIR="+filepath.Join(t.TempDir(), "ca"))
		nodeA = kanaldtest.Start(t, bin.kanald, env...)
		nodeB = kanaldtest.Start(t, bin.kanald, env...)
	} else {
		t.Log("KANAL_TEST_POSTGRES and KANAL_TEST_NATS not set: one embedded node")
		nodeA = kanaldtest.Start(t, bin.kanald, env...)
		nodeB = nodeA
		dbURL = "sqlite:" + filepath.Join(nodeA.DataDir, "kanal.db")
	}

	var nonce [6]byte
	rand.Read(nonce[:])
	marker := "Klartext" + hex.EncodeToString(nonce[:])
	s := &session{t: t, work: t.TempDir(),
		vars: map[string]string{"NODEA": nodeA.URL, "NODEB": nodeB.URL, "MARK": marker},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + nodeA.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	onB := []string{"KANAL_SERVER=$NODEB"}
	var steps []step
	for _, u := range []struct{ home, email, v string }{{"clara", "clara@example.org", "CLARA"}, {"anna", "anna@buergeramt.example", "ANNA"}, {"ben", "ben@buergeramt.example", "BEN"}} {
		steps = append(steps, signUpSteps(s, nodeA, u.home, u.email, u.v)...)
	}
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run(append(steps, []step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = nodeA.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind office 'Bürgeramt Musterstadt'", env: op, set: map[string]string{"ORG": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role admin $ORG anna@buergeramt.example", env: op},
		{cmd: "kanal admin org member add --role agent $ORG ben@buergeramt.example", env: op},
		// Each device comes online once and publishes its keys.
		{home: "clara", cmd: "kanal inbox"},
		{home: "ben", cmd: "kanal inbox", env: onB},
		{home: "anna", cmd: "kanal inbox"},
		// The office's fees are paid to the city treasury; an agent may
		// not change that account, an admin may.
		{home: "ben", cmd: "kanal -v case fee-account --org $ORG --creditor 'Mallory' --iban DE02120300000000202051", env: onB, exit: 1,
			want: []string{"urn:kanal:problem:forbidden"}},
		{home: "anna", cmd: "kanal case fee-account --org $ORG --creditor 'Stadtkasse Musterstadt' --iban 'DE89 3704 0044 0532 0130 00'",
			want: []string{"paid to Stadtkasse Musterstadt, DE89370400440532013000"}},
		{home: "ben", cmd: "kanal case fee-account --org $ORG", env: onB, want: []string{"paid to Stadtkasse Musterstadt, DE89370400440532013000"}},
		{home: "clara", cmd: "kanal -v case fee-account --org $ORG", exit: 1, want: []string{"urn:kanal:problem:forbidden"}},
		// The office publishes the dog registration as its own form;
		// Anna sends it to Clara, with the city already filled in. A form
		// the office has not published cannot be sent.
		{home: "anna", cmd: "kanal form publish builtin:hundeanmeldung --org $ORG", want: []string{"Published hundeanmeldung 1.0.0"}},
		{home: "anna", cmd: "kanal form request --org $ORG $CLARA sperrmuell", exit: 1, want: []string{"sperrmuell"}, not: []string{"Sent form"}},
		{home: "anna", cmd: "kanal form request --org $ORG $CLARA hundeanmeldung --prefill city=Musterstadt",
			want: []string{"Sent form hundeanmeldung 1.0.0"}, set: map[string]string{"REQ": `(?m)^(fr_\S+)$`}},
		{home: "clara", cmd: "kanal inbox", want: []string{"form request $REQ", "Anmeldung eines Hundes", "kanal form fill $REQ"}},
	}...))

	// Clara fills the form in a terminal.
	x := newTmux(t, s.work)
	script := filepath.Join(s.work, "clara-fill.sh")
	var b strings.Builder
	fmt.Fprintf(&b, "cd %s\n", s.work)
	for _, e := range append([]string{"KANAL_HOME=" + filepath.Join(s.work, "clara")}, s.env...) {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&b, "export %s='%s'\n", k, v)
	}
	fmt.Fprintf(&b, "exec %s form fill %s\n", bin.kanal, s.vars["REQ"])
	if err := os.WriteFile(script, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"big.pdf": 6 << 20, "notes.txt": 100, "sachkunde.pdf": 2000} {
		b := bytes.Repeat([]byte("x"), size)
		if strings.HasSuffix(name, ".pdf") {
			copy(b, "%PDF-1.7\n")
		}
		if err := os.WriteFile(filepath.Join(s.work, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	x.start("clara", script)
	x.waitFor("clara", "Anmeldung eines Hundes zur Hundesteuer (hundeanmeldung 1.0.0)", "Gebühr / fee: EUR 5.00")
	for _, a := range []struct{ prompt, answer string }{
		{"Familienname *", "Mustermann-" + marker},
		{"Vorname *", "Clara"},
		{"Geburtsdatum *", "1990-04-01"},
		{"Straße und Hausnummer *", "Hauptstraße 1"},
		// One answer wrong first: the field is refused at once and asked again.
		{"Postleitzahl *", "1234"},
		{"✗ postcode: Die Angabe hat nicht das verlangte Format. / The answer does not have the required format.", "12345"},
		{"Ort * [\"Musterstadt\"]", ""}, // prefilled: kept
		{"Telefon für Rückfragen", ""},  // optional
		{"Name des Hundes *", "Bello"},
		{"Rasse oder Kreuzung *", "Dackel"},
		{"(female|male)", "female"},
		{"Wurfdatum *", "2024-03-01"},
		{"Farbe", ""},
		{"Transpondernummer (Chip)", ""},
		{"Hund gehalten seit *", "2026-11-01"},
		{"Sind Sie mit dem Hund zugezogen?", "nein"},
		// A dangerous dog needs the proof of competence, a PDF or image of
		// at most 5 MB: a larger file and a text file are refused.
		{"Gilt der Hund als gefährlich", "ja"},
		{"Sachkundenachweis *", "big.pdf"},
		{"✗ competence_proof: Die Datei muss zwischen 1 und 5242880 Bytes groß sein. / The file must be between 1 and 5242880 bytes.", "notes.txt"},
		{"✗ competence_proof: Dateityp text/plain ist nicht erlaubt", "sachkunde.pdf"},
		{"Besteht eine Hundehaftpflichtversicherung? *", "ja"},
		{"Versicherungsgesellschaft *", "Haftpflicht AG"},
		{"Versicherungsnummer *", "HP-" + marker},
		{"Beantragen Sie eine Ermäßigung oder Befreiung? *", "nein"},
	} {
		x.waitFor("clara", a.prompt)
		x.typeLine("clara", a.answer)
	}
	scr := x.waitFor("clara", "Gesendet / submitted: case case_", "kanal pay checkout pr_", "EXITED 0")
	for _, v := range []struct{ name, re string }{{"CASE", `case (case_[a-z2-7]+)`}, {"FEE", `kanal pay checkout (pr_\S+)`}} {
		m := regexpFind(v.re, scr)
		if m == "" {
			t.Fatalf("no %s on the screen:\n%s", v.name, scr)
		}
		s.vars[v.name] = m
	}

	s.run([]step{
		// Clara's receipt: the case is received, with its due date.
		{home: "clara", cmd: "kanal inbox", want: []string{"case $CASE: Eingegangen / Received", "payment $FEE open"}},
		// She pays the fee through the provider.
		{home: "clara", cmd: "kanal pay show $FEE", want: []string{"open", "EUR 5.00", "Stadtkasse Musterstadt", "Hundesteuermarke"}},
		{home: "clara", cmd: "kanal pay checkout $FEE", set: map[string]string{"PAY": `/checkout/(\S+)`}},
		{do: func(t *testing.T) {
			got := psp.deliver(t, nodeB.URL, s.vars["PAY"], 1, func(b []byte) string { return payments.SignWebhook([]byte(pspSecret), time.Now(), b) })
			if !strings.Contains(got[0], `"applied"`) {
				t.Fatalf("webhook: %q", got)
			}
		}},
		{home: "clara", cmd: "kanal pay wait $FEE --status paid", want: []string{"$FEE paid EUR 5.00"}},
		// Both agents, on both nodes, see the case; each client checked
		// the answers against the template itself.
		{home: "anna", cmd: "kanal cases --org $ORG", want: []string{"$CASE", "received", "hundeanmeldung 1.0.0", "checked"}},
		{home: "ben", cmd: "kanal cases --org $ORG", env: onB, want: []string{"$CASE", "received", "checked"}},
		{home: "ben", cmd: "kanal case show $CASE", env: onB, want: []string{"Familienname: Mustermann-$MARK", "Postleitzahl: 12345",
			"Sachkundenachweis: \"sachkunde.pdf\" (2.0 kB, application/pdf)",
			"Besteht eine Hundehaftpflichtversicherung?: ja / yes", "fee:      $FEE"}},
		// Anna takes it and asks for information; Ben sees who has it.
		{home: "anna", cmd: "kanal case assign $CASE me", want: []string{"assigned to $ANNA"}},
		{home: "ben", cmd: "kanal cases --org $ORG --assignee $ANNA", env: onB, want: []string{"$CASE"}},
		{home: "ben", cmd: "kanal cases --org $ORG --assignee none", env: onB, want: []string{"no cases"}},
		{home: "anna", cmd: "kanal case status $CASE needs_information --message 'Bitte nennen Sie die Farbe des Hundes.'",
			want: []string{"Rückfrage / Needs information", "Message sent"}},
		{home: "ben", cmd: "kanal case note $CASE 'Rasse ist nicht auf der Liste, keine Sachkunde nötig.'", env: onB, want: []string{"sent to the office's agents"}},
		{home: "anna", cmd: "kanal case show $CASE", want: []string{"Rückfrage / Needs information", "internal notes:", "Rasse ist nicht auf der Liste"}},
		// Clara sees the question, not the note, and answers.
		{home: "clara", cmd: "kanal inbox", want: []string{"case $CASE: Rückfrage / Needs information", "assigned to", "Bitte nennen Sie die Farbe des Hundes."},
			not: []string{"Rasse ist nicht auf der Liste"}},
		{home: "clara", cmd: "kanal send $ORG 'Die Farbe ist braun.'", want: []string{"sent"}},
		{home: "anna", cmd: "kanal inbox", want: []string{"Die Farbe ist braun."}},
		{home: "anna", cmd: "kanal case status $CASE in_progress"},
		{home: "anna", cmd: "kanal case status $CASE decided --message 'Bello ist angemeldet, die Steuermarke kommt per Post.'", want: []string{"Entschieden / Decided"}},
		// Every step, in both conversations.
		{home: "clara", cmd: "kanal inbox", want: []string{"case $CASE: In Bearbeitung / In progress", "case $CASE: Entschieden / Decided", "die Steuermarke kommt per Post"}},
		{home: "clara", cmd: "kanal conversations", want: []string{"Bürgeramt Musterstadt", "Bello ist angemeldet"}},
		{home: "ben", cmd: "kanal inbox", env: onB, want: []string{"Bitte nennen Sie die Farbe", "Die Farbe ist braun.", "Entschieden / Decided", "die Steuermarke kommt per Post"}},
		{home: "ben", cmd: "kanal cases --org $ORG --status decided", env: onB, want: []string{"$CASE", "decided", "$ANNA"}},
		{home: "ben", cmd: "kanal case show $CASE", env: onB, want: []string{"1 ", "received", "5 ", "decided"}},
		// The citizen does not work her own case.
		{home: "clara", cmd: "kanal -v case status $CASE received", exit: 1, want: []string{"urn:kanal:problem:"}},
		{home: "clara", cmd: "kanal -v cases --org $ORG", exit: 1, want: []string{"urn:kanal:problem:forbidden"}},

		// Bad input. Answers that do not fit are refused by Clara's own
		// client, with the field and the reason, and nothing is sent.
		{do: func(t *testing.T) {
			os.WriteFile(filepath.Join(s.work, "bad.json"), []byte(`{"family_name":"","postcode":"abc","sex":"cat"}`), 0o600)
		}},
		{home: "clara", cmd: "kanal form fill $ORG --template hundeanmeldung --answers bad.json", exit: 1,
			want: []string{"✗ family_name: Mindestens 1 Zeichen. / At least 1 characters.", "✗ postcode:", "✗ sex: Bitte einen der vorgegebenen Werte wählen.", "not sent"}},
		// A modified client sends them anyway: both agents' clients refuse
		// them on receipt and say why.
		{do: func(t *testing.T) { s.vars["BADCASE"] = sendUncheckedSubmission(t, s, "clara", s.vars["ORG"]) }},
		{home: "anna", cmd: "kanal inbox", want: []string{"form submission for case $BADCASE REFUSED", "postcode: The answer does not have the required format"}},
		{home: "ben", cmd: "kanal cases --org $ORG", env: onB, want: []string{"$BADCASE", "REFUSED"}},
		// Once the office withdraws the form, no new submission is made:
		// Clara's client refuses it, and so does the server.
		{home: "anna", cmd: "kanal form withdraw hundeanmeldung@1.0.0", want: []string{"hundeanmeldung"}},
		{home: "clara", cmd: "kanal form fill $ORG --template hundeanmeldung@1.0.0 --answers bad.json", exit: 1, want: []string{"withdrawn"}},
		{do: func(t *testing.T) { badCaseCalls(t, s, nodeA.URL) }},
	})
	searchAllTables(t, dbURL, []string{marker, "Hauptstraße 1", "1990-04-01", "Bitte nennen Sie die Farbe", "Rasse ist nicht auf der Liste", "Die Farbe ist braun"})
}

func regexpFind(re, s string) string {
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

// searchAllTables reads every row of every table of kanald's database
// and fails if any column holds one of the needles, as text or as hex.
func searchAllTables(t *testing.T, dbURL string, needles []string) {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, dbURL, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if d.Dialect() == db.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := d.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("only %d tables found: %v", len(tables), tables)
	}
	var raw [][]byte
	for _, n := range needles {
		raw = append(raw, bytes.ToLower([]byte(n)), []byte(hex.EncodeToString([]byte(n))))
	}
	scanned, withCases := 0, false
	for _, tbl := range tables {
		rs, err := d.Query(ctx, `SELECT * FROM "`+tbl+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		for rs.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				for _, n := range raw {
					if bytes.Contains(bytes.ToLower(v), n) {
						t.Fatalf("table %s column %s holds %q", tbl, cols[i], n)
					}
				}
			}
			scanned++
			withCases = withCases || tbl == "cases"
		}
		rs.Close()
	}
	if scanned == 0 || !withCases {
		t.Fatalf("scanned %d rows; the cases table had rows: %v", scanned, withCases)
	}
}

// sendUncheckedSubmission is a modified client: it registers a submission
// for Clara and sends answers that do not fit the form, skipping the
// checks kanal makes. It returns the case id.
func sendUncheckedSubmission(t *testing.T, s *session, home, org string) string {
	t.Helper()
	ctx := context.Background()
	env := map[string]string{"KANAL_HOME": filepath.Join(s.work, home)}
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	c := &cli{env: func(k string) string { return env[k] }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, now: time.Now}
	o := &opts{}
	sess, err := c.openChat(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := sess.formTemplate(ctx, c, o, org, "hundeanmeldung", "1.0.0", "", false)
	if err != nil {
		t.Fatal(err)
	}
	api, err := c.casesAPI(ctx, o, sess.st)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := api.Open(ctx, org, cases.OpenRequest{SubmissionID: "sub_unchecked", TemplateID: tpl.ID, Version: tpl.Version, TemplateHash: tpl.Hash()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := kind.New("m_unchecked", time.Now(), &kind.FormSubmissionBody{SubmissionID: "sub_unchecked", CaseID: cs.ID, TemplateID: tpl.ID,
		Version: tpl.Version, TemplateHash: tpl.Hash(), Answers: json.RawMessage(`{"family_name":"X","postcode":"abc"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.mc.Send(ctx, mclient.Peer{OrgID: org}, m); err != nil {
		t.Fatal(err)
	}
	return cs.ID
}

// badCaseCalls sends, with Clara's own session, submissions the server
// must refuse: a withdrawn form, an unknown form, another hash, a bad
// version; and an agent's calls she must not make. Each is a problem and
// the cases table is as it was.
func badCaseCalls(t *testing.T, s *session, base string) {
	st, err := keystore.Open(filepath.Join(s.work, "clara", "keystore"), []byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	tok := st.Data.SessionToken
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	org := "/v1/orgs/" + s.vars["ORG"]
	_, before := call("GET", "/v1/cases/"+s.vars["CASE"], "")
	open := func(id, version, hash string) string {
		return `{"submission_id":"sub_x","template_id":"` + id + `","version":"` + version + `","template_hash":"` + hash + `"}`
	}
	hash := "sha256:" + strings.Repeat("0", 64)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		typ                      string
	}{
		{"withdrawn form", "POST", org + "/cases", open("hundeanmeldung", "1.0.0", hash), 410, "template-withdrawn"},
		{"unknown form", "POST", org + "/cases", open("katzenanmeldung", "1.0.0", hash), 422, "unknown-form"},
		{"not a version", "POST", org + "/cases", open("hundeanmeldung", "1", hash), 422, "validation"},
		{"unknown field", "POST", org + "/cases", `{"submission_id":"s","answers":{}}`, 400, "invalid-json"},
		{"huge body", "POST", org + "/cases", `{"submission_id":"` + strings.Repeat("x", 8<<10) + `"}`, 413, "too-large"},
		{"citizen assigns", "POST", "/v1/cases/" + s.vars["CASE"] + "/assign", `{"assignee":"` + s.vars["CLARA"] + `"}`, 403, "forbidden"},
		{"citizen lists", "GET", org + "/cases", "", 403, "forbidden"},
		{"citizen sets the fee account", "PUT", org + "/fee-account", `{"creditor":"Clara","iban":"DE02120300000000202051"}`, 403, "forbidden"},
	} {
		if got, b := call(c.method, c.path, c.body); got != c.status || !strings.Contains(b, "urn:kanal:problem:"+c.typ) {
			t.Errorf("%s: %d %s, want %d %s", c.name, got, b, c.status, c.typ)
		}
	}
	if _, after := call("GET", "/v1/cases/"+s.vars["CASE"], ""); after != before {
		t.Fatalf("the case changed:\n%s\n%s", before, after)
	}
}
