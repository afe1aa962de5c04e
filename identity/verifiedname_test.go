package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/eidtest"
)

// TestVerifiedNameFromEIDLogin: an eID login at level high brings the
// device, sealed with the attributes, the notary's statement of the
// verified name of this account, which anyone holding only the CA
// verifies; the server keeps none of it. A login at substantial brings
// none.
func TestVerifiedNameFromEIDLogin(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		x := newEIDEnv(t, d)
		u := x.newUser("anna@example.de", "correct horse battery")
		l := x.begin(u)
		x.must(x.callback(l.query), 200)
		var done EIDCompleteResponse
		x.must(x.complete(u, l.start.FlowID), 200).decode(t, &done)
		res, err := OpenEIDResult(l.priv, l.start.FlowID, done.Attributes)
		if err != nil {
			t.Fatal(err)
		}
		if res.GivenName != markGiven || res.VerifiedName == nil {
			t.Fatalf("sealed result: %+v", res)
		}
		now := x.clock.now()
		v, err := res.VerifiedName.Verify(x.ca.Pool(), u.account, now)
		if err != nil {
			t.Fatal(err)
		}
		if v.Account != u.account || v.GivenName != markGiven || v.FamilyName != markFamily || v.Name != markGiven+" "+markFamily ||
			!v.IssuedAt.Equal(now.Truncate(time.Millisecond)) || !v.ExpiresAt.Equal(v.IssuedAt.Add(VerifiedNameLifetime)) {
			t.Fatalf("verified name: %+v", v)
		}
		// It says nothing of the birth date, the address, the subject or
		// the provider.
		for _, m := range []string{markBirth, markStreet, markSubject, x.op.Issuer, "http"} {
			if bytes.Contains(res.VerifiedName.Statement, []byte(m)) {
				t.Errorf("the statement holds %q:\n%s", m, res.VerifiedName.Statement)
			}
		}
		searchMarkers(t, d)

		// A login at substantial proves no name for offices.
		priv, sealKey, _ := NewEIDSealKey()
		var start EIDStartResponse
		x.must(x.do("POST", "/v1/eid/start", u.session.Token, EIDStartRequest{SealKey: sealKey, Level: "substantial"}), 201).decode(t, &start)
		x.op.LoginAs(markSubject, eidtest.ACRSubstantial)
		x.must(x.callback(x.browse(start.URL)), 200)
		x.must(x.complete(u, start.FlowID), 200).decode(t, &done)
		if res, err := OpenEIDResult(priv, start.FlowID, done.Attributes); err != nil || res.VerifiedName != nil || res.GivenName != markGiven {
			t.Fatalf("after a substantial login: %+v %v", res, err)
		}
	})
}

