package forms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"time"
)

// The hand-off to a specialist system (Fachverfahren) follows FIT-Connect's
// submission format with metadata schema 1.2.0
// (https://schema.fitko.de/fit-connect/metadata/1.2.0/metadata.schema.json):
// the data (Fachdaten), each attachment and the metadata record are each
// encrypted as a compact JWE (RFC 7516) with alg RSA-OAEP-256 and enc
// A256GCM to the specialist system's public encryption key, and the
// metadata's contentStructure carries the SHA-512 of the data and of
// every attachment, taken over the plaintext, so that no system in between
// can swap one. docs/forms.md describes it.

// MetadataSchema is the FIT-Connect metadata schema the hand-off follows.
const MetadataSchema = "https://schema.fitko.de/fit-connect/metadata/1.2.0/metadata.schema.json"

// MinHandoffRSABits is the smallest key the hand-off encrypts to, as
// FIT-Connect requires of encryption keys.
const MinHandoffRSABits = 4096

// HandoffKey is a specialist system's public encryption key whose x5c
// chain verified.
type HandoffKey struct {
	KID  string
	pub  *rsa.PublicKey
	Cert *x509.Certificate // the key's certificate, x5c[0]
}

// jwk is the members of an RSA public JWK (RFC 7517) the hand-off reads.
type jwk struct {
	Kty    string   `json:"kty"`
	KID    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X5C    []string `json:"x5c"`
	X5T256 string   `json:"x5t#S256,omitempty"`
}

// ParseHandoffKey reads a specialist system's public key, a JWK, and
// verifies it: RSA of at least MinHandoffRSABits for alg RSA-OAEP-256,
// for encryption (use "enc" or key_ops "wrapKey"), a kid, and an x5c
// chain whose first certificate holds exactly this key and chains to
// roots — the CA the operator configured for specialist systems — at now.
// Any other key is refused with ErrHandoff: nothing is encrypted to it.
func ParseHandoffKey(b []byte, roots *x509.CertPool, now time.Time) (*HandoffKey, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("forms.handoff: %w: key: "+format, append([]any{ErrHandoff}, args...)...)
	}
	if roots == nil {
		return nil, bad("no CA configured for specialist systems")
	}
	if len(b) > 64<<10 {
		return nil, bad("%d bytes", len(b))
	}
	var k jwk
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&k); err != nil {
		return nil, bad("not a JWK: %v", err)
	}
	switch {
	case k.Kty != "RSA":
		return nil, bad("kty %q, want RSA", k.Kty)
	case k.Alg != "RSA-OAEP-256":
		return nil, bad("alg %q, want RSA-OAEP-256", k.Alg)
	case k.KID == "":
		return nil, bad("no kid")
	case k.Use != "enc" && !contains(k.KeyOps, "wrapKey"):
		return nil, bad("not an encryption key (use enc or key_ops wrapKey)")
	case len(k.X5C) == 0 || len(k.X5C) > 4:
		return nil, bad("no certificate chain (x5c)")
	}
	n, err1 := base64.RawURLEncoding.DecodeString(k.N)
	e, err2 := base64.RawURLEncoding.DecodeString(k.E)
	if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
		return nil, bad("n or e is not base64url")
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if pub.N.BitLen() < MinHandoffRSABits {
		return nil, bad("%d-bit RSA, at least %d", pub.N.BitLen(), MinHandoffRSABits)
	}
	var certs []*x509.Certificate
	for i, s := range k.X5C {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, bad("x5c[%d] is not base64", i)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, bad("x5c[%d]: %v", i, err)
		}
		certs = append(certs, c)
	}
	leaf := certs[0]
	if lp, ok := leaf.PublicKey.(*rsa.PublicKey); !ok || !lp.Equal(pub) {
		return nil, bad("the certificate x5c[0] is not for this key")
	}
	if k.X5T256 != "" {
		h := sha256.Sum256(leaf.Raw)
		if base64.RawURLEncoding.EncodeToString(h[:]) != k.X5T256 {
			return nil, bad("x5t#S256 does not match x5c[0]")
		}
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		return nil, bad("the certificate does not allow key encipherment")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, bad("the certificate chain does not verify against the configured CA: %v", err)
	}
	return &HandoffKey{KID: k.KID, pub: pub, Cert: leaf}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// HandoffFile is one attachment of a submission, decrypted on the agent's
// device.
type HandoffFile struct {
	Name      string // the template's attachment name
	Filename  string
	MediaType string
	Content   []byte
}

// Handoff is a submission in FIT-Connect's format: each part a compact
// JWE to the specialist system's key.
type Handoff struct {
	Metadata    string              `json:"encryptedMetadata"`
	Data        string              `json:"encryptedData"`
	Attachments []HandoffAttachment `json:"attachments"`
}

// HandoffAttachment is one encrypted attachment, named by the id the
// metadata gives it.
type HandoffAttachment struct {
	AttachmentID string `json:"attachmentId"`
	JWE          string `json:"encryptedAttachment"`
}

// metadata is FIT-Connect's metadata record (the members kanal fills).
type metadata struct {
	Schema           string           `json:"$schema"`
	ContentStructure contentStructure `json:"contentStructure"`
}

