package orgsig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"
)

// Algorithms: what device keys can make.
const (
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// b64url is base64url without padding that refuses set spare bits: each
// byte string has exactly one encoding. (Decoders, this one included,
// skip CR and LF, which compact checks before decoding.)
var b64url = base64.RawURLEncoding.Strict()

// p256HalfOrder is ⌊n/2⌋ of P-256: kanal's ES256 signatures have s at
// most this ("low s"), so that nobody but the signer can make a second
// valid signature (r, n − s) — and a second contract id — from a document.
var p256HalfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// Compact is a parsed, not yet verified, compact JWS.
type Compact struct {
	Input   []byte // the signing input exactly as received: header "." payload
	Alg     string
	X5C     [][]byte // DER, the leaf first
	Extra   json.RawMessage
	Payload []byte
	Sig     []byte
}

// Parse splits s into its three parts, each of which must be
// canonical base64url, and checks the protected header's members by
// value: exactly alg (ES256 or EdDSA), typ (== typ), x5c and the member
// named extra, each once, in any order and with any JSON whitespace.
// Nothing else is allowed: crit (no extension is implemented), and any
// other member, is refused, each with its reason.
func Parse(s string, max int, typ, extra string) (*Compact, error) {
	if len(s) == 0 || len(s) > max {
		return nil, fmt.Errorf("%w: size %d", ErrMalformed, len(s))
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: %d parts, a compact JWS has 3", ErrMalformed, len(parts))
	}
	var dec [3][]byte
	for i, p := range parts {
		for j := 0; j < len(p); j++ {
			c := p[j]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return nil, fmt.Errorf("%w: %s: character %q is not base64url", ErrMalformed, partName[i], c)
			}
		}
		b, err := b64url.DecodeString(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not canonical base64url (spare bits set or bad length): %v", ErrMalformed, partName[i], err)
		}
		dec[i] = b
	}
	members, err := headerMembers(dec[0])
	if err != nil {
		return nil, err
	}
	if c, ok := members["crit"]; ok {
		return nil, fmt.Errorf("%w: header crit %s: kanal implements no JWS extension", ErrMalformed, c)
	}
	for name := range members {
		if name != "alg" && name != "typ" && name != "x5c" && name != extra {
			return nil, fmt.Errorf("%w: header member %q is not allowed in a %s", ErrMalformed, name, typ)
		}
	}
	c := &Compact{Input: []byte(parts[0] + "." + parts[1]), Payload: dec[1], Sig: dec[2], Extra: members[extra]}
	// RFC 7515 §4.1.9: "typ" is a media type, case-insensitive, with
	// "application/" implied when it has no "/".
	var gotTyp string
	if err := json.Unmarshal(members["typ"], &gotTyp); err != nil || strings.TrimPrefix(strings.ToLower(gotTyp), "application/") != typ {
		return nil, fmt.Errorf("%w: typ %s, want %q", ErrMalformed, members["typ"], typ)
	}
	if err := json.Unmarshal(members["alg"], &c.Alg); err != nil || (c.Alg != algES256 && c.Alg != algEdDSA) {
		return nil, fmt.Errorf("%w: alg %s, want %q or %q", ErrMalformed, members["alg"], algES256, algEdDSA)
	}
	var x5c []string
	if err := json.Unmarshal(members["x5c"], &x5c); err != nil || len(x5c) == 0 || len(x5c) > 4 {
		return nil, fmt.Errorf("%w: header x5c must hold 1 to 4 certificates", ErrMalformed)
	}
	for _, s := range x5c {
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || strings.ContainsAny(s, "\r\n") {
			return nil, fmt.Errorf("%w: header x5c: not standard base64", ErrMalformed)
		}
		c.X5C = append(c.X5C, der)
	}
	return c, nil
}

var partName = [3]string{"header", "payload", "signature"}

// headerMembers reads a JSON object's members as raw values, refusing a
// member named twice (which implementations resolve differently).
func headerMembers(b []byte) (map[string]json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: header: "+format, append([]any{ErrMalformed}, args...)...)
	}
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, bad("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return nil, bad("%v", err)
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, bad("%v", err)
		}
		if _, dup := m[name]; dup {
			return nil, bad("member %q named twice", name)
		}
		m[name] = v
	}
	if t, err := d.Token(); err != nil || t != json.Delim('}') {
		return nil, bad("not a JSON object")
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("trailing data")
	}
	return m, nil
}

