package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/kanal-server/kanal/internal/eidtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestEIDCLI: the whole eID story with the real binaries and the test eID
// provider over HTTPS with a private CA. A citizen links her eID and her
// session becomes high; she votes in a survey only eID-proven citizens
// may answer; her second account cannot link the same eID; and when she
// moves the eID to that second account, it gets no second ballot. At the
// end no table of kanald's database holds her eID subject or an
// attribute.
func TestEIDCLI(t *testing.T) {
	work := t.TempDir()
	op, err := eidtest.Start(work)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	const subject = "DE-nPA-MARKER-0815-subject"
	op.AddPerson(eidtest.Person{Subject: subject, GivenName: "Annamarker", FamilyName: "Musterfraumarker", Birthdate: "1979-03-14",
		Street: "Markergasse 7", PostalCode: "67547", Locality: "Worms", Country: "DE"})
	op.LoginAs(subject, eidtest.ACRHigh)

	srv := eidKanald(t, work, op)

	s := &session{t: t, work: work, vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	s.run(append(append(signUpSteps(s, srv, "rat", "rat@example.org", "RAT"), signUpSteps(s, srv, "anna", "anna@example.org", "ANNA")...),
		signUpSteps(s, srv, "anna2", "anna.privat@example.org", "ANNA2")...))

	browse := func(home string, status int, want string) step { return eidBrowse(s, op, home, status, want) }
	link := eidLinkStep
	closes := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	def := fmt.Sprintf(`{"title": "Bürgerentscheid Rheinbrücke", "closes_at": %q, "results": "public",
		"audience": {"kind": "level", "level": "high"},
		"questions": [{"kind": "single", "prompt": "Soll die zweite Rheinbrücke gebaut werden?", "options": ["Ja", "Nein"]}]}`, closes.Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(work, "entscheid.json"), []byte(def), 0o600); err != nil {
		t.Fatal(err)
	}
	op2 := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run([]step{
		{home: "anna", cmd: "kanal whoami", want: []string{"level          substantial (device-bound, not identity-proofed)", "eid            not linked"}},

		// The council's binding vote: level high only.
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind council 'Rat der Stadt Worms'", env: op2, set: map[string]string{"ORG": `(?m)^(\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op2},
		{cmd: "kanal admin org member add --role organiser $ORG rat@example.org", env: op2},
		{home: "rat", cmd: "kanal survey create --org $ORG entscheid.json", want: []string{"created (anonymous)"},
			set: map[string]string{"SURVEY": `Survey (srv_\S+) created`}},
		// Without eID: refused, with the step to take.
		{home: "anna", cmd: "kanal survey vote $SURVEY --answers '[0]'", exit: 1, want: []string{"level high, an eID login (kanal eid link)"}},

		// Anna links her eID: the URL, the browser, the device's proof.
		link("anna"),
		{home: "anna", cmd: "kanal eid finish", exit: 1, want: []string{"has not come back"}},
		browse("anna", 200, "Your eID login worked"),
		{home: "anna", cmd: "kanal eid finish", want: []string{"eID linked: this session is level high", "Verified name: Annamarker Musterfraumarker",
			"Born:          1979-03-14", "Address:       Markergasse 7, 67547 Worms, DE"}},
		{home: "anna", cmd: "kanal whoami", want: []string{"level          high (eID (identity-proofed))", "eid            linked, verified name Annamarker Musterfraumarker"}},
		// The callback cannot be replayed.
		browse("anna", 400, "eid-state"),
		{home: "anna", cmd: "kanal survey vote $SURVEY --answers '[0]' --delay 200ms", want: []string{"Ballot counted as entry 1"}},

		// Her second account: the same eID is refused, with what to do.
		link("anna2"),
		browse("anna2", 409, "already linked to another kanal account"),
		{home: "anna2", cmd: "kanal eid finish", exit: 1, want: []string{"already linked to another kanal account", "kanal eid unlink"}},
		{home: "anna2", cmd: "kanal whoami", want: []string{"level          substantial", "eid            not linked"}},
		{home: "anna2", cmd: "kanal survey vote $SURVEY --answers '[1]'", exit: 1, want: []string{"high"}},

		// She moves the eID to the second account: that account is high now,
		// but the person has had her ballot.
		{home: "anna", cmd: "kanal eid unlink", want: []string{"eID unlinked"}},
		{home: "anna", cmd: "kanal whoami", want: []string{"level          substantial", "eid            not linked"}},
		link("anna2"),
		browse("anna2", 200, "Your eID login worked"),
		{home: "anna2", cmd: "kanal eid finish", want: []string{"level high"}},
		{home: "anna2", cmd: "kanal survey vote $SURVEY --answers '[1]' --delay 200ms", exit: 1, want: []string{"this person already received a token"}},
	})
	searchDatabase(t, filepath.Join(srv.DataDir, "kanal.db"), subject, "Annamarker", "Musterfraumarker", "1979-03-14", "Markergasse")
}

// eidBrowse plays the citizen's browser: it opens the provider's address
// from the CLI's output ($URL_home) and follows every redirect, the last
// one to kanald's callback, and checks kanald's answer.
func eidBrowse(s *session, op *eidtest.Provider, home string, status int, want string) step {
	return step{do: func(t *testing.T) {
		c := op.HTTPClient()
		res, err := c.Get(s.vars["URL_"+home])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != status || !strings.Contains(string(b), want) {
			t.Fatalf("the callback answered %d %s, want %d with %q", res.StatusCode, b, status, want)
		}
	}}
}

// eidLinkStep starts an eID login in home's key store and keeps the
// provider's address as $URL_home.
func eidLinkStep(home string) step {
	return step{home: home, cmd: "kanal eid link --no-wait", want: []string{"Open this address in a browser", "kanal eid finish"},
		set: map[string]string{"URL_" + home: `(?m)^  (https://\S+)$`}}
}

// eidKanald starts kanald with the test eID provider op as its eID
// provider, registering kanald there as a client.
func eidKanald(t *testing.T, work string, op *eidtest.Provider, env ...string) *kanaldtest.Server {
	t.Helper()
	// kanald's address must be known before it starts: it is the
	// redirect URI registered with the provider.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	redirect := "http://" + addr + "/v1/eid/callback"
	op.AddClient(eidtest.Client{ID: "kanal-worms", Secret: "a-client-secret-for-kanal-worms", RedirectURIs: []string{redirect}})
	secretFile := filepath.Join(work, "eid-client-secret")
	if err := os.WriteFile(secretFile, []byte("a-client-secret-for-kanal-worms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return kanaldtest.Start(t, bin.kanald, append([]string{"KANAL_ADDR=" + addr, "KANAL_EID_ISSUER=" + op.Issuer, "KANAL_EID_CLIENT_ID=kanal-worms",
		"KANAL_EID_CLIENT_SECRET_FILE=" + secretFile, "KANAL_EID_REDIRECT_URL=" + redirect, "KANAL_EID_CA_FILE=" + op.CAFile,
		"KANAL_EID_ACR_HIGH=" + eidtest.ACRHigh, "KANAL_EID_ACR_SUBSTANTIAL=" + eidtest.ACRSubstantial}, env...)...)
}

// searchDatabase reads every row of every table of a SQLite file and fails
// if a cell holds one of the markers, as text, hex or base64.
func searchDatabase(t *testing.T, path string, markers ...string) {
	t.Helper()
	d, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	rows, err := d.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
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
	if len(tables) < 20 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	var needles [][]byte
	for _, m := range markers {
		needles = append(needles, []byte(strings.ToLower(m)), []byte(hex.EncodeToString([]byte(m))),
			[]byte(strings.ToLower(base64.StdEncoding.EncodeToString([]byte(m))[:8])))
	}
	scanned := 0
	for _, tbl := range tables {
		rs, err := d.QueryContext(ctx, `SELECT * FROM "`+tbl+`"`)
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
				for _, n := range needles {
					if bytes.Contains(bytes.ToLower(v), n) {
						t.Errorf("table %s column %s holds an eID marker (%s)", tbl, cols[i], n)
					}
				}
			}
			scanned++
		}
		rs.Close()
	}
	if scanned < 50 {
		t.Fatalf("only %d rows scanned", scanned)
	}
	t.Logf("searched %d rows of %d tables", scanned, len(tables))
}
