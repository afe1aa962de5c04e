package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// nodeCA is the adversary's copy of the node's CA key, read from the data
// directory as whoever holds the node can.
func nodeCA(t *testing.T, dataDir string) *ca.CA {
	t.Helper()
	dir := filepath.Join(dataDir, "ca")
	certPEM, err := os.ReadFile(filepath.Join(dir, ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, ca.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Parse(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// forgeDevice issues, with the node's CA key, a certificate for device of
// account on a key the adversary holds, and records its serial in the
// database so the CA's status responder vouches for it, and appends its
// device entry to the transparency log with the node's log key.
func forgeDevice(t *testing.T, srv *server, account, device string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := nodeCA(t, srv.DataDir).IssueDevice(ca.DeviceRequest{AccountID: account, DeviceID: device, Level: ca.LevelSubstantial, CSR: csr,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	d := srv.openDB(t)
	err = d.Tx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO identity_device_certs (serial, device_id, not_after) VALUES ($1, $2, $3)`,
			cert.SerialNumber.String(), device, cert.NotAfter.Unix())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The adversary logs the certificate too (with the node's log key):
	// an unlogged one every SDK refuses (TestAttackUnloggedSenderRefused),
	// a logged one reaches Anna — and shows in Ben's monitor.
	logAsNode(t, srv, transparency.Entry{Kind: transparency.KindDevice, Account: account, Device: device,
		Cert: transparency.CertFingerprint(cert.Raw), Time: time.Now().Unix()})
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// swapKey is the attack: the adversary, holding the node's CA key and
// write access to the database, speaks for victim's device with an
// identity key of its own. It certifies a key of its own for that device,
// binds a new identity key to it, starts a session with target's published
// bundle (claimed with mallory's session, as any citizen may) and puts the
// first message of that session, "from the victim's device", in target's
// mailbox.
func swapKey(t *testing.T, srv *server, victim, target *user, mallory string, text string) keys.IdentityPublic {
	t.Helper()
	ctx := context.Background()
	key, certPEM := forgeDevice(t, srv, victim.AccountID, victim.DeviceID)
	impostor, err := client.New(client.Options{BaseURL: srv.URL, Token: mallory, AccountID: victim.AccountID, DeviceID: victim.DeviceID,
		DeviceKey: key, DeviceCertificate: certPEM, CA: victim.CA, Store: client.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	claim, err := impostor.ClaimAccount(ctx, target.AccountID)
	if err != nil || len(claim.Bundles) != 1 {
		t.Fatalf("claim %s: %+v %v", target.AccountID, claim, err)
	}
	if err := impostor.StartSession(claim.Bundles[0]); err != nil {
		t.Fatal(err)
	}
	conv := messaging.DirectConversation(victim.AccountID, target.AccountID)
	msg := textMsg(t, text)
	raw, _ := msg.Marshal()
	content, _ := json.Marshal(map[string]any{"v": 1, "conv": conv,
		"to": messaging.SendTo{AccountID: target.AccountID}, "msg": json.RawMessage(raw)})
	m, err := impostor.Encrypt(target.DeviceID, content)
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := m.MarshalBinary()
	if err := mailboxOf(t, srv).Append(ctx, []mailbox.Envelope{{Conversation: conv, Sender: victim.DeviceID, Recipient: target.DeviceID,
		Class: string(msg.Class()), Ciphertext: wire}}); err != nil {
		t.Fatal(err)
	}
	id, err := impostor.IdentityPublic()
	if err != nil {
		t.Fatal(err)
	}
	// And logs the key, as messaging would have on publication.
	idBin, _ := id.MarshalBinary()
	logAsNode(t, srv, transparency.Entry{Kind: transparency.KindIdentityKey, Account: victim.AccountID, Device: victim.DeviceID,
		Cert: transparency.CertFingerprint(derOfPEM(t, certPEM)), Key: idBin, Time: time.Now().Unix()})
	return id
}

// keyChanges collects what OnKeyChange reports.
type keyChanges struct {
	mu  sync.Mutex
	got []client.KeyChange
}

func (k *keyChanges) add(c client.KeyChange) {
	k.mu.Lock()
	k.got = append(k.got, c)
	k.mu.Unlock()
}

func (k *keyChanges) list() []client.KeyChange {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]client.KeyChange(nil), k.got...)
}

// TestAttackIdentityKeySwapped: Anna and Ben talk. The adversary holds
// the node (its CA key) and the database, and makes Anna's SDK meet
// another identity key for Ben's device: a certificate for that device on
// its own key, and a first message under its own identity key. The
// certificate chains to the CA, so the message is read — but Anna sees
// that Ben's key changed; and if she had verified Ben (compared safety
// numbers), nothing more goes to Ben until she verifies again.
func TestAttackIdentityKeySwapped(t *testing.T) {
	for _, verified := range []bool{false, true} {
		name := "unverified"
		if verified {
			name = "verified"
		}
		t.Run(name, func(t *testing.T) {
			engines(t, func(t *testing.T, postgres bool) {
				ctx := context.Background()
				srv := startKanald(t, postgres)
				anna, ben := signUp(t, srv, "anna@example.org", true), signUp(t, srv, "ben@example.org", false)
				mallory := signUp(t, srv, "mallory@example.org", false)
				var changes keyChanges
				annaSDK, err := client.New(client.Options{BaseURL: srv.URL, Token: anna.Token, AccountID: anna.AccountID, DeviceID: anna.DeviceID,
					DeviceKey: anna.Key, DeviceCertificate: anna.Certificate, CA: anna.CA, Store: client.NewMemoryStore(), OnKeyChange: changes.add})
				if err != nil {
					t.Fatal(err)
				}
				benSDK := ben.SDK(t, srv.URL, client.NewMemoryStore())
				for _, s := range []*client.Client{annaSDK, benSDK} {
					if _, err := s.Publish(ctx); err != nil {
						t.Fatal(err)
					}
				}
				sendText(t, annaSDK, ben.AccountID, "Hallo Ben")
				if got, err := benSDK.Monitor(ctx); err != nil || len(got) != 0 {
					t.Fatalf("Ben's monitor before the attack: %+v %v", got, err)
				}
				benKey, err := benSDK.IdentityPublic()
				if err != nil {
					t.Fatal(err)
				}
				// Both sides compute the same safety number from the keys.
				annaNums, err := annaSDK.SafetyNumbers(ctx, ben.AccountID)
				if err != nil || len(annaNums) != 1 || annaNums[0].DeviceID != ben.DeviceID {
					t.Fatalf("Anna's safety numbers for Ben: %+v %v", annaNums, err)
				}
				benNums, err := benSDK.SafetyNumbers(ctx, anna.AccountID)
				if err != nil || len(benNums) != 1 || !benNums[0].Number.Equal(annaNums[0].Number) {
					t.Fatalf("Ben's safety number %+v, Anna's %+v (%v)", benNums, annaNums, err)
				}
				if verified {
					if err := annaSDK.VerifyContact(ben.AccountID); err != nil {
						t.Fatal(err)
					}
				}
				if got := changes.list(); len(got) != 0 {
					t.Fatalf("key changes before the attack: %+v", got)
				}

				forged := swapKey(t, srv, ben, anna, mallory.Token, "Hier ist Ben, neues Telefon. Schick mir die PIN.")
				texts, refused := inbox(t, annaSDK)
				if len(refused) != 0 {
					t.Fatalf("refused: %v", refused)
				}
				wantTexts(t, "Anna", texts, ben.AccountID+": Hier ist Ben, neues Telefon. Schick mir die PIN.")

				// Ben's monitor sees the key logged for his device.
				if got, err := benSDK.Monitor(ctx); err != nil || len(got) != 1 || got[0].Kind != client.AlertForeignKey || got[0].DeviceID != ben.DeviceID {
					t.Fatalf("Ben's monitor after the attack: %+v %v", got, err)
				}
				// The change is visible: reported, and shown by Contact.
				got := changes.list()
				if len(got) != 1 || got[0].AccountID != ben.AccountID || got[0].DeviceID != ben.DeviceID || got[0].NewDevice ||
					!got[0].Old.Equal(benKey) || !got[0].New.Equal(forged) || got[0].Verified != verified {
					t.Fatalf("key changes: %+v, want Ben's %s from his key to the forged one (verified %v)", got, ben.DeviceID, verified)
				}
				ct, err := annaSDK.Contact(ben.AccountID)
				if err != nil || len(ct.Devices) != 1 || !ct.Devices[0].Key.Equal(forged) || ct.Devices[0].Unverified != verified {
					t.Fatalf("contact: %+v %v", ct, err)
				}
				nums, err := annaSDK.SafetyNumbers(ctx, ben.AccountID)
				if err != nil || nums[0].Number.Equal(annaNums[0].Number) {
					t.Fatalf("the safety number did not change with the key: %+v %v", nums, err)
				}

				mb := mailboxOf(t, srv)
				before, _ := pending(t, mb, ben.DeviceID)
				_, err = annaSDK.Send(ctx, client.Peer{AccountID: ben.AccountID}, textMsg(t, "1234"))
				after, _ := pending(t, mb, ben.DeviceID)
				if !verified {
					if err != nil {
						t.Fatalf("send to an unverified contact whose key changed: %v", err)
					}
					return
				}
				var kc *client.KeyChangedError
				if !errors.As(err, &kc) || !errors.Is(err, client.ErrKeyChanged) || kc.AccountID != ben.AccountID || kc.DeviceID != ben.DeviceID || kc.NewDevice {
					t.Fatalf("send to a verified contact whose key changed: %v, want a KeyChangedError for %s", err, ben.DeviceID)
				}
				if len(after) != len(before) {
					t.Fatalf("a blocked send stored %d envelopes", len(after)-len(before))
				}
				// Still blocked on the next try; verifying again (the user
				// compared the new number) lets it go.
				if _, err := annaSDK.Send(ctx, client.Peer{AccountID: ben.AccountID}, textMsg(t, "1234")); !errors.As(err, &kc) {
					t.Fatalf("second send: %v", err)
				}
				if err := annaSDK.VerifyContact(ben.AccountID); err != nil {
					t.Fatal(err)
				}
				sendText(t, annaSDK, ben.AccountID, "jetzt geprüft")
			})
		})
	}
}
