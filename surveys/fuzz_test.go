package surveys

import (
	"encoding/json"
	"testing"
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
