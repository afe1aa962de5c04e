package client_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"testing"

	"github.com/kanal-server/kanal/identity/client"
)

// The fingerprint the new device shows and the approving device prints
// (docs/web.md): SHA-256 over the key's SubjectPublicKeyInfo, first 16
// bytes, in groups of four hex digits. Vector: the Ed25519 key of the
// all-zero seed (the same as sha256sum over its SPKI bytes,
// 302a300506032b6570032100 followed by the public key).
func TestKeyFingerprintVector(t *testing.T) {
	pub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public()
	got, err := client.KeyFingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "339E 2FF9 1763 0507 B6A4 23B5 CE08 4E28"; got != want {
		t.Fatalf("fingerprint %q, want %q", got, want)
	}
}

// ParseRequest gives the fingerprint of the key that signed the request,
// and refuses a request whose signature does not hold (a key swapped in
// on the way) or that is not a request at all.
func TestParseRequest(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, err := client.CertificateRequest(key)
	if err != nil {
		t.Fatal(err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	gotDER, fp, err := client.ParseRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := client.KeyFingerprint(key.Public())
	if fp != want || !bytes.Equal(gotDER, der) {
		t.Fatalf("fingerprint %q, want %q", fp, want)
	}

	// Another key put into the request: the signature no longer holds.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	swapped := bytes.Replace(der, key.Public().(ed25519.PublicKey), other.Public().(ed25519.PublicKey), 1)
	for name, in := range map[string][]byte{
		"swapped key":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: swapped}),
		"certificate":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"not PEM":      []byte("hello"),
		"garbage body": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("xx")}),
	} {
		if _, _, err := client.ParseRequest(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
