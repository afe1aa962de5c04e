package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Alice compares safety numbers with Bob, marks him verified, and learns
// when a send is stopped because one of his keys changed since.
func ExampleClient_VerifyContact() {
	ctx := context.Background()
	c, err := client.New(client.Options{
		BaseURL: "https://kanal.musterstadt.de", Token: session, AccountID: "acc_alice", DeviceID: "dev_alice_phone",
		DeviceKey: deviceKey, DeviceCertificate: deviceCert, CA: deploymentCA, Store: client.NewMemoryStore(),
		OnKeyChange: func(k client.KeyChange) { fmt.Printf("%s's key changed (device %s)\n", k.AccountID, k.DeviceID) },
	})
	if err != nil {
		log.Fatal(err)
	}
	nums, err := c.SafetyNumbers(ctx, bobAccount)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range nums {
		fmt.Printf("device %s: %s\n", n.DeviceID, n.Number) // Bob's device shows the same digits
	}
	// They matched, read aloud or scanned.
	if err := c.VerifyContact(bobAccount); err != nil {
		log.Fatal(err)
	}
	m, err := kind.New(client.NewMessageID(), time.Now(), &kind.TextBody{Text: "Geprüft."})
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Send(ctx, client.Peer{AccountID: bobAccount}, m)
	var changed *client.KeyChangedError
	if errors.As(err, &changed) {
		fmt.Println("not sent:", changed) // compare again, then VerifyContact
	}
}

// A device checks its own account in the transparency log, and shows
// what it finds until the user has dealt with it.
func ExampleClient_Monitor() {
	ctx := context.Background()
	c, err := client.New(client.Options{
		BaseURL: "https://kanal.musterstadt.de", Token: session, AccountID: "acc_alice", DeviceID: "dev_alice_phone",
		DeviceKey: deviceKey, DeviceCertificate: deviceCert, CA: deploymentCA, Store: client.NewMemoryStore(),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Monitor(ctx); errors.Is(err, client.ErrLog) {
		log.Printf("the log does not verify, nothing of it was kept: %v", err)
	} else if err != nil {
		log.Fatal(err)
	}
	alerts, err := c.Alerts()
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range alerts {
		fmt.Println("ALERT:", a) // e.g. a device you do not know was added to your account
	}
	// Once the user revoked the device (or recognised it):
	if _, err := c.AckAlerts(); err != nil {
		log.Fatal(err)
	}
}
