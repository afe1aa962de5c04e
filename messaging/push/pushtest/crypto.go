package pushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// Decrypt opens an RFC 8291 push message (the aes128gcm content coding of
// RFC 8188 with a single record) as the user agent does, with the
// subscription's private key and auth secret.
func Decrypt(body []byte, ua *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	// Header: salt (16) || rs (4) || idlen (1) || keyid (idlen). In web
	// push the keyid is the application server's one-time public key.
	const hdr = 16 + 4 + 1
	if len(body) < hdr {
		return nil, errors.New("pushtest: message shorter than its header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if idlen != 65 {
		return nil, fmt.Errorf("pushtest: keyid is %d bytes, want a 65-byte P-256 point", idlen)
	}
	if len(body) < hdr+idlen {
		return nil, errors.New("pushtest: message shorter than its header")
	}
	asPublic, ct := body[hdr:hdr+idlen], body[hdr+idlen:]
	// RFC 8291 section 4: a push message is one record, so rs must hold
	// the whole ciphertext, and a record is at least tag plus delimiter.
	if rs < 18 || uint64(len(ct)) > uint64(rs) || len(ct) < 17 {
		return nil, errors.New("pushtest: not a single aes128gcm record")
	}
	as, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, fmt.Errorf("pushtest: keyid: %w", err)
	}
	shared, err := ua.ECDH(as)
	if err != nil {
		return nil, fmt.Errorf("pushtest: ecdh: %w", err)
	}
	// Section 3.3: the auth secret salts the combination of the ECDH
	// secret with both public keys, so only holders of the auth secret —
	// not the push service, which sees the keys — can derive the key.
	keyInfo := "WebPush: info\x00" + string(ua.PublicKey().Bytes()) + string(asPublic)
	ikm, err := hkdf.Key(sha256.New, shared, auth, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	// RFC 8188 section 2.2 and 2.3: CEK and nonce from the message's salt.
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// The first (and only) record's sequence number is 0: the nonce as is.
	pt, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, errors.New("pushtest: record does not authenticate")
	}
	// Padding: the data, a delimiter (2 for the last record), then zeros.
	i := len(pt) - 1
	for i >= 0 && pt[i] == 0 {
		i--
	}
	if i < 0 || pt[i] != 2 {
		return nil, errors.New("pushtest: last record lacks its 0x02 delimiter")
	}
	return pt[:i], nil
}

// Claims are the VAPID token's claims (RFC 8292 section 2).
type Claims struct {
	Aud string `json:"aud"`
	Exp int64  `json:"exp"`
	Sub string `json:"sub"`
}

// VerifyVAPID checks an Authorization header of the "vapid" scheme for a
// push to endpoint at now: an ES256 JWT signed by the key in k, aud the
// origin of the endpoint, exp in the future and at most 24 hours ahead,
// and a sub to contact the sender. It returns the claims and the key.
func VerifyVAPID(authorization, endpoint string, now time.Time) (Claims, []byte, error) {
	var c Claims
	scheme, params, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "vapid") {
		return c, nil, errors.New("pushtest: Authorization is not the vapid scheme")
	}
	var tok, k string
	for _, p := range strings.Split(params, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch name {
		case "t":
			tok = val
		case "k":
			k = val
		}
	}
	key, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		return c, nil, errors.New("pushtest: k is not base64url")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), key)
	if err != nil {
		return c, nil, fmt.Errorf("pushtest: k: %w", err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, nil, errors.New("pushtest: t is not a JWT")
	}
	var head struct{ Typ, Alg string }
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &head) != nil || head.Alg != "ES256" {
		return c, nil, errors.New("pushtest: JWT header is not ES256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return c, nil, errors.New("pushtest: ES256 signature must be 64 bytes r||s")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return c, nil, errors.New("pushtest: JWT signature does not verify with k")
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(cb, &c) != nil {
		return c, nil, errors.New("pushtest: JWT claims are not JSON")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return c, nil, err
	}
	switch exp := time.Unix(c.Exp, 0); {
	case c.Aud != u.Scheme+"://"+u.Host:
		return c, nil, fmt.Errorf("pushtest: aud %q is not the push resource's origin %s://%s", c.Aud, u.Scheme, u.Host)
	case !exp.After(now):
		return c, nil, errors.New("pushtest: JWT expired")
	case exp.After(now.Add(24 * time.Hour)):
		return c, nil, fmt.Errorf("pushtest: exp is %s ahead, more than 24 hours", exp.Sub(now).Round(time.Second))
	case !strings.HasPrefix(c.Sub, "mailto:") && !strings.HasPrefix(c.Sub, "https:"):
		return c, nil, fmt.Errorf("pushtest: sub %q is not a mailto: or https: contact", c.Sub)
	}
	return c, key, nil
}