// VerifyChain checks the x5c chain to roots at at (client authentication,
// as device certificates are) and the signature with the leaf's key over
// the signing input as received. It returns the leaf's DER.
func (c *Compact) VerifyChain(roots *x509.CertPool, at time.Time) ([]byte, error) {
	certs := make([]*x509.Certificate, len(c.X5C))
	for i, der := range c.X5C {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: x5c: %v", ErrCertificate, err)
		}
		certs[i] = cert
	}
	inter := x509.NewCertPool()
	for _, cert := range certs[1:] {
		inter.AddCert(cert)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: x5c: %v", ErrCertificate, err)
	}
	if err := verifySig(c.Alg, certs[0].PublicKey, c.Input, c.Sig); err != nil {
		return nil, err
	}
	return certs[0].Raw, nil
}

func verifySig(alg string, pub crypto.PublicKey, input, sig []byte) error {
	switch key := pub.(type) {
	case *ecdsa.PublicKey:
		if alg != algES256 || key.Curve != elliptic.P256() {
			return fmt.Errorf("%w: alg %s does not fit the certificate's ECDSA key", ErrSignature, alg)
		}
		if len(sig) != 64 {
			return fmt.Errorf("%w: an ES256 signature has 64 bytes, not %d", ErrSignature, len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if s.Cmp(p256HalfOrder) > 0 {
			return fmt.Errorf("%w: ES256 s above n/2 (kanal signs and accepts only low s)", ErrSignature)
		}
		h := sha256.Sum256(input)
		if !ecdsa.Verify(key, h[:], r, s) {
			return fmt.Errorf("%w: ES256 signature does not verify", ErrSignature)
		}
	case ed25519.PublicKey:
		if alg != algEdDSA {
			return fmt.Errorf("%w: alg %s does not fit the certificate's Ed25519 key", ErrSignature, alg)
		}
		// crypto/ed25519 refuses a non-canonical S (≥ ℓ): no second
		// encoding of one signature verifies.
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(key, input, sig) {
			return fmt.Errorf("%w: EdDSA signature does not verify", ErrSignature)
		}
	default:
		return fmt.Errorf("%w: certificate key %T", ErrCertificate, pub)
	}
	return nil
}

// Sign makes a compact JWS: the header is the JSON object of alg,
// typ, x5c and extra (Go's encoding, members in name order), ES256
// signatures are r ‖ s with s ≤ n/2. The key may be any crypto.Signer of
// an Ed25519 or P-256 key, such as the web app's WebCrypto device key,
// whose private half Go never holds.
func Sign(key crypto.Signer, typ string, certDER []byte, extraName string, extra any, payload []byte) (string, error) {
	var alg string
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: ECDSA key is not P-256", ErrCertificate)
		}
		alg = algES256
	case ed25519.PublicKey:
		alg = algEdDSA
	default:
		return "", fmt.Errorf("%w: device key %T", ErrCertificate, k)
	}
	header, err := json.Marshal(map[string]any{"alg": alg, "typ": typ,
		"x5c": []string{base64.StdEncoding.EncodeToString(certDER)}, extraName: extra})
	if err != nil {
		return "", fmt.Errorf("jws: header: %w", err)
	}
	input := b64url.EncodeToString(header) + "." + b64url.EncodeToString(payload)
	var sig []byte
	switch alg {
	case algES256:
		h := sha256.Sum256([]byte(input))
		asn, err := key.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			return "", fmt.Errorf("jws: sign: %w", err)
		}
		n := elliptic.P256().Params().N
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(asn, &rs); err != nil || len(rest) != 0 || rs.R == nil || rs.S == nil ||
			rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.Cmp(n) >= 0 || rs.S.Cmp(n) >= 0 {
			return "", errors.New("jws: sign: the key made no P-256 ECDSA signature")
		}
		if rs.S.Cmp(p256HalfOrder) > 0 {
			rs.S.Sub(n, rs.S)
		}
		sig = make([]byte, 64)
		rs.R.FillBytes(sig[:32])
		rs.S.FillBytes(sig[32:])
	case algEdDSA:
		// Ed25519 signs the message itself, not a digest.
		if sig, err = key.Sign(rand.Reader, []byte(input), crypto.Hash(0)); err != nil {
			return "", fmt.Errorf("jws: sign: %w", err)
		}
	}
	return input + "." + b64url.EncodeToString(sig), nil
}
