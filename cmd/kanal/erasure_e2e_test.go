package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestAccountDataExportAndErasure is docs/privacy.md's promise, on SQLite
// and on PostgreSQL: a citizen who used every domain through the real
// binaries — a group, an organisation, a push subscription, a payment
// request, a survey token, a mini-app consent — exports their data, and each file of the
// archive holds what README.txt says, checked against what the session
// made; then they erase the account, and a search for its id and e-mail
// over every column of every table finds nothing: the transparency log's
// entries about the account name it by a commitment whose salt the
// erasure deleted, and what the law keeps names the pseudonym.
func TestAccountDataExportAndErasure(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		srv := kanaldtest.Start(t, bin.kanald)
		accountDataSession(t, srv, func(ctx context.Context) (*db.DB, error) {
			return db.OpenSQLite(ctx, filepath.Join(srv.DataDir, "kanal.db"))
		})
	})
	t.Run("postgres", func(t *testing.T) {
		base := dbtest.PostgresURL(t)
		url := dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))
		srv := kanaldtest.Start(t, bin.kanald, "KANAL_DATABASE_URL="+url)
		accountDataSession(t, srv, func(ctx context.Context) (*db.DB, error) { return db.OpenPostgres(ctx, url) })
	})
}

// keptInClear lists the tables where an erased account's id or e-mail
// may remain in clear in this session, as docs/privacy.md says: none (the
// account signed no document in an organisation's name and voted in no
// named survey, the cases docs/privacy.md keeps in clear).
var keptInClear = []string{}