type contentStructure struct {
	Data        *dataStructure `json:"data,omitempty"`
	Attachments []attachmentMD `json:"attachments"`
}

type dataStructure struct {
	Hash             hashMD           `json:"hash"`
	SubmissionSchema submissionSchema `json:"submissionSchema"`
}

type submissionSchema struct {
	SchemaURI string `json:"schemaUri"`
	MimeType  string `json:"mimeType"`
}

type attachmentMD struct {
	Hash         hashMD `json:"hash"`
	Purpose      string `json:"purpose"`
	Filename     string `json:"filename,omitempty"`
	Description  string `json:"description,omitempty"`
	MimeType     string `json:"mimeType"`
	AttachmentID string `json:"attachmentId"`
}

type hashMD struct {
	Type    string `json:"type"`    // sha512
	Content string `json:"content"` // lowercase hex
}

func sha512Hex(b []byte) hashMD {
	h := sha512.Sum512(b)
	return hashMD{Type: "sha512", Content: hex.EncodeToString(h[:])}
}

// SchemaURI names a template version as FIT-Connect's submissionSchema
// does: the template's id, version and hash.
func (t *Template) SchemaURI() string {
	return "urn:kanal:form-template:" + t.ID + ":" + t.Version + ":" + t.Hash()
}

// Handoff checks a decrypted submission against the template — the
// answers and every attachment's name, media type and size, exactly as
// the citizen's device did — and encrypts it for the specialist system:
// the answers as the data, each attachment, and the metadata record with
// their SHA-512 hashes, each as a compact JWE to key. rnd is the source
// of keys and nonces (nil: crypto/rand).
func (t *Template) Handoff(key *HandoffKey, answers []byte, files []HandoffFile, rnd io.Reader) (*Handoff, error) {
	if key == nil {
		return nil, fmt.Errorf("forms.handoff: %w: no verified key", ErrHandoff)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	infos := make([]AttachmentInfo, len(files))
	for i, f := range files {
		infos[i] = AttachmentInfo{Name: f.Name, MediaType: f.MediaType, Size: int64(len(f.Content))}
	}
	if errs := t.Check(answers, infos); errs != nil {
		return nil, fmt.Errorf("forms.handoff: %w", errs)
	}
	md := metadata{Schema: MetadataSchema, ContentStructure: contentStructure{
		Data:        &dataStructure{Hash: sha512Hex(answers), SubmissionSchema: submissionSchema{SchemaURI: t.SchemaURI(), MimeType: "application/json"}},
		Attachments: []attachmentMD{},
	}}
	out := &Handoff{Attachments: []HandoffAttachment{}}
	for _, f := range files {
		id, err := uuid4(rnd)
		if err != nil {
			return nil, err
		}
		desc := ""
		if fl := t.fields[f.Name]; fl != nil {
			desc = fl.Label.DE
		}
		md.ContentStructure.Attachments = append(md.ContentStructure.Attachments, attachmentMD{Hash: sha512Hex(f.Content), Purpose: "attachment",
			Filename: f.Filename, Description: desc, MimeType: f.MediaType, AttachmentID: id})
		jwe, err := encryptJWE(key, f.MediaType, f.Content, rnd)
		if err != nil {
			return nil, err
		}
		out.Attachments = append(out.Attachments, HandoffAttachment{AttachmentID: id, JWE: jwe})
	}
	mdJSON, err := json.Marshal(md)
	if err != nil {
		return nil, err
	}
	if out.Data, err = encryptJWE(key, "application/json", answers, rnd); err != nil {
		return nil, err
	}
	if out.Metadata, err = encryptJWE(key, "application/json", mdJSON, rnd); err != nil {
		return nil, err
	}
	return out, nil
}

// encryptJWE makes a compact JWE (RFC 7516 §7.1): a fresh 256-bit content
// key wrapped with RSAES-OAEP using SHA-256 and MGF1 with SHA-256 (RFC
// 7518 §4.3, "RSA-OAEP-256"), the plaintext sealed with AES-256-GCM under
// a fresh 96-bit IV with the ASCII of the encoded protected header as
// additional data (§5.3, "A256GCM").
func encryptJWE(key *HandoffKey, cty string, plaintext []byte, rnd io.Reader) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.KID, "cty": cty})
	if err != nil {
		return "", err
	}
	cek := make([]byte, 32)
	iv := make([]byte, 12)
	if _, err := io.ReadFull(rnd, cek); err != nil {
		return "", err
	}
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return "", err
	}
	ek, err := rsa.EncryptOAEP(sha256.New(), rnd, key.pub, cek, nil)
	if err != nil {
		return "", fmt.Errorf("forms.handoff: wrap the content key: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return "", err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	h := b64.EncodeToString(header)
	sealed := gcm.Seal(nil, iv, plaintext, []byte(h))
	ct, tag := sealed[:len(sealed)-gcm.Overhead()], sealed[len(sealed)-gcm.Overhead():]
	return h + "." + b64.EncodeToString(ek) + "." + b64.EncodeToString(iv) + "." + b64.EncodeToString(ct) + "." + b64.EncodeToString(tag), nil
}

// uuid4 is a random RFC 9562 version 4 UUID, as FIT-Connect's attachmentId.
func uuid4(rnd io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(rnd, u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}
