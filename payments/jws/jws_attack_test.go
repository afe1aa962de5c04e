package jws

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

// highS replaces the s of an ES256 compact JWS by n − s: the adversary
// holds nothing but the signed document.
func highS(t *testing.T, s string) string {
	t.Helper()
	parts := strings.Split(s, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %v (%d bytes)", err, len(sig))
	}
	n := elliptic.P256().Params().N
	sv := new(big.Int).SetBytes(sig[32:])
	sv.Sub(n, sv)
	out := make([]byte, 64)
	copy(out, sig[:32])
	sv.FillBytes(out[32:])
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(out)
}

// es256Buyer gives p a buyer with a P-256 key, so that the contract's own
// signature is ES256.
func es256Buyer(t *testing.T, p *pki) {
	t.Helper()
	bk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.buyer.Key = bk
	p.buyer.DeviceCert = device(t, p.ca, bk, "acc-buyer", "dev-buyer", ca.LevelSubstantial)
	p.buyerID, _ = ca.VerifyDevice(p.buyer.DeviceCert, p.ca.Pool(), t0)
	p.buyer.BuyerStatus = p.status(t, t0.Add(59*time.Minute), p.buyerID.Serial, nil)
}

// TestAttackHighSOffer: anyone holding an ES256 offer or contract turns
// s into n − s. The second signature is mathematically valid; kanal must
// refuse it, or the document verifies under a second hash (contract id).
func TestAttackHighSOffer(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	es256Buyer(t, p)
	n := elliptic.P256().Params().N
	half := new(big.Int).Rsh(n, 1)
	// Signing always gives low s (with random k, n − s would come half
	// the time).
	var offerJWS, contract string
	for i := 0; i < 16; i++ {
		o := offer()
		var err error
		if offerJWS, err = SignOffer(o, p.seller, p.ca.Pool()); err != nil {
			t.Fatal(err)
		}
		if contract, err = Countersign(offerJWS, p.buyer, p.ca.Certificate(), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, doc := range []string{offerJWS, contract} {
			sig, _ := base64.RawURLEncoding.DecodeString(doc[strings.LastIndexByte(doc, '.')+1:])
			if new(big.Int).SetBytes(sig[32:]).Cmp(half) > 0 {
				t.Fatalf("signed with high s")
			}
		}
	}
	if _, err := VerifyOffer(highS(t, offerJWS), p.ca.Pool()); !errors.Is(err, ErrSignature) {
		t.Fatalf("offer with s = n − s: %v, want ErrSignature", err)
	}
	if _, err := VerifyContract(highS(t, contract), VerifyOptions{CA: p.ca.Certificate()}); !errors.Is(err, ErrSignature) {
		t.Fatalf("contract with s = n − s: %v, want ErrSignature", err)
	}
	if _, err := Countersign(highS(t, offerJWS), p.buyer, p.ca.Certificate(), t0.Add(time.Hour)); !errors.Is(err, ErrSignature) {
		t.Fatalf("countersigning an offer with s = n − s: %v", err)
	}
	// The originals still verify.
	if _, err := VerifyContract(contract, VerifyOptions{CA: p.ca.Certificate()}); err != nil {
		t.Fatal(err)
	}
}

// foreignOffer signs o as another JOSE library might: the protected
// header's members in another order, with whitespace.
func foreignOffer(t *testing.T, p *pki, o Offer, header string) string {
	t.Helper()
	payload, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(payload)
	h := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, p.seller.Key.(*ecdsa.PrivateKey), h[:])
	if err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	if s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		s.Sub(n, s)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestForeignHeaderForm: an offer correctly signed by another JOSE
// implementation, whose header is not kanal's own serialisation, verifies;
// a crit header is refused for being crit.
func TestForeignHeaderForm(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	b64 := base64.StdEncoding.EncodeToString
	mem := `["` + b64(p.seller.Membership) + `", "` + b64(p.seller.OrgCert) + `"]`
	x5c := `[ "` + b64(p.seller.DeviceCert) + `" ]`
	header := "{\n  \"x5c\": " + x5c + ",\n  \"typ\" : \"kanal-offer+jws\",\n  \"kanal_membership\": " + mem + ",\n  \"alg\": \"ES256\"\n}"
	offerJWS := foreignOffer(t, p, offer(), header)
	vo, err := VerifyOffer(offerJWS, p.ca.Pool())
	if err != nil {
		t.Fatalf("offer with another header form: %v", err)
	}
	if vo.Offer.TotalCents != 21400 {
		t.Fatalf("offer %+v", vo.Offer)
	}
	if _, err := Countersign(offerJWS, p.buyer, p.ca.Certificate(), t0.Add(time.Hour)); err != nil {
		t.Fatalf("countersign: %v", err)
	}

	// The same media type written in full, in other letter case.
	full := strings.Replace(header, `"kanal-offer+jws"`, `"application/Kanal-Offer+JWS"`, 1)
	if _, err := VerifyOffer(foreignOffer(t, p, offer(), full), p.ca.Pool()); err != nil {
		t.Fatalf("typ with application/ prefix: %v", err)
	}

	crit := `{"alg":"ES256","crit":["exp"],"exp":1,"kanal_membership":` + mem + `,"typ":"kanal-offer+jws","x5c":` + x5c + `}`
	_, err = VerifyOffer(foreignOffer(t, p, offer(), crit), p.ca.Pool())
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "crit") {
		t.Fatalf("crit header: %v", err)
	}
	// A header naming a member twice is ambiguous.
	dup := `{"alg":"ES256","typ":"kanal-contract+jws","typ":"kanal-offer+jws","kanal_membership":` + mem + `,"x5c":` + x5c + `}`
	_, err = VerifyOffer(foreignOffer(t, p, offer(), dup), p.ca.Pool())
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate header member: %v", err)
	}
	// An algorithm that does not match the certificate's key.
	eddsa := `{"alg":"EdDSA","kanal_membership":` + mem + `,"typ":"kanal-offer+jws","x5c":` + x5c + `}`
	if _, err = VerifyOffer(foreignOffer(t, p, offer(), eddsa), p.ca.Pool()); err == nil {
		t.Fatal("alg EdDSA with a P-256 certificate verifies")
	}
	// The spare bits of the signature's last character still count.
	good := foreignOffer(t, p, offer(), header)
	last := good[len(good)-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	spare := good[:len(good)-1] + string(alphabet[strings.IndexByte(alphabet, last)^1])
	_, err = VerifyOffer(spare, p.ca.Pool())
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "base64url") {
		t.Fatalf("spare bits set: %v", err)
	}
}