func accountDataSession(t *testing.T, srv *kanaldtest.Server, open func(context.Context) (*db.DB, error)) {
	s := newSession(t, srv)
	s.vars["DUE"] = time.Now().AddDate(0, 0, 14).Format(time.DateOnly)
	closes := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	survey := fmt.Sprintf(`{"title": "Parkbank", "closes_at": %q, "audience": {"kind": "level", "level": "low"}, "results": "public",
		"questions": [{"kind": "single", "prompt": "Neue Bank?", "options": ["Ja", "Nein"]}]}`, closes.Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(s.work, "survey.json"), []byte(survey), 0o600); err != nil {
		t.Fatal(err)
	}
	const email = "alice.erased@example.org"
	var steps []step
	for _, u := range []struct{ home, email, v string }{{"alice", email, "ALICE"}, {"bob", "bob@example.org", "BOB"}, {"mia", "mia@example.org", "MIA"}} {
		steps = append(steps, signUpSteps(s, srv, u.home, u.email, u.v)...)
	}
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	steps = append(steps, []step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind merchant 'Bäckerei Korn'", env: op, set: map[string]string{"SHOP": `(?m)^(\S+)$`}},
		{cmd: "kanal admin org verify $SHOP", env: op},
		{cmd: "kanal admin org member add --role seller $SHOP mia@example.org", env: op},
		{cmd: "kanal admin org create --kind council 'Rat der Stadt'", env: op, set: map[string]string{"RAT": `(?m)^(\S+)$`}},
		{cmd: "kanal admin org verify $RAT", env: op},
		{cmd: "kanal admin org member add --role organiser $RAT mia@example.org", env: op},
		{cmd: "kanal admin org member add --role agent $RAT " + email, env: op},
		// Alice's group with Bob, and her push subscription.
		{cmd: "kanal group create $BOB", set: map[string]string{"G": `(?m)^(g_[0-9a-f]{32})$`}},
		{home: "bob", cmd: "kanal group accept $G", want: []string{"You are now a member"}},
		{cmd: "kanal push subscribe https://push.example.org/alice", want: []string{"Subscribed"}},
		// A payment request to her, and a survey she takes part in.
		{home: "mia", cmd: "kanal pay request --org $SHOP --to $ALICE --amount 12.50 --creditor 'Bäckerei Korn' --iban 'DE02 1203 0000 0000 2020 51' --purpose 'Torte' --due $DUE",
			want: []string{"EUR 12.50"}, set: map[string]string{"REQ": `(?m)^(pr_\S+)$`}},
		{home: "mia", cmd: "kanal survey create --org $RAT survey.json", set: map[string]string{"SURVEY": `Survey (srv_\S+) created`}},
		{home: "mia", cmd: "kanal survey invite $SURVEY $ALICE", want: []string{"Invited $ALICE"}},
		{cmd: "kanal survey vote $SURVEY --answers '[0]' --delay 200ms", want: []string{"Ballot counted"}},
		{cmd: "kanal whoami", set: map[string]string{"DEV": `(?m)^device\s+(\S+)`}},
	}...)
	s.run(steps)
	// A mini-app of the bakery, which she consents to.
	s.vars["APP"] = newAppServer(t).manifest(t, s.work, "bakery", s.vars["SHOP"])
	s.run([]step{
		{home: "mia", cmd: "kanal org app register $APP", want: []string{"the operator must approve it"}},
		{cmd: "kanal admin apps approve bakery", env: op, want: []string{"Approved bakery"}},
		{cmd: "kanal app consent bakery --all", want: []string{"Granted:"}},
		{cmd: "kanal account export alice.zip", want: []string{"Wrote alice.zip"}},
	})

	// Each file holds what README.txt says it holds, checked against what
	// the session made.
	files := readZip(t, filepath.Join(s.work, "alice.zip"))
	readme := files["README.txt"]
	for name := range files {
		if name != "README.txt" && !strings.Contains(readme, "\n"+name+"\n") {
			t.Errorf("README.txt does not explain %s", name)
		}
	}
	alice, dev := s.vars["ALICE"], s.vars["DEV"]
	holds := func(file string, v any, what string, ok func() bool) {
		t.Helper()
		raw, found := files[file]
		if !found {
			t.Errorf("the archive has no %s", file)
			return
		}
		unmarshal(t, raw, v)
		if !ok() {
			t.Errorf("%s lacks %s:\n%s", file, what, raw)
		}
		if !strings.Contains(readme, file) {
			t.Errorf("README.txt does not name %s", file)
		}
	}
	var account struct {
		AccountID string `json:"account_id"`
		Email     string `json:"email"`
	}
	holds("account.json", &account, "the account and its e-mail", func() bool { return account.AccountID == alice && account.Email == email })
	var devices []struct {
		DeviceID string `json:"device_id"`
		Sessions []struct {
			Kind string `json:"kind"`
		} `json:"sessions"`
		Certificate string `json:"certificate"`
	}
	holds("devices.json", &devices, "the device, its certificate and its sessions", func() bool {
		return len(devices) == 1 && devices[0].DeviceID == dev && strings.Contains(devices[0].Certificate, "BEGIN CERTIFICATE") && len(devices[0].Sessions) > 0
	})
	var members []struct {
		OrgID string `json:"org_id"`
		Role  string `json:"role"`
	}
	holds("memberships.json", &members, "the council membership", func() bool {
		return len(members) == 1 && members[0].OrgID == s.vars["RAT"] && members[0].Role == "agent"
	})
	type auditEntry struct {
		Action    string `json:"action"`
		AccountID string `json:"account_id"`
	}
	var audit []auditEntry
	holds("audit.json", &audit, "the member.add entry", func() bool {
		return slices.ContainsFunc(audit, func(a auditEntry) bool { return a.Action == "member.add" && a.AccountID == alice })
	})
	var logEntries []struct {
		DeviceID string `json:"device_id"`
	}
	holds("transparency-log.json", &logEntries, "the device's entry", func() bool {
		return slices.ContainsFunc(logEntries, func(e struct {
			DeviceID string `json:"device_id"`
		}) bool {
			return e.DeviceID == dev
		})
	})
	var msg struct {
		Groups []struct {
			GroupID string `json:"group_id"`
			Members int    `json:"members"`
		} `json:"groups"`
		Devices []struct {
			DeviceID    string `json:"device_id"`
			IdentityKey []byte `json:"identity_key"`
		} `json:"devices"`
	}
	holds("messaging.json", &msg, "the group and the device's published key", func() bool {
		return len(msg.Groups) == 1 && msg.Groups[0].GroupID == s.vars["G"] && msg.Groups[0].Members == 2 &&
			len(msg.Devices) == 1 && msg.Devices[0].DeviceID == dev && len(msg.Devices[0].IdentityKey) > 0
	})
	var push []struct {
		DeviceID string `json:"device_id"`
		Endpoint string `json:"endpoint"`
	}
	holds("push.json", &push, "the subscription", func() bool {
		return len(push) == 1 && push[0].Endpoint == "https://push.example.org/alice"
	})
	var pay struct {
		Requests []map[string]any `json:"payment_requests"`
		Audit    []map[string]any `json:"audit"`
	}
	holds("payments.json", &pay, "the payment request", func() bool {
		return len(pay.Requests) == 1 && pay.Requests[0]["id"] == s.vars["REQ"] && pay.Requests[0]["amount_cents"] == float64(1250) &&
			pay.Requests[0]["payer_account"] == alice && len(pay.Audit) > 0
	})
	var surveys struct {
		Tokens []struct {
			SurveyID string `json:"survey_id"`
			Issued   bool   `json:"token_issued"`
		} `json:"eligibility_tokens"`
	}
	holds("surveys.json", &surveys, "the survey token", func() bool {
		return len(surveys.Tokens) == 1 && surveys.Tokens[0].SurveyID == s.vars["SURVEY"] && surveys.Tokens[0].Issued
	})
	var apps struct {
		Consents []map[string]any `json:"consents"`
	}
	holds("miniapps.json", &apps, "the consent to the bakery's app", func() bool {
		return len(apps.Consents) > 0 && apps.Consents[0]["app_id"] == "bakery" && apps.Consents[0]["decision"] == "granted"
	})
	var vault struct {
		Documents []any `json:"documents"`
	}
	holds("vault.json", &vault, "an empty document list", func() bool { return vault.Documents != nil && len(vault.Documents) == 0 })

	ctx := context.Background()
	d, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Before the erasure the search finds the account where it lives,
	// its log salt included; the log's entries name its commitment.
	before := searchAll(t, d, alice, email)
	for _, table := range []string{"identity_accounts", "translog_account_salts", "payments_requests"} {
		if before[table] == 0 {
			t.Errorf("before the erasure the search finds nothing in %s: does it search at all? (found %v)", table, before)
		}
	}
	if before["translog_entries"] != 0 {
		t.Errorf("%d entries of the transparency log name the account in clear", before["translog_entries"])
	}
	logged := searchAll(t, d, dev)["translog_entries"]
	if logged == 0 {
		t.Errorf("no entry of the transparency log is about the device %s", dev)
	}

	s.run([]step{
		{cmd: "kanal account delete --confirm $ALICE", want: []string{"Account $ALICE is erased"}, set: map[string]string{"PSEUDONYM": `pseudonym (erased_\S+)`}},
		{cmd: "kanal login", exit: 1, want: []string{"revoked"}},
		// Bob's devices fetch the notice that Alice left: his inbox is
		// his, and once fetched it is gone from the server.
		{home: "bob", cmd: "kanal inbox", want: []string{"left"}},
		{home: "bob", cmd: "kanal group show $G", not: []string{"$ALICE"}},
		// Mia, the council's remaining agent, is told that its member's
		// account was erased; fetched, the notice is gone from the server.
		{home: "mia", cmd: "kanal inbox", want: []string{"organisation $RAT: the account of member $ALICE was erased"}},
	})

	found := searchAll(t, d, alice, email)
	for table, n := range found {
		if !slices.Contains(keptInClear, table) {
			t.Errorf("after the erasure, %d rows of %s still name the account or its e-mail", n, table)
		}
	}
	// The log kept every entry (more: the revocations), naming no one.
	if after := searchAll(t, d, dev)["translog_entries"]; after <= logged {
		t.Errorf("the log holds %d entries about the device after the erasure, %d before", after, logged)
	}
	pseudo := searchAll(t, d, s.vars["PSEUDONYM"])
	for _, table := range []string{"payments_requests", "payments_audit", "identity_audit", "survey_tokens", "miniapps_consents"} {
		if pseudo[table] == 0 {
			t.Errorf("no row of %s names the pseudonym: the records kept by law were not kept (found %v)", table, pseudo)
		}
	}
	priv, err := os.ReadFile("../../docs/privacy.md")
	if err != nil {
		t.Fatal(err)
	}
	for table := range pseudo {
		if !strings.Contains(string(priv), table) {
			t.Errorf("%s keeps rows under the pseudonym, but docs/privacy.md does not list it", table)
		}
	}
}

// searchAll returns, for every table of the database, how many of its rows
// hold any of needles in any column (text or bytes).
func searchAll(t *testing.T, d *db.DB, needles ...string) map[string]int {
	t.Helper()
	ctx := context.Background()
	q := `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	if d.Dialect() == db.SQLite {
		q = `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	}
	rows, err := d.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 40 {
		t.Fatalf("found only %d tables: %v", len(tables), tables)
	}
	found := map[string]int{}
	for _, table := range tables {
		rs, err := d.Query(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		for rs.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			hit := false
			for _, v := range vals {
				var b []byte
				switch v := v.(type) {
				case []byte:
					b = v
				case string:
					b = []byte(v)
				default:
					b = []byte(fmt.Sprint(v))
				}
				for _, n := range needles {
					if bytes.Contains(b, []byte(n)) {
						hit = true
					}
				}
			}
			if hit {
				found[table]++
			}
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		rs.Close()
	}
	return found
}
