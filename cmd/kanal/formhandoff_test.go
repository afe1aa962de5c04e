package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/kanal-server/kanal/miniapps/forms"
)

// TestFormHandoffCLI: kanal form handoff writes the parts of a FIT-Connect
// submission that the specialist system decrypts with go-jose, with the
// hashes of data and attachment in the metadata; a key whose chain does
// not reach the configured CA, and answers that do not fit, write nothing.
func TestFormHandoffCLI(t *testing.T) {
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	write := func(n string, b []byte) {
		if err := os.WriteFile(path(n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	mkCA := func() (*ecdsa.PrivateKey, *x509.Certificate) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Fachverfahren-CA"}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		c, _ := x509.ParseCertificate(der)
		return k, c
	}
	caKey, caCert := mkCA()
	otherKey, otherCert := mkCA()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	jwkFor := func(signer *ecdsa.PrivateKey, parent *x509.Certificate) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Hundesteuer-Fachverfahren"}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, parent, &rsaKey.PublicKey, signer)
		b, _ := json.Marshal(map[string]any{"kty": "RSA", "kid": "fv-1", "alg": "RSA-OAEP-256", "use": "enc",
			"n": base64.RawURLEncoding.EncodeToString(rsaKey.N.Bytes()), "e": "AQAB", "x5c": []string{base64.StdEncoding.EncodeToString(der)}})
		return b
	}
	write("fv.jwk", jwkFor(caKey, caCert))
	write("forged.jwk", jwkFor(otherKey, otherCert))
	write("fv-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}))
	_, raw, err := forms.Builtin("hundeanmeldung")
	if err != nil {
		t.Fatal(err)
	}
	write("hund.json", raw)
	answers := []byte(`{"family_name":"Muster","given_name":"Erika","birth_date":"1980-02-03","street":"Hauptstr. 1","postcode":"64283",
"city":"Darmstadt","dog_name":"Bello","breed":"Labrador","sex":"male","dog_birth_date":"2024-05-01","keeping_since":"2026-11-20",
"dangerous":true,"insured":false,"reduction":false,"moved_here":false}`)
	write("answers.json", answers)
	write("bad.json", []byte(`{"postcode":"6428"}`))
	proof := []byte("%PDF-1.7 Sachkundenachweis")
	write("sachkunde.pdf", proof)
	env := map[string]string{"KANAL_HOME": path("home")}

	code, out := runKanal(t, env, "form", "handoff", path("hund.json"), "--answers", path("answers.json"), "--attach", "competence_proof="+path("sachkunde.pdf"),
		"--key", path("forged.jwk"), "--ca", path("fv-ca.pem"), "--dir", path("forged"))
	if code != 1 || !strings.Contains(out, "configured CA") {
		t.Fatalf("forged key: %d %s", code, out)
	}
	code, out = runKanal(t, env, "form", "handoff", path("hund.json"), "--answers", path("bad.json"), "--key", path("fv.jwk"), "--ca", path("fv-ca.pem"), "--dir", path("bad"))
	if code != 1 || !strings.Contains(out, "postcode: Die Angabe hat nicht das verlangte Format. / The answer does not have the required format.") {
		t.Fatalf("bad answers: %d %s", code, out)
	}
	for _, d := range []string{"forged", "bad"} {
		if _, err := os.Stat(path(d)); !os.IsNotExist(err) {
			t.Fatalf("%s written: %v", d, err)
		}
	}
	code, out = runKanal(t, env, "form", "handoff", path("hund.json"), "--answers", path("answers.json"), "--attach", "competence_proof="+path("sachkunde.pdf"),
		"--key", path("fv.jwk"), "--ca", path("fv-ca.pem"), "--dir", path("out"))
	if code != 0 || !strings.Contains(out, "1 attachments") {
		t.Fatalf("handoff: %d %s", code, out)
	}
	var h forms.Handoff
	b, _ := os.ReadFile(path("out/handoff.json"))
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	open := func(c string) []byte {
		obj, err := jose.ParseEncrypted(c, []jose.KeyAlgorithm{jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil {
			t.Fatal(err)
		}
		p, err := obj.Decrypt(rsaKey)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var md struct {
		ContentStructure struct {
			Data        struct{ Hash struct{ Content string } } `json:"data"`
			Attachments []struct {
				Hash         struct{ Content string }
				AttachmentID string `json:"attachmentId"`
				MimeType     string `json:"mimeType"`
			} `json:"attachments"`
		} `json:"contentStructure"`
	}
	if err := json.Unmarshal(open(h.Metadata), &md); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }
	data := open(h.Data)
	att := open(h.Attachments[0].JWE)
	cs := md.ContentStructure
	if string(data) != string(answers) || cs.Data.Hash.Content != sum(data) || string(att) != string(proof) ||
		cs.Attachments[0].Hash.Content != sum(att) || cs.Attachments[0].MimeType != "application/pdf" {
		t.Fatalf("hand-off does not match: %+v", cs)
	}
}
