package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanal-server/kanal/internal/bus/natstest"
)

// TestAttackNATSWithoutCredentials: the adversary reaches the NATS port
// (another workload on the same network) and holds no credentials; they
// know the subjects and even trust the CA (its certificate is public).
// kanald's bus joins the server with TLS and its credentials; the
// adversary's connections are refused, with and without TLS, so they
// cannot publish a wake-up or an envelope on kanal's subjects, and
// kanald's subscriber receives nothing from them.
func TestAttackNATSWithoutCredentials(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	ctx := context.Background()
	b, err := Open(ctx, Options{URL: srv.URL, Name: "kanald", CAFile: srv.CAFile, User: srv.User, Password: srv.Password})
	if err != nil {
		t.Fatalf("kanald's bus with TLS and credentials: %v", err)
	}
	defer b.Close()
	got := make(chan *Msg, 8)
	if _, err := b.ChanSubscribe("kanal.>", got); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(pingCtx(t)); err != nil {
		t.Fatal(err)
	}

	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	attempts := map[string][]nats.Option{
		"TLS, no credentials":    {nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})},
		"TLS, guessed password":  {nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nats.UserInfo(srv.User, "guess")},
		"plain, no credentials":  {},
		"plain, known user name": {nats.UserInfo(srv.User, "")},
	}
	for name, opts := range attempts {
		nc, err := nats.Connect(srv.URL, append(opts, nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Publish("kanal.mbox.dev_victim", []byte(`{"envelopes":[{"id":"forged"}]}`))
			nc.Flush()
			nc.Close()
			t.Errorf("%s: the adversary connected and published", name)
		}
	}
	// Nothing reached kanald: a marker from another node, published
	// after every attempt, arrives after anything published before it.
	// (A node's own publications do not come back to it: Echoes.)
	other, err := Open(ctx, Options{URL: srv.URL, Name: "kanald-2", CAFile: srv.CAFile, User: srv.User, Password: srv.Password})
	if err != nil {
		t.Fatalf("a second node's bus: %v", err)
	}
	defer other.Close()
	if err := other.Publish("kanal.marker", []byte("m")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Subject != "kanal.marker" {
			t.Fatalf("kanald received %q on %s from the adversary", m.Data, m.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kanald's own marker did not arrive")
	}
}
