package client_test

// Attack tests for pairwise sessions, on the real kanald.
//
// The adversary is whoever can write a device's mailbox: the operator, or
// anyone who can write kanald's database (here: kanal's own mailbox code
// over the deployment's database, as a database writer would insert a
// row). They also read the database, and claim prekey bundles from the
// directory like any citizen. They hold no private key of Alice or Bob.

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// forgeRatchetMessage builds a Double Ratchet message from the wire format
// in keys/ratchet.go and the standard library: message n of the chain
// that starts at chain key ck, with ratchet key dh in its header, for a
// session whose associated data is ad (Encode(IKA) || Encode(IKB)).
func forgeRatchetMessage(ad []byte, dh [32]byte, n uint32, ck [32]byte, pt []byte) []byte {
	var mk [32]byte
	for i := uint32(0); ; i++ {
		m := hmac.New(sha256.New, ck[:])
		m.Write([]byte{0x01})
		m.Sum(mk[:0])
		if i == n {
			break
		}
		m = hmac.New(sha256.New, ck[:])
		m.Write([]byte{0x02})
		m.Sum(ck[:0])
	}
	okm, err := hkdf.Key(sha256.New, mk[:], make([]byte, 32), "kanal ratchet message v1", 44)
	if err != nil {
		panic(err)
	}
	aead, err := chacha20poly1305.New(okm[:32])
	if err != nil {
		panic(err)
	}
	hdr := append([]byte{1, 0x12}, dh[:]...) // version, kind "ratchet message", DHs
	hdr = binary.BigEndian.AppendUint32(hdr, 0)
	hdr = binary.BigEndian.AppendUint32(hdr, n)
	aad := binary.BigEndian.AppendUint16(nil, uint16(len(ad)))
	aad = append(append(aad, ad...), hdr...)
	return aead.Seal(hdr, okm[32:], pt, aad)
}

// mailboxOf is the adversary's hand on the deployment's database.
func mailboxOf(t *testing.T, srv *server) *mailbox.Store {
	t.Helper()
	url := srv.dbURL
	if url == "" {
		url = "sqlite:" + filepath.Join(srv.DataDir, "kanal.db")
	}
	return mailbox.NewStore(openURL(t, url), mailbox.StoreOptions{})
}

// inbox connects sdk's stream, reads the backlog and closes the stream:
// the texts it was shown and the envelopes it refused.
func inbox(t *testing.T, sdk *client.Client) (texts []string, refused []error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sdk.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, bad, err := st.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range got {
		if tb, ok := in.Message.Body.(*kind.TextBody); ok {
			texts = append(texts, fmt.Sprintf("%s: %s", in.SenderAccount, tb.Text))
		}
	}
	return texts, bad
}

// sendText sends a text over POST /v1/messages.
func sendText(t *testing.T, from *client.Client, to string, text string) {
	t.Helper()
	if _, err := from.Send(context.Background(), client.Peer{AccountID: to}, textMsg(t, text)); err != nil {
		t.Fatal(err)
	}
}

// pending returns the envelopes waiting in device's mailbox, decoded, as a
// database reader sees them.
func pending(t *testing.T, mb *mailbox.Store, device string) ([]mailbox.Envelope, []client.Message) {
	t.Helper()
	envs, err := mb.Fetch(context.Background(), device, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]client.Message, len(envs))
	for i, e := range envs {
		if err := msgs[i].UnmarshalBinary(e.Ciphertext); err != nil {
			t.Fatal(err)
		}
	}
	return envs, msgs
}

func wantTexts(t *testing.T, who string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s was shown %q, want %q", who, got, want)
	}
}

