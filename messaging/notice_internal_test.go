package messaging

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata")

// noticeVectors is testdata/notices.json, which docs/api-messaging.md and
// docs/payments.md cite: a deployment CA, the notary's (test) key, and
// notices as the server seals them.
type noticeVectors struct {
	Comment       string         `json:"comment"`
	CA            string         `json:"ca_pem"`
	NotarySeedHex string         `json:"notary_seed_hex"`
	Notices       []noticeVector `json:"notices"`
}

type noticeVector struct {
	Purpose   string           `json:"purpose"`
	Statement string           `json:"statement"`  // the statement's text form
	SignedHex string           `json:"signed_hex"` // the bytes Ed25519 signs
	Signature []byte           `json:"signature"`
	Envelope  mailbox.Envelope `json:"envelope"` // as the recipient device receives it
}

var vectorTime = time.Date(2026, 11, 23, 10, 0, 0, 123e6, time.UTC)

// makeNoticeVectors seals two notices, a group change and a payment
// status, through sealNotices with a notary whose key comes from a fixed
// seed.
func makeNoticeVectors(t *testing.T) *noticeVectors {
	dir := t.TempDir()
	authority, _, err := ca.LoadOrCreateDir(dir, "Musterstadt", vectorTime.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte("kanal notice test vector; never a real key"))
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ca.NotaryKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	notary, err := authority.Notary(dir, vectorTime)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{notary: notary, now: func() time.Time { return vectorTime }}
	v := &noticeVectors{
		Comment:       "Notices as kanal seals them (docs/api-messaging.md, Notices). The notary key is a test key from a fixed seed. Regenerate with go test ./messaging -run TestNoticeVectors -update.",
		CA:            string(authority.CertPEM()),
		NotarySeedHex: hex.EncodeToString(seed[:]),
	}
	for _, c := range []struct {
		conv, device string
		body         kind.Body
	}{
		{"g_0123456789abcdef0123456789abcdef", "dev_bob1", &kind.GroupChangeBody{GroupID: "g_0123456789abcdef0123456789abcdef", Op: "added", AccountID: "acc_bob", By: "acc_alice", Role: GroupMember}},
		{OrgConversation("org_bakery", "acc_carl"), "dev_carl1", &kind.PaymentStatusBody{RequestID: "pr_42", Status: "paid", AmountCents: 21400}},
	} {
		m, err := kind.New("kanal_vector", vectorTime, c.body)
		if err != nil {
			t.Fatal(err)
		}
		envs, err := s.sealNotices(c.conv, m, []string{c.device})
		if err != nil {
			t.Fatal(err)
		}
		env := envs[0]
		env.ID, env.Seq, env.ServerTime = "env_vector", 1, vectorTime
		var body NoticeBody
		if err := json.Unmarshal(env.Ciphertext, &body); err != nil {
			t.Fatal(err)
		}
		purpose := NoticePurpose(m.Kind)
		signed := append([]byte("kanal notary v1\x00"+purpose+"\x00"), body.Statement...)
		v.Notices = append(v.Notices, noticeVector{Purpose: purpose, Statement: string(body.Statement),
			SignedHex: hex.EncodeToString(signed), Signature: body.Signature, Envelope: env})
	}
	return v
}

