package forms

import (
	"bytes"
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
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// specialist is a specialist system (Fachverfahren): its CA, as the
// operator configures it, and its RSA encryption key with a certificate.
type specialist struct {
	caKey  *ecdsa.PrivateKey
	ca     *x509.Certificate
	key    *rsa.PrivateKey
	cert   *x509.Certificate
	roots  *x509.CertPool
	weak   *rsa.PrivateKey // 2048 bits
	weakCt *x509.Certificate
}

var (
	specialistOnce sync.Once
	theSpecialist  *specialist
)

func newSpecialist(t testing.TB) *specialist {
	t.Helper()
	specialistOnce.Do(func() {
		s := &specialist{}
		s.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Fachverfahren-CA Musterland"},
			NotBefore: t0.Add(-48 * time.Hour), NotAfter: t0.Add(5 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.caKey.Public(), s.caKey)
		if err != nil {
			panic(err)
		}
		s.ca, _ = x509.ParseCertificate(der)
		s.roots = x509.NewCertPool()
		s.roots.AddCert(s.ca)
		s.key, _ = rsa.GenerateKey(rand.Reader, 4096)
		s.cert = s.issue(s.key, 2, t0.Add(-time.Hour), t0.Add(365*24*time.Hour), s.caKey, s.ca)
		s.weak, _ = rsa.GenerateKey(rand.Reader, 2048)
		s.weakCt = s.issue(s.weak, 3, t0.Add(-time.Hour), t0.Add(365*24*time.Hour), s.caKey, s.ca)
		theSpecialist = s
	})
	return theSpecialist
}

func (s *specialist) issue(key *rsa.PrivateKey, serial int64, from, to time.Time, signer *ecdsa.PrivateKey, parent *x509.Certificate) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "Hundesteuer-Fachverfahren"},
		NotBefore: from, NotAfter: to, KeyUsage: x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// jwkOf writes the public JWK of key with chain as x5c, as a specialist
// system publishes it.
func jwkOf(key *rsa.PublicKey, edit func(m map[string]any), chain ...*x509.Certificate) []byte {
	var x5c []string
	for _, c := range chain {
		x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
	}
	m := map[string]any{"kty": "RSA", "kid": "fv-hundesteuer-2026", "alg": "RSA-OAEP-256", "use": "enc", "key_ops": []string{"wrapKey"},
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()), "x5c": x5c}
	if edit != nil {
		edit(m)
	}
	b, _ := json.Marshal(m)
	return b
}

