package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// notarize signs v as the deployment notary of srv would at the end of an
// eID login: with the notary key from kanald's CA directory. (Tests of
// identity show the server doing so; here the names must be chosen.)
func notarize(t *testing.T, srv *server, v identity.VerifiedName) *identity.VerifiedNameAttestation {
	t.Helper()
	dir := filepath.Join(srv.DataDir, "ca")
	kb, err := os.ReadFile(filepath.Join(dir, ca.NotaryKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := pem.Decode(kb)
	k, err := x509.ParsePKCS8PrivateKey(kp.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := os.ReadFile(filepath.Join(dir, ca.NotaryCertFile))
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := pem.Decode(cb)
	st := v.Marshal()
	msg := append(append(append([]byte("kanal notary v1\x00"), identity.VerifiedNamePurpose...), 0), st...)
	return &identity.VerifiedNameAttestation{Statement: st, Signature: ed25519.Sign(k.(ed25519.PrivateKey), msg), Notary: cp.Bytes}
}

func nameFor(account, given, family string, issued time.Time) identity.VerifiedName {
	issued = issued.UTC().Truncate(time.Millisecond)
	return identity.VerifiedName{Account: account, GivenName: given, FamilyName: family, Name: given + " " + family,
		IssuedAt: issued, ExpiresAt: issued.Add(identity.VerifiedNameLifetime)}
}

// rawVerifiedName is a message of kind identity.verified-name as a
// modified client would encode it.
func rawVerifiedName(t *testing.T, org string, a *identity.VerifiedNameAttestation) []byte {
	t.Helper()
	body := kind.VerifiedNameBody{OrgID: org, Attestation: &kind.VerifiedNameAttestation{Statement: a.Statement, Signature: a.Signature, Notary: a.Notary}}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"v":1,"kind":"identity.verified-name","id":"` + client.NewMessageID() + `","sent_at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","body":` + string(b) + `}`)
}

// verifiedNameOf is the verified name c shows for account in org's
// conversations, "" for none.
func verifiedNameOf(t *testing.T, c *client.Client, org, account string) string {
	t.Helper()
	v, err := c.VerifiedName(org, account)
	if err != nil {
		t.Fatal(err)
	}
	if v == nil {
		return ""
	}
	return v.Name
}

// TestAttackVerifiedName: a citizen's eID-verified name reaches an
// office's agents only with the citizen's consent for that office, and an
// agent's device shows a name only when the deployment's notary signed it
// for the account of the device that sent it and it has not expired. A
// modified client (SendRawForTest) that sends a copy of another
// citizen's name, an altered, self-signed or expired one, one shared with
// another office, or one in a direct chat is refused; the server never
// holds the name.
func TestAttackVerifiedName(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		erika := signUp(t, srv, "erika@example.org", true)
		mallory := signUp(t, srv, "mallory@example.org", false)
		agent := signUp(t, srv, "schmidt@worms.example", true)
		other := signUp(t, srv, "meier@mainz.example", true)
		op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
		org := func(name, member string) string {
			o, err := op.CreateOrg(ctx, name, "office")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := op.VerifyOrg(ctx, o.OrgID); err != nil {
				t.Fatal(err)
			}
			if _, err := op.AddMember(ctx, o.OrgID, member, "agent"); err != nil {
				t.Fatal(err)
			}
			return o.OrgID
		}
		worms, mainz := org("Bürgeramt Worms", agent.AccountID), org("Standesamt Mainz", other.AccountID)
		erikaStore := client.NewMemoryStore()
		erikaSDK := erika.SDK(t, srv.URL, erikaStore)
		mallorySDK := mallory.SDK(t, srv.URL, client.NewMemoryStore())
		agentSDK := agent.SDK(t, srv.URL, client.NewMemoryStore())
		otherSDK := other.SDK(t, srv.URL, client.NewMemoryStore())
		for _, s := range []*client.Client{erikaSDK, mallorySDK, agentSDK, otherSDK} {
			if _, err := s.Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		good := notarize(t, srv, nameFor(erika.AccountID, "Erika", "Markermann", now))

		// Without a verified name, or without consent, nothing goes out;
		// nor as an ordinary message.
		if err := erikaSDK.ConsentVerifiedName(worms); err != nil {
			t.Fatal(err)
		}
		if err := erikaSDK.ShareVerifiedName(ctx, worms); !errors.Is(err, client.ErrNoVerifiedName) {
			t.Fatalf("share without a verified name: %v", err)
		}
		if err := client.KeepVerifiedName(erikaStore, good); err != nil {
			t.Fatal(err)
		}
		if err := erikaSDK.ShareVerifiedName(ctx, mainz); !errors.Is(err, client.ErrNoConsent) {
			t.Fatalf("share without consent: %v", err)
		}
		m, err := kind.New(client.NewMessageID(), now, &kind.VerifiedNameBody{OrgID: mainz,
			Attestation: &kind.VerifiedNameAttestation{Statement: good.Statement, Signature: good.Signature, Notary: good.Notary}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := erikaSDK.Send(ctx, client.Peer{OrgID: mainz}, m); !errors.Is(err, client.ErrSendFailed) {
			t.Fatalf("a verified name sent as an ordinary message: %v", err)
		}
		// An ordinary message to Mainz carries no name either.
		if _, err := erikaSDK.Send(ctx, client.Peer{OrgID: mainz}, textMsg(t, "Guten Tag, Mainz.")); err != nil {
			t.Fatal(err)
		}
		if texts, bad := inbox(t, otherSDK); len(texts) != 1 || len(bad) != 0 || verifiedNameOf(t, otherSDK, mainz, erika.AccountID) != "" {
			t.Fatalf("Mainz: %v %v, name %q", texts, bad, verifiedNameOf(t, otherSDK, mainz, erika.AccountID))
		}

		// With consent for Worms: Worms' agent sees it, Mainz' does not.
		if err := erikaSDK.ShareVerifiedName(ctx, worms); err != nil {
			t.Fatal(err)
		}
		if _, bad := inbox(t, agentSDK); len(bad) != 0 {
			t.Fatal(bad)
		}
		if got := verifiedNameOf(t, agentSDK, worms, erika.AccountID); got != "Erika Markermann" {
			t.Fatalf("Worms' agent sees %q", got)
		}
		if got := verifiedNameOf(t, agentSDK, mainz, erika.AccountID); got != "" {
			t.Fatalf("under Mainz: %q", got)
		}
		// Shared once: a second share sends nothing, nor does the next
		// message carry it again.
		if err := erikaSDK.ShareVerifiedName(ctx, worms); err != nil {
			t.Fatal(err)
		}
		if _, err := erikaSDK.Send(ctx, client.Peer{OrgID: worms}, textMsg(t, "Guten Tag, Worms.")); err != nil {
			t.Fatal(err)
		}
		stream, err := agentSDK.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		msgs, bad, err := stream.Backlog(ctx)
		stream.Close()
		if err != nil || len(bad) != 0 || len(msgs) != 1 || msgs[0].Message.Kind != kind.Text {
			t.Fatalf("after a second share and a message: %d messages, %v %v", len(msgs), bad, err)
		}

		// Mallory's modified client.
		altered := *good
		forMallory := nameFor(mallory.AccountID, "Erika", "Markermann", now)
		altered.Statement = forMallory.Marshal()
		otherCA, _ := ca.Create("another deployment", now.Add(-time.Hour))
		otherNotary, _ := otherCA.Notary(t.TempDir(), now)
		st := forMallory.Marshal()
		selfSigned := &identity.VerifiedNameAttestation{Statement: st, Signature: otherNotary.Sign(identity.VerifiedNamePurpose, st), Notary: otherNotary.Certificate().Raw}
		old := nameFor(mallory.AccountID, "Mallory", "Markermann", now.Add(-30*time.Minute))
		old.ExpiresAt = now.Add(-time.Minute).UTC().Truncate(time.Millisecond)
		expired := notarize(t, srv, old)
		for name, a := range map[string]*identity.VerifiedNameAttestation{
			"erika's, copied":              good,
			"altered to mallory's account": &altered,
			"signed by another deployment": selfSigned,
			"mallory's own, expired":       expired,
		} {
			if err := mallorySDK.SendRawForTest(ctx, client.Peer{OrgID: worms}, client.NewMessageID(), rawVerifiedName(t, worms, a)); err != nil {
				t.Fatal(err)
			}
			_, bad := inbox(t, agentSDK)
			if len(bad) != 1 || !errors.Is(bad[0], client.ErrUntrusted) {
				t.Errorf("%s: refused %v", name, bad)
			}
			if got := verifiedNameOf(t, agentSDK, worms, mallory.AccountID); got != "" {
				t.Errorf("%s: the agent shows mallory as %q", name, got)
			}
		}
		// Erika's own client, modified: her real name into Mainz' conversation
		// labelled as shared with Worms, and into a direct chat.
		if err := erikaSDK.SendRawForTest(ctx, client.Peer{OrgID: mainz}, client.NewMessageID(), rawVerifiedName(t, worms, good)); err != nil {
			t.Fatal(err)
		}
		if _, bad := inbox(t, otherSDK); len(bad) != 1 || !errors.Is(bad[0], client.ErrUntrusted) || verifiedNameOf(t, otherSDK, mainz, erika.AccountID) != "" {
			t.Errorf("shared with Worms, sent to Mainz: %v", bad)
		}
		if err := erikaSDK.SendRawForTest(ctx, client.Peer{AccountID: other.AccountID}, client.NewMessageID(), rawVerifiedName(t, mainz, good)); err != nil {
			t.Fatal(err)
		}
		if _, bad := inbox(t, otherSDK); len(bad) != 1 || !errors.Is(bad[0], client.ErrUntrusted) || verifiedNameOf(t, otherSDK, mainz, erika.AccountID) != "" {
			t.Errorf("in a direct chat: %v", bad)
		}

		// Erika withdraws her consent: the agent's device forgets the name,
		// and her next message to Worms carries none.
		if err := erikaSDK.WithdrawVerifiedName(ctx, worms); err != nil {
			t.Fatal(err)
		}
		if _, bad := inbox(t, agentSDK); len(bad) != 0 || verifiedNameOf(t, agentSDK, worms, erika.AccountID) != "" {
			t.Fatalf("after the withdrawal: %v, %q", bad, verifiedNameOf(t, agentSDK, worms, erika.AccountID))
		}
		if _, err := erikaSDK.Send(ctx, client.Peer{OrgID: worms}, textMsg(t, "Noch eine Frage.")); err != nil {
			t.Fatal(err)
		}
		if texts, bad := inbox(t, agentSDK); len(texts) != 1 || len(bad) != 0 || verifiedNameOf(t, agentSDK, worms, erika.AccountID) != "" {
			t.Fatalf("after the withdrawal, a message: %v %v", texts, bad)
		}
		if err := erikaSDK.ShareVerifiedName(ctx, worms); !errors.Is(err, client.ErrNoConsent) {
			t.Fatalf("share after the withdrawal: %v", err)
		}
		// Consent again: the next message brings it along.
		if err := erikaSDK.ConsentVerifiedName(worms); err != nil {
			t.Fatal(err)
		}
		if _, err := erikaSDK.Send(ctx, client.Peer{OrgID: worms}, textMsg(t, "Und noch eine.")); err != nil {
			t.Fatal(err)
		}
		if _, bad := inbox(t, agentSDK); len(bad) != 0 || verifiedNameOf(t, agentSDK, worms, erika.AccountID) != "Erika Markermann" {
			t.Fatalf("consent again: %v %q", bad, verifiedNameOf(t, agentSDK, worms, erika.AccountID))
		}

		searchTables(t, srv.openDB(t), "Markermann")
	})
}
