package surveys

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/json"
	"fmt"
)

// Secret until the end.
//
// A ballot is the JSON {"answers": [...]} padded with spaces to a multiple
// of PadBlock, encrypted with HPKE (RFC 9180, base mode) to the survey's
// tally key: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
// The HPKE info binds the ciphertext to the survey and to the ballot's
// nullifier, so a ciphertext copied from one board entry to another no
// longer decrypts and is counted as invalid. The tally private key is made
// by the organiser's client and given to kanal only after closing; until
// then no one, the server included, can read a ballot.

const ballotContext = "kanal survey ballot v1\x00"

func suite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()
}

func ballotInfo(surveyID string, nullifier []byte) []byte {
	info := make([]byte, 0, len(ballotContext)+len(surveyID)+1+len(nullifier))
	info = append(info, ballotContext...)
	info = append(info, surveyID...)
	info = append(info, 0)
	return append(info, nullifier...)
}

// TallyKeyPair is an organiser's tally key.
type TallyKeyPair struct {
	Public  []byte // goes into the definition
	Private []byte // kept by the council, published after closing
}

// NewTallyKey makes a tally key pair. The organiser's client calls it; the
// private key must not reach the server before the survey closes.
func NewTallyKey() (*TallyKeyPair, error) {
	kem, _, _ := suite()
	k, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("surveys: tally key: %w", err)
	}
	priv, err := k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("surveys: tally key: %w", err)
	}
	return &TallyKeyPair{Public: k.PublicKey().Bytes(), Private: priv}, nil
}

// TallyPublic returns the public half of a tally private key.
func TallyPublic(priv []byte) ([]byte, error) {
	kem, _, _ := suite()
	k, err := kem.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: not an X25519 private key", ErrBadTallyKey)
	}
	return k.PublicKey().Bytes(), nil
}

// CheckTallyKey reports whether priv is the private half of the tally key
// pub named in a definition.
func CheckTallyKey(pub, priv []byte) error {
	kem, _, _ := suite()
	k, err := kem.NewPrivateKey(priv)
	if err != nil {
		return fmt.Errorf("%w: not an X25519 private key", ErrBadTallyKey)
	}
	if !bytes.Equal(k.PublicKey().Bytes(), pub) {
		return ErrBadTallyKey
	}
	return nil
}

// ballotPlain is a ballot's plaintext.
type ballotPlain struct {
	Answers []json.RawMessage `json:"answers"`
}

// EncryptBallot checks answers against the definition, pads and encrypts
// them for the board entry whose nullifier is given. An answer is an int
// (single, scale), a []int (multiple, ranking), a string (text) or nil
// (an optional question left out).
func EncryptBallot(d *Definition, nullifier []byte, answers []any) ([]byte, error) {
	raw, err := encodeAnswers(d, answers)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(ballotPlain{Answers: raw})
	if err != nil {
		return nil, err
	}
	return sealBallot(d, nullifier, plain)
}

// CheckAnswers checks answers against the definition as EncryptBallot
// does. A client calls it before it asks for a token, so that a mistake in
// the answers never costs the voter its one token.
func CheckAnswers(d *Definition, answers []any) error {
	_, err := encodeAnswers(d, answers)
	return err
}

func encodeAnswers(d *Definition, answers []any) ([]json.RawMessage, error) {
	raw := make([]json.RawMessage, len(answers))
	for i, a := range answers {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("%w: answer %d: %v", ErrInvalid, i+1, err)
		}
		raw[i] = b
	}
	if err := checkAnswers(d, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// sealBallot pads and encrypts any plaintext; tests use it to put
// malformed ballots on a board.
func sealBallot(d *Definition, nullifier, plain []byte) ([]byte, error) {
	padded := make([]byte, (len(plain)/PadBlock+1)*PadBlock)
	copy(padded, plain)
	for i := len(plain); i < len(padded); i++ {
		padded[i] = ' '
	}
	kem, kdf, aead := suite()
	pub, err := kem.NewPublicKey(d.TallyKey)
	if err != nil {
		return nil, fmt.Errorf("%w: tally key: %v", ErrInvalid, err)
	}
	ct, err := hpke.Seal(pub, kdf, aead, ballotInfo(d.SurveyID, nullifier), padded)
	if err != nil {
		return nil, fmt.Errorf("surveys: encrypt ballot: %w", err)
	}
	if len(ct) > MaxCiphertext {
		return nil, fmt.Errorf("%w: ballot too large", ErrInvalid)
	}
	return ct, nil
}

// openBallot decrypts and decodes a ballot; any failure makes the ballot
// invalid, with the reason given.
func openBallot(k hpke.PrivateKey, surveyID string, nullifier, ct []byte) (*ballotPlain, string) {
	_, kdf, aead := suite()
	plain, err := hpke.Open(k, kdf, aead, ballotInfo(surveyID, nullifier), ct)
	if err != nil {
		return nil, "does not decrypt"
	}
	var b ballotPlain
	if err := strictJSON(plain, &b); err != nil {
		return nil, "not a ballot"
	}
	return &b, ""
}

// checkAnswers checks one answer per question, each in range.
func checkAnswers(d *Definition, answers []json.RawMessage) error {
	if len(answers) != len(d.Questions) {
		return fmt.Errorf("%w: %d answers for %d questions", ErrInvalid, len(answers), len(d.Questions))
	}
	for i, q := range d.Questions {
		if _, err := q.parseAnswer(answers[i]); err != nil {
			return fmt.Errorf("%w: answer %d: %v", ErrInvalid, i+1, err)
		}
	}
	return nil
}

// answer is one decoded answer; skipped for an optional question left out.
type answer struct {
	skipped bool
	choices []int // single, scale: one; multiple: chosen; ranking: order
	text    string
}

func (q *Question) parseAnswer(raw json.RawMessage) (answer, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if !q.Optional {
			return answer{}, fmt.Errorf("required")
		}
		return answer{skipped: true}, nil
	}
	switch q.Kind {
	case KindSingle, KindScale:
		var n int
		if err := strictJSON(raw, &n); err != nil {
			return answer{}, fmt.Errorf("want a number")
		}
		lo, hi := 0, len(q.Options)-1
		if q.Kind == KindScale {
			lo, hi = 1, ScaleMax
		}
		if n < lo || n > hi {
			return answer{}, fmt.Errorf("%d out of range %d..%d", n, lo, hi)
		}
		return answer{choices: []int{n}}, nil
	case KindMultiple, KindRanking:
		var ns []int
		if err := strictJSON(raw, &ns); err != nil || ns == nil {
			return answer{}, fmt.Errorf("want a list of option numbers")
		}
		seen := make([]bool, len(q.Options))
		for _, n := range ns {
			if n < 0 || n >= len(q.Options) || seen[n] {
				return answer{}, fmt.Errorf("option %d out of range or repeated", n)
			}
			seen[n] = true
		}
		if q.Kind == KindMultiple && (len(ns) < q.Min || len(ns) > q.Max) {
			return answer{}, fmt.Errorf("choose %d..%d options", q.Min, q.Max)
		}
		if q.Kind == KindRanking && len(ns) != len(q.Options) {
			return answer{}, fmt.Errorf("rank all %d options", len(q.Options))
		}
		return answer{choices: ns}, nil
	case KindText:
		var s string
		if err := strictJSON(raw, &s); err != nil {
			return answer{}, fmt.Errorf("want text")
		}
		if err := checkText("answer", s, q.Max, !q.Optional); err != nil {
			return answer{}, err
		}
		return answer{text: s}, nil
	}
	return answer{}, fmt.Errorf("unknown question kind")
}
