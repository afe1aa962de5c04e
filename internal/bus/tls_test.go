package bus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/bus/natstest"
)

func pingCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip publishes on one bus and receives on another.
func roundTrip(t *testing.T, a, b *Bus) {
	t.Helper()
	got := make(chan *Msg, 1)
	sub, err := b.ChanSubscribe("kanal.test.tls", got)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := b.Ping(pingCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("kanal.test.tls", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Data) != "hello" {
			t.Fatalf("got %q", m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over the TLS bus")
	}
}

// TestExternalTLSAndCredentials joins a nats-server that requires TLS and
// credentials with each way of authenticating, and a message goes from
// one connection to another; the connection is TLS.
func TestExternalTLSAndCredentials(t *testing.T) {
	pw := natstest.Start(t, natstest.Options{})
	mtls := natstest.Start(t, natstest.Options{VerifyClients: true})
	jwtSrv := natstest.Start(t, natstest.Options{JWT: true})
	withUser := strings.Replace(pw.URL, "nats://", "nats://"+pw.User+":"+pw.Password+"@", 1)
	cases := map[string]Options{
		"user and password":        {URL: pw.URL, CAFile: pw.CAFile, User: pw.User, Password: pw.Password},
		"user and password in URL": {URL: withUser, CAFile: pw.CAFile},
		"nkey seed file":           {URL: pw.URL, CAFile: pw.CAFile, NKeyFile: pw.NKeySeedFile},
		"client certificate too": {URL: mtls.URL, CAFile: mtls.CAFile, CertFile: mtls.ClientCertFile, KeyFile: mtls.ClientKeyFile,
			User: mtls.User, Password: mtls.Password},
		".creds file": {URL: jwtSrv.URL, CAFile: jwtSrv.CAFile, CredsFile: jwtSrv.CredsFile},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			a, err := Open(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := Open(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, err := a.Conn().TLSConnectionState(); err != nil {
				t.Fatalf("not TLS: %v", err)
			}
			roundTrip(t, a, b)
		})
	}
}

// TestExternalRefused: wrong or missing credentials and an untrusted
// server certificate stop Open with an error that says which, in one
// line and without the password.
func TestExternalRefused(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	mtls := natstest.Start(t, natstest.Options{VerifyClients: true})
	otherSeed := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherSeed, []byte("SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		o    Options
		want error
	}{
		{"no credentials", Options{URL: srv.URL, CAFile: srv.CAFile}, ErrCredentials},
		{"wrong password", Options{URL: srv.URL, CAFile: srv.CAFile, User: srv.User, Password: "hunter2-wrong"}, ErrCredentials},
		{"unknown nkey", Options{URL: srv.URL, CAFile: srv.CAFile, NKeyFile: otherSeed}, ErrCredentials},
		{"untrusted server certificate", Options{URL: srv.URL, CAFile: srv.OtherCAFile, User: srv.User, Password: srv.Password}, ErrServerCertificate},
		{"system roots only", Options{URL: srv.URL, User: srv.User, Password: srv.Password}, ErrServerCertificate},
		{"no client certificate", Options{URL: mtls.URL, CAFile: mtls.CAFile, User: mtls.User, Password: mtls.Password}, ErrClientCertificate},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Open(context.Background(), c.o)
			if err == nil {
				b.Close()
				t.Fatal("connected")
			}
			t.Log(err)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %q, want %v", err, c.want)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, "hunter2") || strings.Contains(msg, srv.Password) {
				t.Fatalf("error %q should be one line without the password", msg)
			}
		})
	}
}

// TestOptionsCheck: settings that cannot work are refused before any
// connection, naming the field.
func TestOptionsCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	seed := write("seed.nk", "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU\n", 0o600)
	openSeed := write("open.nk", "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU\n", 0o644)
	notPEM := write("ca.pem", "not a certificate", 0o644)
	const u = "nats://127.0.0.1:4222"
	cases := []struct {
		o     Options
		field string
	}{
		{Options{CAFile: notPEM}, "CAFile"},
		{Options{User: "kanal", Password: "x"}, "User"},
		{Options{URL: u, CAFile: notPEM}, "CAFile"},
		{Options{URL: u, CAFile: filepath.Join(dir, "missing.pem")}, "CAFile"},
		{Options{URL: u, Password: "x"}, "Password"},
		{Options{URL: u, User: "kanal"}, "User"},
		{Options{URL: "nats://a:b@127.0.0.1:4222", User: "kanal", Password: "x"}, "User"},
		{Options{URL: u, User: "kanal", Password: "x", NKeyFile: seed}, "CredsFile"},
		{Options{URL: u, NKeyFile: openSeed}, "NKeyFile"},
		{Options{URL: u, NKeyFile: notPEM}, "NKeyFile"},
		{Options{URL: u, CredsFile: seed}, "CredsFile"},
		{Options{URL: u, CertFile: notPEM}, "CertFile"},
	}
	for _, c := range cases {
		err := c.o.Check()
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != c.field {
			t.Errorf("%+v: got %v, want an error on %s", c.o, err, c.field)
		}
	}
	if err := (Options{URL: u, NKeyFile: seed}).Check(); err != nil {
		t.Errorf("a good seed file: %v", err)
	}
}
