package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanal-server/kanal/internal/bus/natstest"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestTwoNodesOverTLSNATS is production with a locked-down bus: two kanald
// processes share PostgreSQL and a nats-server that requires TLS (a
// private CA) and a user and password. A message sent on node A reaches
// a device streaming from node B, and the wake-up crossed that bus (an
// authenticated observer sees kanald publish on it).
func TestTwoNodesOverTLSNATS(t *testing.T) {
	base := dbtest.PostgresURL(t)
	ns := natstest.Start(t, natstest.Options{})
	env := ns.Env()
	env["KANAL_DATABASE_URL"] = dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))
	env["KANAL_CA_DIR"] = filepath.Join(t.TempDir(), "ca")
	nodeEnv := func() map[string]string {
		m := map[string]string{"KANAL_DATA_DIR": filepath.Join(t.TempDir(), "kanal-data")}
		for k, v := range env {
			m[k] = v
		}
		return m
	}
	a := startNode(t, nodeEnv())
	b := startNode(t, nodeEnv())
	for _, n := range []*node{a, b} {
		if code, body := n.get(t, "/readyz"); code != 200 {
			t.Fatalf("%s /readyz = %d %s", n.URL, code, body)
		}
		if strings.Contains(n.Output(), "not encrypted") || strings.Contains(n.Output(), ns.Password) {
			t.Fatalf("node output:\n%s", n.Output())
		}
	}

	// An observer with the deployment's credentials watches kanal's subjects.
	pemCA, err := os.ReadFile(ns.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	obs, err := nats.Connect(ns.URL, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nats.UserInfo(ns.User, ns.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	// Whoever reaches the port without the credentials is not let in.
	if nc, err := nats.Connect(ns.URL, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})); err == nil {
		nc.Close()
		t.Fatal("a client without credentials joined the bus")
	}
	seen := make(chan *nats.Msg, 64)
	if _, err := obs.ChanSubscribe("kanal.>", seen); err != nil {
		t.Fatal(err)
	}
	obs.Flush()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sdk := func(email, base string) (*client.Client, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		d := a.SignUp(t, email, key) // a's data directory holds the mail
		c := d.SDK(t, base, client.NewMemoryStore())
		if _, err := c.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		return c, d.AccountID
	}
	alice, _ := sdk("alice@example.org", a.URL)
	bob, bobAccount := sdk("bob@example.org", b.URL)
	bobStream, err := bob.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bobStream.Close()
	aliceStream, err := alice.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer aliceStream.Close()
	m, err := kind.New(client.NewMessageID(), time.Now(), &kind.TextBody{Text: "hallo über TLS"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aliceStream.Send(ctx, client.Peer{AccountID: bobAccount}, m); err != nil {
		t.Fatal(err)
	}
	in, err := bobStream.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(in.Raw, []byte("hallo über TLS")) {
		t.Fatalf("bob got %s", in.Raw)
	}
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("kanald published nothing on the TLS bus")
	}
}

// TestRefusedByNATS: a node with missing or wrong credentials, or that
// does not trust the NATS server's certificate, does not start; it says
// why in one line naming the setting, never with the password, and a
// first start leaves no data directory behind.
func TestRefusedByNATS(t *testing.T) {
	ns := natstest.Start(t, natstest.Options{})
	cases := []struct {
		name    string
		env     map[string]string
		setting string
		cause   string
	}{
		{"no credentials", map[string]string{"KANAL_NATS_URL": ns.URL, "KANAL_NATS_CA_FILE": ns.CAFile}, "KANAL_NATS_URL", "refused the credentials: nats: Authorization Violation (set KANAL_NATS_USER"},
		{"wrong password", map[string]string{"KANAL_NATS_URL": ns.URL, "KANAL_NATS_CA_FILE": ns.CAFile, "KANAL_NATS_USER": ns.User, "KANAL_NATS_PASSWORD": "hunter2"},
			"KANAL_NATS_USER", "refused the credentials"},
		{"password in the URL, wrong", map[string]string{"KANAL_NATS_URL": strings.Replace(ns.URL, "nats://", "nats://kanal:hunter2@", 1), "KANAL_NATS_CA_FILE": ns.CAFile},
			"KANAL_NATS_URL", "refused the credentials"},
		{"untrusted server certificate", map[string]string{"KANAL_NATS_URL": ns.URL, "KANAL_NATS_CA_FILE": ns.OtherCAFile, "KANAL_NATS_USER": ns.User, "KANAL_NATS_PASSWORD": ns.Password},
			"KANAL_NATS_CA_FILE", "certificate is not trusted"},
		{"no CA file", map[string]string{"KANAL_NATS_URL": ns.URL, "KANAL_NATS_USER": ns.User, "KANAL_NATS_PASSWORD": ns.Password},
			"KANAL_NATS_CA_FILE", "certificate is not trusted"},
		{"nkey seed readable by everyone", map[string]string{"KANAL_NATS_URL": ns.URL, "KANAL_NATS_NKEY_FILE": openCopy(t, ns.NKeySeedFile)},
			"KANAL_NATS_NKEY_FILE", "readable by everyone"},
		{"credentials for the embedded bus", map[string]string{"KANAL_NATS_USER": "kanal", "KANAL_NATS_PASSWORD": "hunter2"},
			"KANAL_NATS_USER", "only for an external NATS server"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "kanal-data")
			env := map[string]string{"KANAL_ADDR": "127.0.0.1:0", "KANAL_DATA_DIR": dataDir}
			for k, v := range c.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, nil, envOf(env), io.Discard)
			if err == nil {
				t.Fatal("kanald started")
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, c.setting+": ") || !strings.Contains(msg, c.cause) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q should be one line naming %s and %q", msg, c.setting, c.cause)
			}
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, ns.Password) {
				t.Fatalf("error shows a password: %q", msg)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Fatalf("a failed first start left %s behind", dataDir)
			}
		})
	}
}

// openCopy copies a file to one with mode 0644.
func openCopy(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "open.nk")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
