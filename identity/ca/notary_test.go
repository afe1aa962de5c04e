package ca

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestNotaryCreatedOnceAndShared(t *testing.T) {
	dir := t.TempDir()
	c, _, err := LoadOrCreateDir(dir, "Musterstadt", t0)
	if err != nil {
		t.Fatal(err)
	}
	// Nodes starting together on one directory end with one key.
	var wg sync.WaitGroup
	notaries := make([]*Notary, 4)
	errs := make([]error, 4)
	for i := range notaries {
		wg.Add(1)
		go func() { defer wg.Done(); notaries[i], errs[i] = c.Notary(dir, t0) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if !notaries[i].key.Equal(notaries[0].key) {
			t.Fatalf("node %d has another notary key", i)
		}
	}
	st, err := os.Stat(filepath.Join(dir, NotaryKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("notary.key mode %v, want 0600", st.Mode().Perm())
	}
	again, err := c.Notary(dir, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.key.Equal(notaries[0].key) || !again.cert.Equal(notaries[0].cert) {
		t.Fatal("a second load changed the notary")
	}
}

func TestNotarySignVerify(t *testing.T) {
	dir := t.TempDir()
	c, _, err := LoadOrCreateDir(dir, "Musterstadt", t0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Notary(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("board head 42")
	sig := n.Sign("surveys.board-head", msg)
	cert := n.Certificate().Raw
	if err := VerifyNotarized(cert, c.Pool(), t0, "surveys.board-head", msg, sig); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for name, f := range map[string]func() error{
		"other purpose": func() error { return VerifyNotarized(cert, c.Pool(), t0, "payments.receipt", msg, sig) },
		"other message": func() error {
			return VerifyNotarized(cert, c.Pool(), t0, "surveys.board-head", []byte("board head 43"), sig)
		},
		"other CA": func() error { return VerifyNotarized(cert, newCA(t).Pool(), t0, "surveys.board-head", msg, sig) },
		"expired": func() error {
			return VerifyNotarized(cert, c.Pool(), t0.Add(NotaryLifetime+time.Hour), "surveys.board-head", msg, sig)
		},
	} {
		if err := f(); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	// A device certificate is not a notary certificate, even with a
	// signature its key made.
	dev := issueDevice(t, c, ed25519Key(t))
	if _, err := VerifyNotary(dev.Raw, c.Pool(), t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("device certificate as notary: %v", err)
	}
}

func TestNotaryRenewedForSameKey(t *testing.T) {
	dir := t.TempDir()
	c, _, err := LoadOrCreateDir(dir, "Musterstadt", t0)
	if err != nil {
		t.Fatal(err)
	}
	n1, err := c.Notary(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	later := t0.Add(NotaryLifetime - NotaryRenewBefore + time.Hour)
	n2, err := c.Notary(dir, later)
	if err != nil {
		t.Fatal(err)
	}
	if !n2.key.Equal(n1.key) {
		t.Fatal("renewal changed the key")
	}
	if n2.cert.Equal(n1.cert) || !n2.cert.NotAfter.After(n1.cert.NotAfter) {
		t.Fatal("certificate not renewed")
	}
	// Statements signed under the old certificate still verify at their time.
	sig := n1.Sign("p", []byte("m"))
	if err := VerifyNotarized(n1.cert.Raw, c.Pool(), t0, "p", []byte("m"), sig); err != nil {
		t.Fatal(err)
	}
}

func TestNotaryRefusesOpenKeyFile(t *testing.T) {
	dir := t.TempDir()
	c, _, err := LoadOrCreateDir(dir, "Musterstadt", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Notary(dir, t0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, NotaryKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Notary(dir, t0); !errors.Is(err, ErrKeyPermissions) {
		t.Fatalf("world-readable notary.key: %v", err)
	}
}
