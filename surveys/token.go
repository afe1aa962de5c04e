package surveys

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"sync/atomic"

	"filippo.io/bigmod"
	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// Eligibility without identity (anonymous mode).
//
// Every anonymous survey has its own RSA key, made by the server. An
// eligible account asks once for a blind signature (RFC 9474,
// RSABSSA-SHA384-PSS-Randomized): its client picks a random nonce, builds
// the token message below, prepares it (a random 32-byte prefix, so two
// tokens never share a message) and blinds it with a random factor r. The
// server sees only the blinded value m·r^e mod n, which is uniformly
// distributed whatever the message, signs it and records that the account
// got its token. The client unblinds the answer into an ordinary RSA-PSS
// signature on the prepared message. When it votes it shows the prepared
// message and the signature: the server can check them against the
// survey's public key but cannot tell which blinded request they came
// from, since for every pair of request and token there is a blinding
// factor that explains it (TestBlindRequestRevealsNothing shows this).

// tokenVariant is the RFC 9474 variant kanal uses.
const tokenVariant = blindrsa.SHA384PSSRandomized

// tokenContext opens every token message; the survey id follows, so a
// token can only ever count in the survey it was made for, and the server
// can say so before it checks the signature.
const tokenContext = "kanal survey token v1\x00"

// preparePrefix is the random prefix RFC 9474's Prepare adds for the
// randomized variants.
const preparePrefix = 32

// tokenNonce is the size of the client's own random nonce.
const tokenNonce = 32

// maxTokenMessage bounds a prepared token message (survey ids are at most
// ca.MaxIDLength bytes).
const maxTokenMessage = preparePrefix + len(tokenContext) + 128 + 1 + tokenNonce

// Token is an unblinded eligibility token: the prepared message and the
// server's signature on it. Whoever holds it may cast one ballot.
type Token struct {
	Message   []byte `json:"message"`
	Signature []byte `json:"signature"`
}

// GenerateTokenKey makes a survey's blind-signature key.
func GenerateTokenKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, TokenKeyBits)
	if err != nil {
		return nil, fmt.Errorf("surveys: token key: %w", err)
	}
	return k, nil
}

// MarshalTokenPublic returns the PKIX DER of a token key's public half, as
// it appears in the definition.
func MarshalTokenPublic(k *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("surveys: token key: %w", err)
	}
	return der, nil
}

// BlindSign signs a blinded token request with the survey's key. It
// prepares the key on every call; a server that signs many requests with
// one key keeps a TokenSigner.
func BlindSign(k *rsa.PrivateKey, blinded []byte) ([]byte, error) {
	s, err := NewTokenSigner(k)
	if err != nil {
		return nil, err
	}
	return s.BlindSign(blinded)
}

// TokenSigner is a survey's token key prepared for RFC 9474's BlindSign:
// the raw RSA private operation s = m^d mod n on the blinded request m.
//
// It computes s with the Chinese remainder theorem (two exponentiations
// modulo the 1024-bit primes instead of one modulo the 2048-bit n, about
// four times less work) in constant time with filippo.io/bigmod, the
// modular arithmetic of Go's own crypto/rsa. The standard library signs
// only padded messages and circl's BlindSign exponentiates modulo n with
// math/big; the blinded request is already the padded message, so only
// the exponentiation is kanal's, and it is checked: s^e must give m back
// before s leaves the server, which also refuses a signature that a
// fault in one half of the CRT would have made (and which would factor n).
type TokenSigner struct {
	n, p, q *bigmod.Modulus
	dP, dQ  []byte
	qInv    *bigmod.Nat
	e       uint
	size    int
	// signed counts the signatures made: a request the server refuses,
	// or answers from its record, must not cost one (the tests read it).
	signed atomic.Uint64
}

// NewTokenSigner prepares a two-prime RSA key for blind signing.
func NewTokenSigner(k *rsa.PrivateKey) (*TokenSigner, error) {
	if len(k.Primes) != 2 || k.E < 3 {
		return nil, fmt.Errorf("surveys: token key: need a two-prime RSA key")
	}
	pre := k.Precomputed
	if pre.Dp == nil || pre.Dq == nil || pre.Qinv == nil {
		// A key built by hand; ParsePKCS1PrivateKey and GenerateKey
		// precompute. Work on a copy, not the caller's key.
		c := *k
		c.Precompute()
		pre = c.Precomputed
	}
	n, err := bigmod.NewModulus(k.N.Bytes())
	if err != nil {
		return nil, fmt.Errorf("surveys: token key: %w", err)
	}
	p, err := bigmod.NewModulus(k.Primes[0].Bytes())
	if err != nil {
		return nil, fmt.Errorf("surveys: token key: %w", err)
	}
	q, err := bigmod.NewModulus(k.Primes[1].Bytes())
	if err != nil {
		return nil, fmt.Errorf("surveys: token key: %w", err)
	}
	qInv, err := bigmod.NewNat().SetBytes(pre.Qinv.Bytes(), p)
	if err != nil {
		return nil, fmt.Errorf("surveys: token key: %w", err)
	}
	return &TokenSigner{n: n, p: p, q: q, dP: pre.Dp.Bytes(), dQ: pre.Dq.Bytes(), qInv: qInv, e: uint(k.E), size: k.Size()}, nil
}

// Size is the length of a blinded request and of its signature.
func (s *TokenSigner) Size() int { return s.size }