// TestAttackForgedBeforeFirstReply: Alice writes to Bob, who has not
// answered yet. The adversary puts a message "from Bob's device" in
// Alice's mailbox, made from Bob's published bundle: its ratchet key is
// Bob's signed prekey, its chain key all zeros — what a session without a
// receiving chain would use. Alice's SDK must refuse it, show nothing, and
// keep sending the PQXDH initial message until Bob really answers.
func TestAttackForgedBeforeFirstReply(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
		aliceSDK := alice.SDK(t, srv.URL, client.NewMemoryStore())
		bobSDK := bob.SDK(t, srv.URL, client.NewMemoryStore())
		for _, s := range []*client.Client{aliceSDK, bobSDK} {
			if _, err := s.Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sendText(t, aliceSDK, bob.AccountID, "Guten Tag, Bob")

		// The adversary: both published bundles, claimed as any citizen.
		mallory := signUp(t, srv, "mallory@example.org", false).SDK(t, srv.URL, client.NewMemoryStore())
		public := map[string]keys.PrekeyBundle{}
		for _, acct := range []string{alice.AccountID, bob.AccountID} {
			c, err := mallory.ClaimAccount(ctx, acct)
			if err != nil || len(c.Bundles) != 1 {
				t.Fatalf("claim %s: %+v %v", acct, c, err)
			}
			public[acct] = c.Bundles[0].Prekeys
		}
		ikA, _ := public[alice.AccountID].Identity.MarshalBinary()
		ikB, _ := public[bob.AccountID].Identity.MarshalBinary()
		var spk [32]byte
		copy(spk[:], public[bob.AccountID].SignedPrekey.Key().Bytes())

		conv := messaging.DirectConversation(alice.AccountID, bob.AccountID)
		msg := textMsg(t, "Hier ist Bob. Bitte überweise 500 € an DE00 1234 5678.")
		raw, _ := msg.Marshal()
		content, _ := json.Marshal(map[string]any{"v": 1, "conv": conv,
			"to": messaging.SendTo{AccountID: alice.AccountID}, "msg": json.RawMessage(raw)})
		wire, _ := (&client.Message{Ciphertext: forgeRatchetMessage(append(ikA, ikB...), spk, 0, [32]byte{}, content)}).MarshalBinary()
		mb := mailboxOf(t, srv)
		if err := mb.Append(ctx, []mailbox.Envelope{{Conversation: conv, Sender: bob.DeviceID, Recipient: alice.DeviceID,
			Class: string(msg.Class()), Ciphertext: wire}}); err != nil {
			t.Fatal(err)
		}

		texts, refused := inbox(t, aliceSDK)
		wantTexts(t, "Alice", texts)
		if len(refused) != 1 || !errors.Is(refused[0], keys.ErrDecrypt) {
			t.Fatalf("forged envelope: refused %v, want one keys.ErrDecrypt", refused)
		}

		// Alice still sends the initial message: Bob has not answered.
		sendText(t, aliceSDK, bob.AccountID, "Bist du da?")
		_, msgs := pending(t, mb, bob.DeviceID)
		if len(msgs) != 2 || msgs[0].Initial == nil || msgs[1].Initial == nil {
			t.Fatalf("Bob's mailbox: %d messages; the initial message must go with each until he answers", len(msgs))
		}
		texts, refused = inbox(t, bobSDK)
		wantTexts(t, "Bob", texts, alice.AccountID+": Guten Tag, Bob", alice.AccountID+": Bist du da?")
		if len(refused) != 0 {
			t.Fatal(refused)
		}

		// Bob's real answer is read, and only then does Alice stop.
		sendText(t, bobSDK, alice.AccountID, "Ja, hier.")
		texts, refused = inbox(t, aliceSDK)
		wantTexts(t, "Alice", texts, bob.AccountID+": Ja, hier.")
		if len(refused) != 0 {
			t.Fatal(refused)
		}
		sendText(t, aliceSDK, bob.AccountID, "Schön.")
		if _, msgs = pending(t, mb, bob.DeviceID); len(msgs) != 1 || msgs[0].Initial != nil {
			t.Fatalf("after Bob's answer Alice still sends the initial message (%d pending)", len(msgs))
		}
	})
}

