package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
)

// TestNodeRunsWithoutRootKey: 'kanald ca init' writes the root key to a
// file of its own and leaves the CA directory with the intermediate only;
// with the root key moved away, the real kanald starts, enrols devices
// whose certificates chain root → intermediate → device, and the messaging
// SDK accepts them. 'kanald ca issue-intermediate' (the only step that
// needs the root key) rotates the intermediate: the node restarts under
// the same deployment, and devices enrolled before still verify.
func TestNodeRunsWithoutRootKey(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	offline := t.TempDir()
	rootKey := filepath.Join(offline, "root.key")
	env := map[string]string{"KANAL_CA_DIR": caDir, "KANAL_DATA_DIR": filepath.Join(t.TempDir(), "unused")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"ca", "init", "--root-key", rootKey, "--name", "Musterstadt"}, envOf(env), &out); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"ca", "init", "--root-key", filepath.Join(offline, "again.key")}, envOf(env), io.Discard); err == nil {
		t.Fatal("ca init over an existing CA")
	}
	other := t.TempDir()
	if err := run(ctx, []string{"ca", "init", "--root-key", filepath.Join(other, "root.key")}, envOf(map[string]string{"KANAL_CA_DIR": other}), io.Discard); err == nil {
		t.Fatal("ca init put the root key into the CA directory")
	}
	if _, err := os.Stat(filepath.Join(caDir, ca.KeyFile)); err == nil {
		t.Fatal("the CA directory holds a root key (ca.key)")
	}
	// The root key goes offline: the node never sees it.
	hidden := filepath.Join(t.TempDir(), "vault.key")
	if err := os.Rename(rootKey, hidden); err != nil {
		t.Fatal(err)
	}

	n := kanaldtest.Start(t, kanaldBin, "KANAL_CA_DIR="+caDir)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alice := n.SignUp(t, "alice@example.de", key)
	rootPEM, _ := os.ReadFile(filepath.Join(caDir, ca.RootCertFile))
	roots, _ := ca.ParseCertificatesPEM(rootPEM)
	if !alice.CA.Equal(roots[0]) || len(alice.Intermediates) != 1 {
		t.Fatalf("enrolment gave CA %q and %d intermediates", alice.CA.Subject.CommonName, len(alice.Intermediates))
	}
	pool, err := ca.TrustPool(roots[0], alice.Intermediates)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ca.ParseCertificatesPEM(alice.Certificate)
	if _, err := ca.VerifyDevice(cert[0].Raw, pool, time.Now()); err != nil || !bytes.Equal(cert[0].RawIssuer, alice.Intermediates[0].RawSubject) {
		t.Fatalf("Alice's certificate does not chain root → intermediate → device: %v", err)
	}
	alice.SDK(t, n.URL, client.NewMemoryStore())
	// Without the intermediate, the SDK refuses (the root did not issue it).
	if _, err := client.New(client.Options{BaseURL: n.URL, Token: alice.Token, AccountID: alice.AccountID, DeviceID: alice.DeviceID,
		DeviceKey: alice.Key, DeviceCertificate: alice.Certificate, CA: alice.CA, Store: client.NewMemoryStore()}); err == nil {
		t.Fatal("the SDK accepted a device certificate without its intermediate")
	}
	if err, _ := n.Stop(t); err != nil {
		t.Fatal(err)
	}

	// Rotation, with the root key brought back for this step only.
	if err := run(ctx, []string{"ca", "issue-intermediate", "--root-key", filepath.Join(offline, "missing.key")}, envOf(env), io.Discard); err == nil {
		t.Fatal("rotated without the root key")
	}
	out.Reset()
	if err := run(ctx, []string{"ca", "issue-intermediate", "--root-key", hidden, "--name", "Musterstadt 2027"}, envOf(env), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 retired") {
		t.Fatalf("issue-intermediate said %q", out.String())
	}
	os.Rename(hidden, filepath.Join(t.TempDir(), "gone.key"))
	n = n.StartAgain(t)
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bob := n.SignUp(t, "bob@example.de", key2)
	if len(bob.Intermediates) != 2 || bob.Intermediates[0].Equal(alice.Intermediates[0]) || !bob.Intermediates[1].Equal(alice.Intermediates[0]) {
		t.Fatalf("after rotation: %d intermediates", len(bob.Intermediates))
	}
	pool2, err := ca.TrustPool(roots[0], bob.Intermediates)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.VerifyDevice(cert[0].Raw, pool2, time.Now()); err != nil {
		t.Fatalf("Alice's certificate from the retired intermediate: %v", err)
	}
	bob.SDK(t, n.URL, client.NewMemoryStore())
}
