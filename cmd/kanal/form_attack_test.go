package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestAttackFormRequestWrongConversation: a malicious server — it holds
// the deployment's notary key and writes kanald's database — wants Carl's
// answers to the Bürgeramt's bulky-waste form while Carl thinks he is
// answering someone else. It posts a correctly signed form.request notice
// naming the Bürgeramt's published template, for Carl's device, in Carl's
// conversation with another office (the Ordnungsamt), and in his direct
// conversation with Mia. 'kanal form fill' must refuse both requests,
// since a mini-app's request is only believed in the citizen's
// conversation with the template's publisher (docs/miniapps.md), and no
// submission may reach the Bürgeramt's agents.
func TestAttackFormRequestWrongConversation(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	work := t.TempDir()
	s := &session{t: t, work: work, vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	steps := append(signUpSteps(s, srv, "mia", "mia@example.org", "MIA"), signUpSteps(s, srv, "carl", "carl@example.org", "CARL")...)
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run(append(steps, []step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind office 'Bürgeramt Musterstadt'", env: op, set: map[string]string{"ORG": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role admin $ORG mia@example.org", env: op},
		{cmd: "kanal admin org create --kind office 'Ordnungsamt Musterstadt'", env: op, set: map[string]string{"ORG2": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG2", env: op},
		{cmd: "kanal admin org member add --role admin $ORG2 mia@example.org", env: op},
		{home: "carl", cmd: "kanal inbox"},
		{home: "mia", cmd: "kanal inbox"},
		{home: "mia", cmd: "kanal form publish builtin:sperrmuell --org $ORG", want: []string{"Published sperrmuell 1.0.0"}},
	}...))

	plantFormRequest(t, srv, s.vars["CARL"], "fr_wrongoffice", messaging.OrgConversation(s.vars["ORG2"], s.vars["CARL"]))
	plantFormRequest(t, srv, s.vars["CARL"], "fr_wrongdirect", messaging.DirectConversation(s.vars["MIA"], s.vars["CARL"]))
	if err := os.WriteFile(filepath.Join(work, "answers.json"), []byte(`{"family_name":"Korn","given_name":"Carl","street":"Hauptstraße 1",
"postcode":"12345","city":"Musterstadt","phone":"+49 30 123456","items":[{"item":"Ofen","count":1}],"volume_m3":1.5,"appliances":false,"kerbside":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := "arrived in a conversation that is not yours with $ORG, the form's publisher: refused"
	s.run([]step{
		// The notices are genuine as notices: signed, for Carl's device,
		// in the conversation they arrived in. Only where they arrived is
		// wrong.
		{home: "carl", cmd: "kanal inbox --wait 3s", want: []string{"form request fr_wrongoffice", "form request fr_wrongdirect"}},
		{home: "carl", cmd: "kanal form fill fr_wrongoffice --answers answers.json", exit: 1,
			want: []string{"fr_wrongoffice " + refused}, not: []string{"submitted", "Gesendet"}},
		{home: "carl", cmd: "kanal form fill fr_wrongdirect --answers answers.json", exit: 1,
			want: []string{"fr_wrongdirect " + refused}, not: []string{"submitted", "Gesendet"}},
		{home: "mia", cmd: "kanal inbox --wait 3s", not: []string{"submitted: case", "Korn"}},
	})
}

// plantFormRequest puts into the mailbox of each of account's devices a
// form.request notice for the newest sperrmuell template, in conversation,
// signed by the deployment's notary (read from kanald's CA directory) as
// kanald signs its own: what a server with its notary key and database
// can make.
func plantFormRequest(t *testing.T, srv *kanaldtest.Server, account, requestID, conversation string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	caDir := filepath.Join(srv.DataDir, "ca")
	authority, created, err := ca.LoadOrCreateDir(caDir, "unused", now)
	if err != nil || created {
		t.Fatalf("kanald's CA in %s: created %v, %v", caDir, created, err)
	}
	notary, err := authority.Notary(caDir, now)
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.Open(ctx, "", srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var version, hash string
	if err := d.QueryRow(ctx, `SELECT version, hash FROM forms_templates WHERE id = 'sperrmuell' ORDER BY major DESC, minor DESC, patch DESC`).Scan(&version, &hash); err != nil {
		t.Fatal(err)
	}
	m, err := kind.New("kanal-app-forged-"+requestID, now, &kind.FormRequestBody{RequestID: requestID, TemplateID: "sperrmuell",
		Version: version, TemplateHash: hash, Title: "Sperrmüll abholen"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.Query(ctx, `SELECT id FROM identity_devices WHERE account_id = $1`, account)
	if err != nil {
		t.Fatal(err)
	}
	var devices []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		devices = append(devices, id)
	}
	if err := rows.Close(); err != nil || len(devices) == 0 {
		t.Fatalf("devices of %s: %v %v", account, devices, err)
	}
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		for i, device := range devices {
			st := messaging.NoticeStatement{ID: "ntc_forged_" + requestID, Time: now.UTC().Truncate(time.Millisecond), Kind: kind.FormRequest,
				Recipient: device, Conversation: conversation, Message: raw}
			signed := st.Marshal()
			body, err := json.Marshal(messaging.NoticeBody{Statement: signed,
				Signature: notary.Sign(messaging.NoticePurpose(kind.FormRequest), signed), Notary: notary.Certificate().Raw})
			if err != nil {
				return err
			}
			var seq int64
			if err := tx.QueryRow(`INSERT INTO mailbox_heads (device_id, last_seq) VALUES ($1, 1)
				ON CONFLICT (device_id) DO UPDATE SET last_seq = mailbox_heads.last_seq + 1 RETURNING last_seq`, device).Scan(&seq); err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT INTO mailbox (device_id, seq, envelope_id, conversation, sender_device, class, ciphertext, created_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, device, seq, "env_forged_"+requestID+"_"+string(rune('a'+i)), conversation,
				messaging.NoticeSender, string(m.Class()), body, now.UnixMilli(), now.Add(time.Hour).UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