// TestHandoffDecryptsWithGoJose: the specialist system decrypts the data,
// every attachment and the metadata with go-jose (not kanal's code), and
// the metadata's SHA-512 hashes match what it decrypted.
func TestHandoffDecryptsWithGoJose(t *testing.T) {
	s := newSpecialist(t)
	tpl := dog(t)
	key, err := ParseHandoffKey(jwkOf(&s.key.PublicKey, nil, s.cert), s.roots, t0)
	if err != nil {
		t.Fatal(err)
	}
	answers := []byte(strings.Replace(goodDog, `"dangerous":false`, `"dangerous":true`, 1))
	proof := bytes.Repeat([]byte("%PDF-1.7 Sachkundenachweis "), 500)
	files := []HandoffFile{{Name: "competence_proof", Filename: "sachkunde.pdf", MediaType: "application/pdf", Content: proof}}
	h, err := tpl.Handoff(key, answers, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	decrypt := func(compact string) ([]byte, string) {
		t.Helper()
		obj, err := jose.ParseEncrypted(compact, []jose.KeyAlgorithm{jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil {
			t.Fatal(err)
		}
		if obj.Header.KeyID != "fv-hundesteuer-2026" {
			t.Fatalf("kid %q", obj.Header.KeyID)
		}
		plain, err := obj.Decrypt(s.key)
		if err != nil {
			t.Fatal(err)
		}
		cty, _ := obj.Header.ExtraHeaders["cty"].(string)
		return plain, cty
	}
	data, _ := decrypt(h.Data)
	if !bytes.Equal(data, answers) {
		t.Fatal("the data is not the answers")
	}
	mdJSON, cty := decrypt(h.Metadata)
	if cty != "application/json" {
		t.Fatalf("cty %q", cty)
	}
	var md struct {
		Schema           string `json:"$schema"`
		ContentStructure struct {
			Data struct {
				Hash             struct{ Type, Content string }
				SubmissionSchema struct {
					SchemaURI string `json:"schemaUri"`
					MimeType  string `json:"mimeType"`
				} `json:"submissionSchema"`
			} `json:"data"`
			Attachments []struct {
				Hash         struct{ Type, Content string }
				Purpose      string `json:"purpose"`
				Filename     string `json:"filename"`
				MimeType     string `json:"mimeType"`
				AttachmentID string `json:"attachmentId"`
			} `json:"attachments"`
		} `json:"contentStructure"`
	}
	if err := json.Unmarshal(mdJSON, &md); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { h := sha512.Sum512(b); return hex.EncodeToString(h[:]) }
	cs := md.ContentStructure
	if md.Schema != MetadataSchema || cs.Data.Hash.Type != "sha512" || cs.Data.Hash.Content != sum(data) ||
		cs.Data.SubmissionSchema.SchemaURI != tpl.SchemaURI() || cs.Data.SubmissionSchema.MimeType != "application/json" {
		t.Fatalf("metadata %s", mdJSON)
	}
	if len(cs.Attachments) != 1 || len(h.Attachments) != 1 || cs.Attachments[0].AttachmentID != h.Attachments[0].AttachmentID {
		t.Fatalf("attachments %s", mdJSON)
	}
	att, _ := decrypt(h.Attachments[0].JWE)
	a := cs.Attachments[0]
	if !bytes.Equal(att, proof) || a.Hash.Type != "sha512" || a.Hash.Content != sum(att) || a.Purpose != "attachment" ||
		a.Filename != "sachkunde.pdf" || a.MimeType != "application/pdf" || len(a.AttachmentID) != 36 {
		t.Fatalf("attachment %+v", a)
	}
	// Each JWE has its own content key and IV.
	if strings.Split(h.Data, ".")[2] == strings.Split(h.Metadata, ".")[2] {
		t.Fatal("IV reused")
	}
}

// TestAttackHandoffKey: a key without a valid chain to the configured CA,
// or not fit for the hand-off, is refused and nothing is encrypted.
func TestAttackHandoffKey(t *testing.T) {
	s := newSpecialist(t)
	otherCA, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	selfTmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "Fachverfahren-CA Musterland"},
		NotBefore: t0.Add(-48 * time.Hour), NotAfter: t0.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, selfTmpl, selfTmpl, otherCA.Public(), otherCA)
	fakeCA, _ := x509.ParseCertificate(der)
	forged := s.issue(s.key, 4, t0.Add(-time.Hour), t0.Add(time.Hour), otherCA, fakeCA)
	expired := s.issue(s.key, 5, t0.Add(-48*time.Hour), t0.Add(-24*time.Hour), s.caKey, s.ca)
	for name, key := range map[string][]byte{
		"signed by another CA of the same name": jwkOf(&s.key.PublicKey, nil, forged, fakeCA),
		"expired certificate":                   jwkOf(&s.key.PublicKey, nil, expired),
		"no x5c":                                jwkOf(&s.key.PublicKey, nil),
		"x5c for another key":                   jwkOf(&s.key.PublicKey, nil, s.weakCt),
		"2048 bits":                             jwkOf(&s.weak.PublicKey, nil, s.weakCt),
		"alg RSA1_5":                            jwkOf(&s.key.PublicKey, func(m map[string]any) { m["alg"] = "RSA1_5" }, s.cert),
		"signing key":                           jwkOf(&s.key.PublicKey, func(m map[string]any) { m["use"] = "sig"; m["key_ops"] = []string{"verify"} }, s.cert),
		"no kid":                                jwkOf(&s.key.PublicKey, func(m map[string]any) { delete(m, "kid") }, s.cert),
		"x5t#S256 of another certificate":       jwkOf(&s.key.PublicKey, func(m map[string]any) { m["x5t#S256"] = "AAAA" }, s.cert),
		"EC key":                                []byte(`{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"k","alg":"ECDH-ES"}`),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseHandoffKey(key, s.roots, t0); !errors.Is(err, ErrHandoff) {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
	if _, err := ParseHandoffKey(jwkOf(&s.key.PublicKey, nil, s.cert), nil, t0); !errors.Is(err, ErrHandoff) {
		t.Fatal("a key accepted without a configured CA")
	}
	// Answers that do not fit the form are not handed off.
	key, _ := ParseHandoffKey(jwkOf(&s.key.PublicKey, nil, s.cert), s.roots, t0)
	if _, err := dog(t).Handoff(key, []byte(`{"postcode":"1"}`), nil, nil); !errors.Is(err, ErrAnswers) {
		t.Fatalf("bad answers handed off: %v", err)
	}
	if _, err := dog(t).Handoff(nil, []byte(goodDog), nil, nil); !errors.Is(err, ErrHandoff) {
		t.Fatal("handed off without a key")
	}
}