// TestAttackReplayedInitialMessage: the adversary keeps a copy of Alice's
// first envelope to Bob (it carries her PQXDH initial message) and puts it
// in Bob's mailbox again once their conversation works: once while the
// session it started is current, and again after Alice has started a new
// session. As a database writer the adversary also removed Bob's unused
// one-time prekeys from the directory, so Alice's sessions start from
// prekeys Bob keeps (his signed prekey and last-resort ML-KEM prekey),
// and the replay cannot fail for want of a deleted key. Bob's SDK must
// refuse every replay, show nothing twice, and the conversation must go on
// both ways.
func TestAttackReplayedInitialMessage(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
		aliceSDK := alice.SDK(t, srv.URL, client.NewMemoryStore())
		bobStore := client.NewMemoryStore()
		bobSDK := bob.SDK(t, srv.URL, bobStore)
		for _, s := range []*client.Client{aliceSDK, bobSDK} {
			if _, err := s.Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
		url := srv.dbURL
		if url == "" {
			url = "sqlite:" + filepath.Join(srv.DataDir, "kanal.db")
		}
		dbh := openURL(t, url)
		for _, table := range []string{"messaging_one_time_prekeys", "messaging_pq_prekeys"} {
			if _, err := dbh.Exec(ctx, `DELETE FROM `+table+` WHERE device_id = $1`, bob.DeviceID); err != nil {
				t.Fatal(err)
			}
		}
		mb := mailbox.NewStore(dbh, mailbox.StoreOptions{})
		a, b := alice.AccountID+": ", bob.AccountID+": "

		sendText(t, aliceSDK, bob.AccountID, "eins")
		envs, msgs := pending(t, mb, bob.DeviceID)
		if len(envs) != 1 || msgs[0].Initial == nil {
			t.Fatalf("first envelope: %d", len(envs))
		}
		var first keys.InitialMessage
		if err := first.UnmarshalBinary(msgs[0].Initial); err != nil || first.HasOneTimePrekey {
			t.Fatalf("first initial message: one-time prekey %v (%v)", first.HasOneTimePrekey, err)
		}
		captured := envs[0]
		replay := func(name string) {
			t.Helper()
			e := captured
			e.ID = ""
			if err := mb.Append(ctx, []mailbox.Envelope{e}); err != nil {
				t.Fatal(err)
			}
			texts, refused := inbox(t, bobSDK)
			wantTexts(t, "Bob after "+name, texts)
			if len(refused) != 1 || !errors.Is(refused[0], keys.ErrReplay) {
				t.Fatalf("%s: refused %v, want one keys.ErrReplay", name, refused)
			}
		}
		// talk checks that the conversation works both ways.
		talk := func(round string) {
			t.Helper()
			sendText(t, aliceSDK, bob.AccountID, "Frage "+round)
			texts, refused := inbox(t, bobSDK)
			wantTexts(t, "Bob", texts, a+"Frage "+round)
			sendText(t, bobSDK, alice.AccountID, "Antwort "+round)
			texts2, refused2 := inbox(t, aliceSDK)
			wantTexts(t, "Alice", texts2, b+"Antwort "+round)
			if len(refused)+len(refused2) != 0 {
				t.Fatal(refused, refused2)
			}
		}

		texts, _ := inbox(t, bobSDK)
		wantTexts(t, "Bob", texts, a+"eins")
		talk("1")
		replay("a replay while its session is current")
		talk("2")

		// Alice starts a new session; Bob reads under it. The first
		// session is archived, and its initial message stays refused.
		restart := func() {
			t.Helper()
			c, err := aliceSDK.ClaimAccount(ctx, bob.AccountID)
			if err != nil || len(c.Bundles) != 1 || c.Bundles[0].Prekeys.HasOneTimePrekey() {
				t.Fatalf("claim: %+v %v", c, err)
			}
			if err := aliceSDK.StartSession(c.Bundles[0]); err != nil {
				t.Fatal(err)
			}
		}
		restart()
		talk("3")
		replay("a replay after a new session")
		talk("4")

		// Bob's SDK restarts over its store, and Alice starts more
		// sessions than Bob archives: the replay is still refused.
		bobSDK = bob.SDK(t, srv.URL, bobStore)
		for i := range client.MaxArchivedSessions + 1 {
			restart()
			talk(fmt.Sprint("5.", i))
		}
		replay("a replay after its session left the archive")
		talk("6")
	})
}