// TestAttackVerifiedName: what an attacker holds — a real attestation of
// their own account, a copy of someone else's, a notary certificate of
// another deployment, an old one — never verifies as a name they may
// claim.
func TestAttackVerifiedName(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c, err := ca.Create("test", t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Notary(t.TempDir(), t0)
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{notary: n, now: func() time.Time { return t0 }}
	good := svc.attestName("acc_erika", EIDAttributes{GivenName: "Erika", FamilyName: "Mustermann"})
	if good == nil {
		t.Fatal("no attestation")
	}
	if _, err := good.Verify(c.Pool(), "acc_erika", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	other, _ := ca.Create("other", t0.Add(-time.Hour))
	otherNotary, _ := other.Notary(t.TempDir(), t0)
	forged := (&Service{notary: otherNotary, now: svc.now}).attestName("acc_erika", EIDAttributes{Name: "Erika Mustermann"})

	altered := *good
	altered.Statement = bytes.Replace(good.Statement, []byte("name Erika Mustermann"), []byte("name Erika Musterfrau"), 1)
	resigned := *good
	resigned.Signature = ed25519.Sign(ed25519.NewKeyFromSeed(make([]byte, 32)), good.Statement)
	for name, tc := range map[string]struct {
		a       *VerifiedNameAttestation
		account string
		at      time.Time
		want    error
	}{
		"another account's name":      {good, "acc_mallory", t0.Add(time.Hour), ErrVerifiedNameInvalid},
		"expired":                     {good, "acc_erika", t0.Add(VerifiedNameLifetime), ErrVerifiedNameInvalid},
		"altered name":                {&altered, "acc_erika", t0.Add(time.Hour), ErrVerifiedNameInvalid},
		"signed by another key":       {&resigned, "acc_erika", t0.Add(time.Hour), ErrVerifiedNameInvalid},
		"another deployment's notary": {forged, "acc_erika", t0.Add(time.Hour), ErrVerifiedNameInvalid},
	} {
		if _, err := tc.a.Verify(c.Pool(), tc.account, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// A notary signature for another purpose is no verified name.
	purpose := *good
	purpose.Signature = n.Sign("surveys.receipt", good.Statement)
	if _, err := purpose.Verify(c.Pool(), "acc_erika", t0.Add(time.Hour)); !errors.Is(err, ErrVerifiedNameInvalid) {
		t.Errorf("another purpose: %v", err)
	}
}

// TestVerifiedNameStatementForm: only the one spelling parses.
func TestVerifiedNameStatementForm(t *testing.T) {
	v := VerifiedName{Account: "acc_erika", GivenName: "Erika", FamilyName: "Mustermann", Name: "Erika Mustermann",
		IssuedAt: time.Date(2026, 12, 3, 10, 0, 0, 123e6, time.UTC)}
	v.ExpiresAt = v.IssuedAt.Add(VerifiedNameLifetime)
	good := v.Marshal()
	if got, err := ParseVerifiedName(good); err != nil || *got != v {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	empty := v
	empty.GivenName, empty.FamilyName = "", ""
	if _, err := ParseVerifiedName(empty.Marshal()); err != nil {
		t.Fatalf("without given and family name: %v", err)
	}
	for name, b := range map[string][]byte{
		"CRLF":               bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")),
		"no final newline":   bytes.TrimSuffix(good, []byte("\n")),
		"level substantial":  bytes.Replace(good, []byte("level high"), []byte("level substantial"), 1),
		"two spaces":         bytes.Replace(good, []byte("name Erika Mustermann"), []byte("name  Erika Mustermann"), 1),
		"trailing space":     bytes.Replace(good, []byte("Mustermann\n"), []byte("Mustermann \n"), 1),
		"bidi override":      bytes.Replace(good, []byte("name Erika"), []byte("name \u202eErika"), 1),
		"no name":            bytes.Replace(good, []byte("name Erika Mustermann"), []byte("name "), 1),
		"time without ms":    bytes.Replace(good, []byte("10:00:00.123Z"), []byte("10:00:00Z"), 1),
		"expires before":     bytes.Replace(good, []byte("expires 2027"), []byte("expires 2025"), 1),
		"extra line":         append(bytes.Clone(good), "birthdate 1964-08-12\n"...),
		"not an account id":  bytes.Replace(good, []byte("account acc_erika"), []byte("account acc erika"), 1),
		"other magic":        bytes.Replace(good, []byte("v1"), []byte("v2"), 1),
		"name field too big": bytes.Replace(good, []byte("name Erika"), append([]byte("name "), bytes.Repeat([]byte("E"), 300)...), 1),
	} {
		if _, err := ParseVerifiedName(b); !errors.Is(err, ErrVerifiedNameMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestVerifiedNameVector checks testdata/verified-name.json, the example
// docs/levels.md cites: the statement parses, the signed bytes are
// "kanal notary v1" 0x00 purpose 0x00 statement, and the signature by the
// notary key of the given seed verifies over them.
func TestVerifiedNameVector(t *testing.T) {
	b, err := os.ReadFile("testdata/verified-name.json")
	if err != nil {
		t.Fatal(err)
	}
	var vec struct {
		NotarySeed  string `json:"notary_seed_hex"`
		Purpose     string `json:"purpose"`
		Statement   string `json:"statement"`
		SignedBytes string `json:"signed_bytes_hex"`
		Signature   string `json:"signature_base64"`
	}
	if err := json.Unmarshal(b, &vec); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseVerifiedName([]byte(vec.Statement)); err != nil {
		t.Fatal(err)
	}
	signed := append(append(append([]byte("kanal notary v1\x00"), vec.Purpose...), 0), vec.Statement...)
	if hex.EncodeToString(signed) != vec.SignedBytes || vec.Purpose != VerifiedNamePurpose {
		t.Fatalf("signed bytes differ from the vector's")
	}
	seed, _ := hex.DecodeString(vec.NotarySeed)
	key := ed25519.NewKeyFromSeed(seed)
	sig, _ := base64.StdEncoding.DecodeString(vec.Signature)
	if !ed25519.Verify(key.Public().(ed25519.PublicKey), signed, sig) {
		t.Fatal("the vector's signature does not verify")
	}
	if got := base64.StdEncoding.EncodeToString(ed25519.Sign(key, signed)); got != vec.Signature {
		t.Fatalf("signature %s, vector %s", got, vec.Signature)
	}
}
