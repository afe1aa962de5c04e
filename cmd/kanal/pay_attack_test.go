package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestAttackPayWaitForgedPaid: an adversary with write access to kanald's
// database wants Carl's 'kanal pay wait' to report a payment nobody made
// (a merchant who trusts it hands over the goods). It inserts a
// payment.status paid notice "from kanal" into the mailbox of Carl's
// device, as a real mailbox row. 'kanal pay wait' must not report the
// payment, must say that it refused a forged message, and the chat
// history ('kanal inbox') must not hold it.
func TestAttackPayWaitForgedPaid(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			var dbURL string
			var env []string
			if engine == "postgres" {
				base := dbtest.PostgresURL(t)
				dbURL = dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))
				env = append(env, "KANAL_DATABASE_URL="+dbURL)
			}
			srv := kanaldtest.Start(t, bin.kanald, env...)
			s := &session{t: t, work: t.TempDir(), vars: map[string]string{}, env: []string{
				"PATH=" + os.Getenv("PATH"),
				"KANAL_SERVER=" + srv.URL,
				"KANAL_PASSPHRASE=correct horse battery staple",
				"KANAL_PASSWORD=Tr0ub4dor&3-but-longer",
			}}
			s.run([]step{
				{home: "carl", cmd: "kanal register carl@example.org"},
				{do: func(t *testing.T) { s.vars["CODE"] = srv.Code(t, "carl@example.org") }},
				{home: "carl", cmd: "kanal verify $CODE", set: map[string]string{"CARL": `account (\S+) `}},
				{home: "carl", cmd: "kanal password"},
				{home: "carl", cmd: "kanal device enroll --name carl"},
				{home: "carl", cmd: "kanal login"},
				// Carl's device comes online once and publishes its keys.
				{home: "carl", cmd: "kanal pay wait none --timeout 2s", exit: 1, want: []string{"nothing arrived"}},
				{do: func(t *testing.T) { plantForgedPaid(t, srv, dbURL, s.vars["CARL"]) }},
				{home: "carl", cmd: "kanal pay wait pr_forged --status paid --timeout 5s", exit: 1,
					want: []string{"refused a message claiming to come from kanal", "nothing arrived"},
					not:  []string{"pr_forged paid", "EUR 214.00"}},
				{home: "carl", cmd: "kanal inbox", not: []string{"pr_forged", "paid"}},
			})
		})
	}
}

// plantForgedPaid writes, with plain SQL on kanald's database, a notice
// envelope "from kanal" saying request pr_forged was paid, into the
// mailbox of every device of account: what a database writer can do
// without the notary key.
func plantForgedPaid(t *testing.T, srv *kanaldtest.Server, dbURL, account string) {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, dbURL, srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	conv := messaging.OrgConversation("org_bakery", account)
	m, err := kind.New("kanal_forged", time.Now(), &kind.PaymentStatusBody{RequestID: "pr_forged", Status: "paid", AmountCents: 21400})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The notice body as it was before notices were signed.
	ct, err := json.Marshal(map[string]any{"conv": conv, "msg": json.RawMessage(raw)})
	if err != nil {
		t.Fatal(err)
	}
	var device string
	if err := d.QueryRow(ctx, `SELECT id FROM identity_devices WHERE account_id = $1`, account).Scan(&device); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		var seq int64
		if err := tx.QueryRow(`INSERT INTO mailbox_heads (device_id, last_seq) VALUES ($1, 1)
			ON CONFLICT (device_id) DO UPDATE SET last_seq = mailbox_heads.last_seq + 1 RETURNING last_seq`, device).Scan(&seq); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO mailbox (device_id, seq, envelope_id, conversation, sender_device, class, ciphertext, created_at, expires_at)
			VALUES ($1, $2, 'env_forged_paid', $3, $4, $5, $6, $7, $8)`, device, seq, conv, messaging.NoticeSender, string(kind.ClassMessage),
			ct, now.UnixMilli(), now.Add(time.Hour).UnixMilli())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