// BlindSign signs a blinded token request.
func (s *TokenSigner) BlindSign(blinded []byte) ([]byte, error) {
	if len(blinded) != s.size {
		return nil, fmt.Errorf("%w: blinded request must be %d bytes", ErrInvalid, s.size)
	}
	c, err := bigmod.NewNat().SetBytes(blinded, s.n)
	if err != nil {
		return nil, fmt.Errorf("%w: blinded request is not below the modulus", ErrInvalid)
	}
	t := bigmod.NewNat()
	// m1 = c^dP mod p, m2 = c^dQ mod q
	m := bigmod.NewNat().Exp(t.Mod(c, s.p), s.dP, s.p)
	m2 := bigmod.NewNat().Exp(t.Mod(c, s.q), s.dQ, s.q)
	// Garner: m = m2 + q·((m1 − m2)·qInv mod p)
	m.Sub(t.Mod(m2, s.p), s.p)
	m.Mul(s.qInv, s.p)
	m.ExpandFor(s.n).Mul(t.Mod(s.q.Nat(), s.n), s.n)
	m.Add(m2.ExpandFor(s.n), s.n)
	s.signed.Add(1)
	if bigmod.NewNat().ExpShortVarTime(m, s.e, s.n).Equal(c) != 1 {
		return nil, fmt.Errorf("surveys: blind signature failed its check")
	}
	return m.Bytes(s.n), nil
}

// TokenRequest is a client's pending request: what it needs to unblind
// the server's answer. It never leaves the client.
type TokenRequest struct {
	client   blindrsa.Client
	state    blindrsa.State
	prepared []byte
	// Blinded is what the client sends to the server.
	Blinded []byte
}

// NewTokenRequest prepares and blinds a fresh token message for a survey.
func NewTokenRequest(d *Definition) (*TokenRequest, error) {
	pub, err := ParseTokenKey(d.TokenKey)
	if err != nil {
		return nil, err
	}
	c, err := blindrsa.NewClient(tokenVariant, pub)
	if err != nil {
		return nil, fmt.Errorf("surveys: token: %w", err)
	}
	nonce := make([]byte, tokenNonce)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("surveys: token: %w", err)
	}
	prepared, err := c.Prepare(rand.Reader, tokenMessage(d.SurveyID, nonce))
	if err != nil {
		return nil, fmt.Errorf("surveys: token: %w", err)
	}
	blinded, state, err := c.Blind(rand.Reader, prepared)
	if err != nil {
		return nil, fmt.Errorf("surveys: token: %w", err)
	}
	return &TokenRequest{client: c, state: state, prepared: prepared, Blinded: blinded}, nil
}

// Finalize unblinds the server's answer into a token and checks it.
func (r *TokenRequest) Finalize(blindSig []byte) (*Token, error) {
	sig, err := r.client.Finalize(r.state, blindSig)
	if err != nil {
		return nil, fmt.Errorf("%w: the server's blind signature does not verify: %v", ErrBadToken, err)
	}
	return &Token{Message: bytes.Clone(r.prepared), Signature: sig}, nil
}

func tokenMessage(surveyID string, nonce []byte) []byte {
	m := make([]byte, 0, len(tokenContext)+len(surveyID)+1+len(nonce))
	m = append(m, tokenContext...)
	m = append(m, surveyID...)
	m = append(m, 0)
	return append(m, nonce...)
}

// TokenSurvey returns the survey a token message names.
func TokenSurvey(message []byte) (string, error) {
	if len(message) < preparePrefix+len(tokenContext)+2+tokenNonce || len(message) > maxTokenMessage {
		return "", fmt.Errorf("%w: token message of %d bytes", ErrBadToken, len(message))
	}
	m := message[preparePrefix:]
	if !bytes.HasPrefix(m, []byte(tokenContext)) {
		return "", fmt.Errorf("%w: not a kanal survey token", ErrBadToken)
	}
	m = m[len(tokenContext) : len(m)-tokenNonce]
	if len(m) < 2 || m[len(m)-1] != 0 {
		return "", fmt.Errorf("%w: malformed token message", ErrBadToken)
	}
	return string(m[:len(m)-1]), nil
}

// VerifyToken checks that t is a token of survey surveyID under its key:
// it names the survey, and the signature verifies.
func VerifyToken(pub *rsa.PublicKey, surveyID string, t *Token) error {
	id, err := TokenSurvey(t.Message)
	if err != nil {
		return err
	}
	if id != surveyID {
		return fmt.Errorf("%w: the token is for survey %q", ErrOtherSurvey, id)
	}
	if len(t.Signature) != pub.Size() || verifyTokenSignature(pub, t.Message, t.Signature) != nil {
		return fmt.Errorf("%w: signature does not verify", ErrBadToken)
	}
	return nil
}

// verifyTokenSignature checks an RSABSSA-SHA384-PSS-Randomized signature
// on a prepared message. By RFC 9474 (section 4.5) it is an ordinary
// RSASSA-PSS signature with SHA-384, MGF1 with SHA-384 and a 48-byte salt,
// so crypto/rsa verifies it: with Montgomery multiplication, where circl's
// Verifier exponentiates with math/big, which divides at every step
// (BenchmarkTokenVerify: about a quarter less CPU a token). The client
// still unblinds and checks with circl; TestRFC9474Vectors and
// FuzzTokenSignature hold the two checks to the same answers.
func verifyTokenSignature(pub *rsa.PublicKey, msg, sig []byte) error {
	h := sha512.Sum384(msg)
	return rsa.VerifyPSS(pub, crypto.SHA384, h[:], sig, &rsa.PSSOptions{SaltLength: sha512.Size384, Hash: crypto.SHA384})
}

// Nullifier is what the server keeps to refuse a token's second use: a
// hash of the token message. The message is fixed by the signature, so
// one token has exactly one nullifier.
func Nullifier(message []byte) []byte {
	h := sha256.New()
	h.Write([]byte("kanal survey nullifier v1\x00"))
	h.Write(message)
	return h.Sum(nil)
}
