package pushtest

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

type vector struct {
	Plaintext, ASPublic, ASPrivate, UAPublic, UAPrivate, Salt, AuthSecret, Message string
}

func loadVector(t testing.TB) (v vector, b func(string) []byte) {
	raw, err := os.ReadFile("testdata/rfc8291.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	v = vector{m["plaintext"], m["as_public"], m["as_private"], m["ua_public"], m["ua_private"], m["salt"], m["auth_secret"], m["message"]}
	return v, func(s string) []byte {
		out, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("vector %q: %v", s, err)
		}
		return out
	}
}

// TestDecryptRFC8291 opens the RFC's example message with the user
// agent's keys and gets the RFC's plaintext.
func TestDecryptRFC8291(t *testing.T) {
	v, b := loadVector(t)
	ua, err := ecdh.P256().NewPrivateKey(b(v.UAPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ua.PublicKey().Bytes(), b(v.UAPublic)) {
		t.Fatal("ua_public does not belong to ua_private")
	}
	as, err := ecdh.P256().NewPrivateKey(b(v.ASPrivate))
	if err != nil || !bytes.Equal(as.PublicKey().Bytes(), b(v.ASPublic)) {
		t.Fatal("as_public does not belong to as_private")
	}
	msg := b(v.Message)
	if !bytes.Equal(msg[:16], b(v.Salt)) || !bytes.Equal(msg[21:86], b(v.ASPublic)) {
		t.Fatal("message header does not hold the vector's salt and as_public")
	}
	pt, err := Decrypt(msg, ua, b(v.AuthSecret))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pt, b(v.Plaintext)) || string(pt) != "When I grow up, I want to be a watermelon" {
		t.Fatalf("decrypted %q", pt)
	}
}

// TestDecryptRefusesTampering flips every byte of the example in turn and
// uses a wrong auth secret: each must fail, none may yield the plaintext.
func TestDecryptRefusesTampering(t *testing.T) {
	v, b := loadVector(t)
	ua, _ := ecdh.P256().NewPrivateKey(b(v.UAPrivate))
	msg, auth := b(v.Message), b(v.AuthSecret)
	for i := range msg {
		m := bytes.Clone(msg)
		m[i] ^= 0x01
		if i >= 16 && i < 20 {
			// rs: any record size that still holds the single record is
			// as valid as the original, and rs is not authenticated.
			continue
		}
		if _, err := Decrypt(m, ua, auth); err == nil {
			t.Errorf("byte %d flipped: decrypted", i)
		}
	}
	wrong := bytes.Clone(auth)
	wrong[0] ^= 1
	if _, err := Decrypt(msg, ua, wrong); err == nil {
		t.Error("decrypted with a wrong auth secret")
	}
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := Decrypt(msg, other, auth); err == nil {
		t.Error("decrypted with another subscription's key")
	}
	if _, err := Decrypt(msg[:len(msg)-1], ua, auth); err == nil {
		t.Error("decrypted a truncated message")
	}
}

func FuzzDecrypt(f *testing.F) {
	v, b := loadVector(f)
	ua, _ := ecdh.P256().NewPrivateKey(b(v.UAPrivate))
	auth := b(v.AuthSecret)
	f.Add(b(v.Message))
	f.Add([]byte{})
	f.Add(make([]byte, 86))
	f.Fuzz(func(t *testing.T, msg []byte) {
		pt, err := Decrypt(msg, ua, auth)
		if err == nil && len(pt) >= len(msg) {
			t.Fatalf("plaintext of %d bytes from a %d-byte message", len(pt), len(msg))
		}
	})
}

// token signs claims as a VAPID JWT with key.
func token(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"typ":"JWT","alg":"ES256"}`))
	c, _ := json.Marshal(claims)
	signed := h + "." + enc.EncodeToString(c)
	d := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	pub, _ := key.PublicKey.Bytes()
	return "vapid t=" + signed + "." + enc.EncodeToString(sig) + ", k=" + enc.EncodeToString(pub)
}

func TestVerifyVAPID(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const ep = "https://push.example:8443/push/abc"
	good := map[string]any{"aud": "https://push.example:8443", "exp": now.Add(12 * time.Hour).Unix(), "sub": "mailto:ops@example.org"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	if c, _, err := VerifyVAPID(token(t, key, good), ep, now); err != nil || c.Sub != "mailto:ops@example.org" {
		t.Fatalf("good token: %v %+v", err, c)
	}
	// A signature by one key presented with another.
	forged := token(t, other, good)
	forged = forged[:strings.Index(forged, "k=")] + token(t, key, good)[strings.Index(token(t, key, good), "k="):]
	for name, authz := range map[string]string{
		"wrong aud":         token(t, key, with("aud", "https://push.example")),
		"expired":           token(t, key, with("exp", now.Add(-time.Minute).Unix())),
		"exp beyond 24h":    token(t, key, with("exp", now.Add(25*time.Hour).Unix())),
		"no sub":            token(t, key, with("sub", "")),
		"signed by another": forged,
		"bearer scheme":     "Bearer abc",
		"no token":          "vapid k=abc",
	} {
		if _, _, err := VerifyVAPID(authz, ep, now); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
