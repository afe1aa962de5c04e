package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
)

// TestSecretBadFiles: a secret file of the wrong size, readable by others,
// not a regular file, missing on a deployment that has a secret, or
// another deployment's secret stops kanald with one line naming
// KANAL_SECRET_FILE and the cause; nothing is overwritten.
func TestSecretBadFiles(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kanal-data")
	n := startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
	if err, _ := n.Stop(t); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dataDir, "ca", "secret")
	st, err := os.Stat(good)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != secretSize {
		t.Fatalf("first start left no 0600 32-byte secret: %v %v", st, err)
	}
	want, _ := os.ReadFile(good)
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	other := make([]byte, secretSize)
	rand.Read(other)
	cases := []struct{ name, file, says string }{
		{"short", write("short", make([]byte, 16), 0o600), "16 bytes"},
		{"long", write("long", append(other, '\n'), 0o600), "33 bytes"},
		{"group-readable", write("open", other, 0o640), "mode 0640"},
		{"directory", dir, "not a regular file"},
		{"missing on a deployment with a secret", filepath.Join(dir, "none"), "copy the secret file"},
		{"another deployment's", write("other", other, 0o600), "not this deployment's secret"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, nil, envOf(map[string]string{"KANAL_ADDR": "127.0.0.1:0", "KANAL_DATA_DIR": dataDir, "KANAL_SECRET_FILE": c.file}), io.Discard)
			if err == nil {
				t.Fatal("kanald started")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "KANAL_SECRET_FILE: ") || !strings.Contains(msg, c.says) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q should be one line naming KANAL_SECRET_FILE and saying %q", msg, c.says)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "none")); err == nil {
		t.Fatal("a missing secret was created for a deployment that has one")
	}
	if got, _ := os.ReadFile(good); string(got) != string(want) {
		t.Fatal("the deployment secret changed")
	}
	startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
}

// TestLegacyDataDirUpgrades: a data directory from before the deployment
// secret (VAPID key sealed under the CA-derived key, no secret file, no
// recorded check) starts, keeps its VAPID key (every push subscription
// depends on it), creates the secret, and leaves the key sealed under the
// secret rather than the CA key.
func TestLegacyDataDirUpgrades(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kanal-data")
	n := startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
	vapid := func(n *node) string {
		code, body := n.get(t, "/v1/push/vapid-key")
		var r struct {
			PublicKey string `json:"public_key"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.PublicKey == "" {
			t.Fatalf("vapid-key = %d %s", code, body)
		}
		return r.PublicKey
	}
	pub := vapid(n)
	if err, _ := n.Stop(t); err != nil {
		t.Fatal(err)
	}

	// Turn the directory into what an older kanald left behind.
	ctx := context.Background()
	secretPath := filepath.Join(dataDir, "ca", "secret")
	secret, err := os.ReadFile(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	authority, _, err := ca.LoadOrCreateDir(filepath.Join(dataDir, "ca"), "unused", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := authority.KeyPEM()
	key := func(master []byte, label string) cipher.AEAD {
		k, err := hkdf.Key(sha256.New, master, nil, label, 32)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := aes.NewCipher(k)
		g, _ := cipher.NewGCM(b)
		return g
	}
	const aad = "kanal push vapid private key v1"
	d, err := db.Open(ctx, "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var sealed string
	if err := d.QueryRow(ctx, `SELECT sealed_private FROM push_vapid`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(sealed)
	scalar, err := key(secret, labelVAPIDSeal).Open(nil, raw[:12], raw[12:], []byte(aad))
	if err != nil {
		t.Fatalf("the VAPID key is not sealed under the deployment secret: %v", err)
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	old := base64.RawURLEncoding.EncodeToString(key(caPEM, "kanal push vapid seal v1").Seal(nonce, nonce, scalar, []byte(aad)))
	if _, err := d.Exec(ctx, `UPDATE push_vapid SET sealed_private = $1`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, `UPDATE deployment SET secret_check = ''`); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := os.Remove(secretPath); err != nil {
		t.Fatal(err)
	}

	n = startNode(t, map[string]string{"KANAL_DATA_DIR": dataDir})
	if got := vapid(n); got != pub {
		t.Fatalf("VAPID key changed across the upgrade: %s, was %s", got, pub)
	}
	if err, _ := n.Stop(t); err != nil {
		t.Fatal(err)
	}
	secret, err = os.ReadFile(secretPath)
	if err != nil {
		t.Fatalf("the upgrade created no secret: %v", err)
	}
	d, err = db.Open(ctx, "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.QueryRow(ctx, `SELECT sealed_private FROM push_vapid`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	raw, _ = base64.RawURLEncoding.DecodeString(sealed)
	if _, err := key(secret, labelVAPIDSeal).Open(nil, raw[:12], raw[12:], []byte(aad)); err != nil {
		t.Fatal("after the upgrade, the VAPID key is not sealed under the deployment secret")
	}
	if _, err := key(caPEM, "kanal push vapid seal v1").Open(nil, raw[:12], raw[12:], []byte(aad)); err == nil {
		t.Fatal("after the upgrade, the CA key still opens the VAPID key")
	}
}
