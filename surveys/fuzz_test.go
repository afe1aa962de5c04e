package surveys

import (
	"bytes"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// FuzzTokenSurvey: any bytes as a token message either parse to a survey
// id that round-trips through tokenMessage, or fail with ErrBadToken.
func FuzzTokenSurvey(f *testing.F) {
	f.Add(append(make([]byte, preparePrefix), tokenMessage("srv_abc", make([]byte, tokenNonce))...))
	f.Add([]byte("kanal survey token v1"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		id, err := TokenSurvey(msg)
		if err != nil {
			return
		}
		again := append(append([]byte(nil), msg[:preparePrefix]...), tokenMessage(id, msg[len(msg)-tokenNonce:])...)
		if string(again) != string(msg) {
			t.Fatalf("%q parsed as survey %q but does not round-trip", msg, id)
		}
	})
}

// FuzzParseAnswer: decoding an answer never panics, and an accepted answer
// encodes back to one that is accepted the same way.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{`0`, `[0,1]`, `[2,1,0]`, `3`, `"text"`, `null`, `[0,0]`, `-1`, `1e9`, `{"a":1}`} {
		f.Add(s)
	}
	qs := questions()
	f.Fuzz(func(t *testing.T, raw string) {
		for i := range qs {
			a, err := qs[i].parseAnswer(json.RawMessage(raw))
			if err != nil {
				continue
			}
			var v any
			switch {
			case a.skipped:
				v = nil
			case qs[i].Kind == KindText:
				v = a.text
			case qs[i].Kind == KindSingle || qs[i].Kind == KindScale:
				v = a.choices[0]
			default:
				v = a.choices
			}
			b, _ := json.Marshal(v)
			if _, err := qs[i].parseAnswer(b); err != nil {
				t.Fatalf("question %d accepted %q but not its re-encoding %s: %v", i, raw, b, err)
			}
		}
	})
}

// FuzzOpenBallot: arbitrary ciphertexts are invalid ballots, never panics.
func FuzzOpenBallot(f *testing.F) {
	tk, err := NewTallyKey()
	if err != nil {
		f.Fatal(err)
	}
	def := &Definition{SurveyID: "srv_f", Questions: questions(), TallyKey: tk.Public}
	good, err := EncryptBallot(def, []byte("n"), intended(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ct []byte) {
		r, err := Tally(def, tk.Private, []Entry{{Seq: 1, Nullifier: []byte("n"), Ciphertext: ct, Hash: make([]byte, 32)}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Valid+len(r.Invalid) != 1 {
			t.Fatalf("one ballot counted as %d valid, %d invalid", r.Valid, len(r.Invalid))
		}
	})
}

// FuzzVerifySigned: a signed definition from anywhere never panics the
// verifier, and nothing made up verifies.
func FuzzVerifySigned(f *testing.F) {
	p := newPKI(f)
	f.Add([]byte(`{"definition":{"version":1},"signature":"AA==","device_certificate":"AA==","membership_certificate":"AA==","organisation_certificate":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Signed
		if json.Unmarshal(b, &s) != nil {
			return
		}
		if _, _, err := Verify(&s, p.ca.Pool()); err == nil {
			t.Fatal("made-up definition verified")
		}
	})
}

// FuzzTokenSignature: the server's check of a token's signature
// (verifyTokenSignature, crypto/rsa's RSASSA-PSS) and circl's RFC 9474
// Verifier give the same answer for any message and any signature of the
// key's size, under the key of the RFC's test vector; the seeds are the
// vector's message and signature, and the two with one byte changed.
func FuzzTokenSignature(f *testing.F) {
	raw, err := os.ReadFile("testdata/rfc9474_vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var vs []map[string]string
	if err := json.Unmarshal(raw, &vs); err != nil || len(vs) == 0 {
		f.Fatalf("vectors: %v", err)
	}
	v := vs[0]
	n, ok := new(big.Int).SetString(strings.TrimPrefix(v["n"], "0x"), 16)
	e, ok2 := new(big.Int).SetString(strings.TrimPrefix(v["e"], "0x"), 16)
	msg, err1 := hex.DecodeString(v["input_msg"])
	sig, err2 := hex.DecodeString(v["sig"])
	if !ok || !ok2 || err1 != nil || err2 != nil {
		f.Fatal("bad vector")
	}
	pub := &rsa.PublicKey{N: n, E: int(e.Int64())}
	ver, err := blindrsa.NewVerifier(tokenVariant, pub)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg, sig)
	badSig := bytes.Clone(sig)
	badSig[len(badSig)-1] ^= 1
	f.Add(msg, badSig)
	badMsg := bytes.Clone(msg)
	badMsg[0] ^= 1
	f.Add(badMsg, sig)
	f.Fuzz(func(t *testing.T, m, s []byte) {
		if len(s) != pub.Size() {
			return // VerifyToken refuses these before either check
		}
		ours, theirs := verifyTokenSignature(pub, m, s) == nil, ver.Verify(m, s) == nil
		if ours != theirs {
			t.Fatalf("crypto/rsa says %v, circl says %v, for message %x and signature %x", ours, theirs, m, s)
		}
	})
}