// TestNoticeVectors checks testdata/notices.json: each envelope's statement
// parses to what the vector says, is in its one canonical form, verifies
// under the vector's CA at its time, and its signature is Ed25519 of
// signed_hex under the test key.
func TestNoticeVectors(t *testing.T) {
	path := filepath.Join("testdata", "notices.json")
	if *update {
		b, err := json.MarshalIndent(makeNoticeVectors(t), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v noticeVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(v.CA)) {
		t.Fatal("no CA in the vectors")
	}
	seed, err := hex.DecodeString(v.NotarySeedHex)
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("notary seed: %v", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	if len(v.Notices) != 2 {
		t.Fatalf("%d notices, want 2", len(v.Notices))
	}
	for _, n := range v.Notices {
		var body NoticeBody
		if err := json.Unmarshal(n.Envelope.Ciphertext, &body); err != nil {
			t.Fatal(err)
		}
		if string(body.Statement) != n.Statement {
			t.Fatalf("envelope carries statement %q, vector says %q", body.Statement, n.Statement)
		}
		st, err := ParseNoticeStatement(body.Statement)
		if err != nil {
			t.Fatal(err)
		}
		if st.Recipient != n.Envelope.Recipient || st.Conversation != n.Envelope.Conversation || NoticePurpose(st.Kind) != n.Purpose || !st.Time.Equal(vectorTime) {
			t.Fatalf("statement %+v does not match envelope %+v", st, n.Envelope)
		}
		m, err := kind.Unmarshal(st.Message)
		if err != nil || m.Kind != st.Kind {
			t.Fatalf("message: %v (%v)", err, m)
		}
		signed, err := hex.DecodeString(n.SignedHex)
		if err != nil {
			t.Fatal(err)
		}
		if want := append([]byte("kanal notary v1\x00"+n.Purpose+"\x00"), body.Statement...); !bytes.Equal(signed, want) {
			t.Fatalf("signed_hex is not magic ‖ 0 ‖ purpose ‖ 0 ‖ statement")
		}
		if !bytes.Equal(ed25519.Sign(key, signed), n.Signature) || !bytes.Equal(body.Signature, n.Signature) {
			t.Fatal("signature is not Ed25519 of signed_hex under the test key")
		}
		if err := ca.VerifyNotarized(body.Notary, roots, st.Time, n.Purpose, body.Statement, body.Signature); err != nil {
			t.Fatalf("notary signature: %v", err)
		}
	}
}

// TestNoticeStatementTamper: every change of a statement's bytes either
// fails to parse or changes what it says, and no parse accepts a second
// spelling of the same statement.
func TestNoticeStatementTamper(t *testing.T) {
	st := &NoticeStatement{ID: "ntc_1", Time: vectorTime, Kind: kind.PaymentStatus, Recipient: "dev_1", Conversation: "o_1",
		Message: []byte(`{"v":1}`)}
	b := st.Marshal()
	got, err := ParseNoticeStatement(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), b) {
		t.Fatal("round trip changed the statement")
	}
	for _, bad := range []string{
		"",
		"kanal notice v2\nid ntc_1\ntime 2026-11-23T10:00:00.123Z\nkind payment.status\nrecipient dev_1\nconversation o_1\n\n{}",
		"kanal notice v1\nid ntc_1\ntime 2026-11-23T10:00:00.123Z\nkind payment.status\nrecipient dev_1\n\n{}",
		"kanal notice v1\nid ntc_1\ntime 2026-11-23T10:00:00.12Z\nkind payment.status\nrecipient dev_1\nconversation o_1\n\n{}",
		"kanal notice v1\nid ntc_1\ntime 2026-11-23T11:00:00.123+01:00\nkind payment.status\nrecipient dev_1\nconversation o_1\n\n{}",
		"kanal notice v1\nid  ntc_1\ntime 2026-11-23T10:00:00.123Z\nkind payment.status\nrecipient dev_1\nconversation o_1\n\n{}",
		"kanal notice v1\nrecipient dev_1\nid ntc_1\ntime 2026-11-23T10:00:00.123Z\nkind payment.status\nconversation o_1\n\n{}",
		"kanal notice v1\r\nid ntc_1\ntime 2026-11-23T10:00:00.123Z\nkind payment.status\nrecipient dev_1\nconversation o_1\n\n{}",
		"kanal notice v1\nid ntc_1\ntime 2026-11-23T10:00:00.123Z\nkind payment.status\nrecipient dev_1 dev_2\nconversation o_1\n\n{}",
	} {
		if _, err := ParseNoticeStatement([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// FuzzDecodeNoticeStatement: whatever parses is exactly what Marshal
// writes for the parsed statement.
func FuzzDecodeNoticeStatement(f *testing.F) {
	st := &NoticeStatement{ID: "ntc_1", Time: vectorTime, Kind: kind.GroupChange, Recipient: "dev_1", Conversation: "g_1", Message: []byte(`{"v":1}`)}
	f.Add(st.Marshal())
	f.Add([]byte("kanal notice v1\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseNoticeStatement(b)
		if err != nil {
			return
		}
		if !bytes.Equal(got.Marshal(), b) {
			t.Fatalf("%q parses but marshals as %q", b, got.Marshal())
		}
	})
}
