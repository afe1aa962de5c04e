package client_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log"

	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/messaging/client"
)

// Values an application has after enrolling its device with identity
// (see identity/client): they stand in for real ones in the examples.
var (
	deviceKey    crypto.Signer
	deviceCert   []byte // PEM, from enrolment
	deploymentCA *x509.Certificate
	session      string // bearer token from login
	bobAccount   = "acc_bob"
)

// A device publishes its keys once, then starts a session with every
// device of another account and sends the first message.
func Example() {
	ctx := context.Background()
	c, err := client.New(client.Options{
		BaseURL:           "https://kanal.musterstadt.de",
		Token:             session,
		AccountID:         "acc_alice",
		DeviceID:          "dev_alice_phone",
		DeviceKey:         deviceKey,
		DeviceCertificate: deviceCert,
		CA:                deploymentCA,
		Store:             client.NewMemoryStore(),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Publish(ctx); err != nil {
		log.Fatal(err)
	}

	claim, err := c.ClaimAccount(ctx, bobAccount)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range claim.Refused {
		log.Printf("not sending to %s: %v", r.DeviceID, r.Err) // the server handed out a bundle that does not verify
	}
	for _, b := range claim.Bundles {
		if err := c.StartSession(b); err != nil {
			log.Fatal(err)
		}
		m, err := c.Encrypt(b.Device.DeviceID, []byte("Guten Tag!"))
		if err != nil {
			log.Fatal(err)
		}
		wire, _ := m.MarshalBinary()
		_ = wire // the ciphertext of an envelope to b.Device.DeviceID
	}
}

// The receiving device decrypts what arrives in its mailbox; the server
// names the sending device.
func ExampleClient_Decrypt() {
	var c *client.Client  // as in Example
	var sender string     // the envelope's sender device
	var ciphertext []byte // the envelope's ciphertext
	var m client.Message
	if err := m.UnmarshalBinary(ciphertext); err != nil {
		log.Fatal(err)
	}
	plaintext, err := c.Decrypt(context.Background(), sender, &m)
	if errors.Is(err, client.ErrUntrusted) {
		log.Fatal("the sender's certificate or identity binding does not verify")
	}
	fmt.Printf("%s\n", plaintext)
}

// A device tops up its one-time prekeys when it starts and after it has
// received first messages.
func ExampleClient_Replenish() {
	var c *client.Client // as in Example
	st, err := c.Replenish(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.OneTimePrekeys, st.PQPrekeys)
}

// A citizen writes to an office: each bundle comes from an agent's device
// whose membership certificate chains through the office to the CA.
func ExampleClient_ClaimOrg() {
	var c *client.Client // as in Example
	claim, err := c.ClaimOrg(context.Background(), "org_buergeramt")
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range claim.Bundles {
		fmt.Printf("%s (%s) speaks for %s as %s\n", b.Device.DeviceID, b.Device.AccountID, b.Membership.OrgName, b.Membership.Role)
	}
}

// The CLI keeps the SDK's state in its encrypted key store.
func ExampleNewKeystoreStore() {
	ks, err := keystore.Open("/home/alice/.kanal/keys", []byte("passphrase"))
	if err != nil {
		log.Fatal(err)
	}
	_ = client.Options{Store: client.NewKeystoreStore(ks)} // and the other options
}

func ExampleMemoryStore() {
	s := client.NewMemoryStore()
	_ = s.Put("greeting", []byte("hallo"))
	v, _ := s.Get("greeting")
	_, err := s.Get("missing")
	fmt.Println(string(v), errors.Is(err, client.ErrNotFound))
	// Output: hallo true
}

func ExampleMessage_UnmarshalBinary() {
	var m client.Message
	err := m.UnmarshalBinary([]byte(`{"ciphertext":"AAEC","surprise":1}`))
	fmt.Println(errors.Is(err, client.ErrBadMessage))
	err = m.UnmarshalBinary([]byte(`{"ciphertext":"AAEC"}`))
	fmt.Println(err, m.Ciphertext)
	// Output:
	// true
	// <nil> [0 1 2]
}
