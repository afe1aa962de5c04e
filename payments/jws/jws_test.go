package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// pki is a deployment CA with a merchant, a seller device and a buyer
// device, made with the real identity/ca.
type pki struct {
	ca      *ca.CA
	org     *ca.OrgAuthority
	seller  Seller
	buyer   Buyer
	buyerID ca.DeviceIdentity
	sellerD ca.DeviceIdentity
}

func device(t testing.TB, c *ca.CA, key crypto.Signer, account, dev string, level ca.Level) []byte {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: account, DeviceID: dev, Level: level, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return cert.Raw
}

func newPKI(t testing.TB, buyerLevel ca.Level) *pki {
	t.Helper()
	c, err := ca.Create("Musterstadt", t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	org, err := c.IssueOrganisation(ca.OrgRequest{OrgID: "org-baecker", Name: "Bäckerei Korn", Kind: ca.OrgMerchant, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sellerCert := device(t, c, sk, "acc-seller", "dev-seller", ca.LevelSubstantial)
	mem, err := org.IssueMembership(ca.MembershipRequest{DevicePublicKey: sk.Public(), AccountID: "acc-seller", DeviceID: "dev-seller", Role: "seller", NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	_, bk, _ := ed25519.GenerateKey(rand.Reader)
	buyerCert := device(t, c, bk, "acc-buyer", "dev-buyer", buyerLevel)
	p := &pki{ca: c, org: org,
		seller: Seller{Key: sk, DeviceCert: sellerCert, Membership: mem.Raw, OrgCert: org.Certificate().Raw},
		buyer:  Buyer{Key: bk, DeviceCert: buyerCert},
	}
	p.sellerD, _ = ca.VerifyDevice(sellerCert, c.Pool(), t0)
	p.buyerID, _ = ca.VerifyDevice(buyerCert, c.Pool(), t0)
	// Tests countersign at t0+1h; the buyer fetched the statuses a minute
	// before.
	p.buyer.SellerStatus = p.status(t, t0.Add(59*time.Minute), p.sellerD.Serial, nil)
	p.buyer.BuyerStatus = p.status(t, t0.Add(59*time.Minute), p.buyerID.Serial, nil)
	return p
}

func (p *pki) status(t testing.TB, at time.Time, serial *big.Int, revokedAt *time.Time) []byte {
	t.Helper()
	der, err := p.ca.SignStatus(serial, revokedAt, at, at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (p *pki) crl(t testing.TB, at time.Time, revoked ...ca.Revoked) []byte {
	t.Helper()
	der, err := p.ca.RevocationList(revoked, big.NewInt(at.UnixNano()), at, at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func offer() Offer {
	o := Offer{Version: 1, OfferID: "offer-1", OrgID: "org-baecker", OrgName: "Bäckerei Korn", BuyerAccount: "acc-buyer",
		Items: []Item{
			{Description: "Hochzeitstorte, drei Etagen", Quantity: 1, UnitCents: 18900, VATBasisPoints: 700},
			{Description: "Lieferung", Quantity: 1, UnitCents: 2500, VATBasisPoints: 1900},
		},
		Currency: "EUR", Terms: "Abholung oder Lieferung am 20. Juni.", IssuedAt: t0, ValidUntil: t0.Add(7 * 24 * time.Hour)}
	o.TotalCents, o.VATCents = Totals(o.Items)
	return o
}

func TestOfferToContractRoundTrip(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	offerJWS, err := SignOffer(offer(), p.seller, p.ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	contract, err := Countersign(offerJWS, p.buyer, p.ca.Certificate(), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyContract(contract, VerifyOptions{CA: p.ca.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	if c.Offer.Offer.TotalCents != 21400 || c.Offer.Membership.OrgID != "org-baecker" || c.Buyer.AccountID != "acc-buyer" ||
		c.OfferJWS != offerJWS || c.ID != ContractID(contract) || !c.SignedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("contract %+v", c)
	}
	// 189.00 at 7 % holds 12.36; 25.00 at 19 % holds 3.99.
	if c.Offer.Offer.VATCents != 1236+399 {
		t.Fatalf("vat %d", c.Offer.Offer.VATCents)
	}
	// A current list from later, without revocations, agrees.
	if _, err := VerifyContract(contract, VerifyOptions{CA: p.ca.Certificate(), CRL: p.crl(t, t0.Add(48*time.Hour))}); err != nil {
		t.Fatal(err)
	}
}

// TestOneByteChanged flips every byte position of the contract in turn:
// no altered contract verifies.
func TestOneByteChanged(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	offerJWS, _ := SignOffer(offer(), p.seller, p.ca.Pool())
	contract, err := Countersign(offerJWS, p.buyer, p.ca.Certificate(), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	opts := VerifyOptions{CA: p.ca.Certificate()}
	// Every 13th position, and every position next to a part boundary, where
	// base64url's spare bits live (a changed last character once verified).
	var positions []int
	for i := 0; i < len(contract); i++ {
		near := i < 4 || i >= len(contract)-4
		for _, d := range []int{-3, -2, -1, 1, 2, 3} {
			if j := i + d; j >= 0 && j < len(contract) && contract[j] == '.' {
				near = true
			}
		}
		if near || i%13 == 0 {
			positions = append(positions, i)
		}
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, i := range positions {
		idx := strings.IndexByte(alphabet, contract[i])
		if idx < 0 {
			continue // a '.'
		}
		// The lowest bit (a spare bit in a part's last character) and the
		// highest bit of the character's six.
		for _, flip := range []int{1, 32} {
			b := []byte(contract)
			b[i] = alphabet[idx^flip]
			if _, err := VerifyContract(string(b), opts); err == nil {
				t.Fatalf("contract with byte %d changed (%c → %c) verifies", i, contract[i], b[i])
			}
		}
	}
	// The offer inside, changed in its payload and re-wrapped by the buyer,
	// fails on the seller's signature.
	parts := strings.Split(offerJWS, ".")
	altered := parts[0] + "." + strings.Replace(parts[1], parts[1][10:11], flip(parts[1][10:11]), 1) + "." + parts[2]
	if _, err := VerifyOffer(altered, p.ca.Pool()); !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("altered offer: %v", err)
	}
}

func flip(s string) string {
	if s == "A" {
		return "B"
	}
	return "A"
}

func TestRevokedDevices(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	offerJWS, _ := SignOffer(offer(), p.seller, p.ca.Pool())
	signed := t0.Add(time.Hour)
	contract, err := Countersign(offerJWS, p.buyer, p.ca.Certificate(), signed)
	if err != nil {
		t.Fatal(err)
	}
	opts := VerifyOptions{CA: p.ca.Certificate()}
	for name, rev := range map[string]ca.Revoked{
		"seller revoked before signing": {Serial: p.sellerD.Serial, At: signed.Add(-time.Minute)},
		"buyer revoked before signing":  {Serial: p.buyerID.Serial, At: signed.Add(-time.Minute)},
	} {
		opts.CRL = p.crl(t, signed.Add(time.Hour), rev)
		if _, err := VerifyContract(contract, opts); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s: %v, want ErrRevoked", name, err)
		}
	}
	// Revoked after signing: the contract stands.
	opts.CRL = p.crl(t, signed.Add(2*time.Hour), ca.Revoked{Serial: p.sellerD.Serial, At: signed.Add(time.Hour)})
	if _, err := VerifyContract(contract, opts); err != nil {
		t.Fatalf("revoked after signing: %v", err)
	}
	// A list from before the signature cannot speak for it.
	opts.CRL = p.crl(t, signed.Add(-time.Minute))
	if _, err := VerifyContract(contract, opts); !errors.Is(err, ErrNoCRL) {
		t.Fatalf("old list: %v", err)
	}

	// The buyer's own status of the seller already shows it revoked: the
	// client refuses to countersign.
	b := p.buyer
	at := t0.Add(-time.Minute)
	b.SellerStatus = p.status(t, signed, p.sellerD.Serial, &at)
	if _, err := Countersign(offerJWS, b, p.ca.Certificate(), signed); !errors.Is(err, ErrRevoked) {
		t.Fatalf("countersign with revoked seller: %v", err)
	}
	// Statuses swapped (each about the other device), stale, or from
	// another CA are no statuses at all.
	for name, bb := range map[string]Buyer{
		"swapped": {Key: b.Key, DeviceCert: b.DeviceCert, SellerStatus: p.buyer.BuyerStatus, BuyerStatus: p.buyer.SellerStatus},
		"stale": {Key: b.Key, DeviceCert: b.DeviceCert, SellerStatus: p.status(t, signed.Add(-2*time.Hour), p.sellerD.Serial, nil),
			BuyerStatus: p.buyer.BuyerStatus},
		"foreign CA": {Key: b.Key, DeviceCert: b.DeviceCert, SellerStatus: newPKI(t, ca.LevelSubstantial).status(t, signed, p.sellerD.Serial, nil),
			BuyerStatus: p.buyer.BuyerStatus},
	} {
		if _, err := Countersign(offerJWS, bb, p.ca.Certificate(), signed); !errors.Is(err, ErrNoCRL) {
			t.Errorf("%s: %v, want ErrNoCRL", name, err)
		}
	}
}

func TestCountersignRefusals(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	offerJWS, _ := SignOffer(offer(), p.seller, p.ca.Pool())
	if _, err := Countersign(offerJWS, p.buyer, p.ca.Certificate(), t0.Add(8*24*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired offer: %v", err)
	}
	low := newPKI(t, ca.LevelLow)
	offerJWS2, _ := SignOffer(offer(), low.seller, low.ca.Pool())
	if _, err := Countersign(offerJWS2, low.buyer, low.ca.Certificate(), t0.Add(time.Hour)); !errors.Is(err, ErrCertificate) {
		t.Errorf("level low buyer: %v", err)
	}
	// Another PKI's CA does not vouch for this offer.
	if _, err := Countersign(offerJWS, low.buyer, low.ca.Certificate(), t0.Add(time.Hour)); !errors.Is(err, ErrCertificate) {
		t.Errorf("foreign CA: %v", err)
	}
	// An offer is not a contract and a contract is not an offer.
	if _, err := VerifyContract(offerJWS, VerifyOptions{CA: p.ca.Certificate()}); !errors.Is(err, ErrMalformed) {
		t.Errorf("offer as contract: %v", err)
	}
}

func TestInvalidOffers(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	for name, mut := range map[string]func(*Offer){
		"negative price":            func(o *Offer) { o.Items[0].UnitCents = -100 },
		"zero quantity":             func(o *Offer) { o.Items[0].Quantity = 0 },
		"wrong total":               func(o *Offer) { o.TotalCents++ },
		"wrong VAT":                 func(o *Offer) { o.VATCents-- },
		"VAT over 100 %":            func(o *Offer) { o.Items[0].VATBasisPoints = 10001 },
		"no items":                  func(o *Offer) { o.Items = nil },
		"dollars":                   func(o *Offer) { o.Currency = "USD" },
		"validity reverse":          func(o *Offer) { o.ValidUntil = o.IssuedAt.Add(-time.Second) },
		"other org":                 func(o *Offer) { o.OrgID = "org-other" },
		"negative high_above_cents": func(o *Offer) { o.HighAboveCents = -1 },
		"high_above_cents over max": func(o *Offer) { o.HighAboveCents = MaxAmountCents + 1 },
	} {
		o := offer()
		o.Items = append([]Item(nil), o.Items...)
		mut(&o)
		if name != "wrong total" && name != "wrong VAT" && name != "other org" {
			o.TotalCents, o.VATCents = Totals(o.Items)
		}
		if _, err := SignOffer(o, p.seller, p.ca.Pool()); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	// Fractional cents do not decode: amounts are integers.
	if err := decodeStrict([]byte(`{"v":1,"items":[{"unit_cents":12.5}]}`), &Offer{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("fractional: %v", err)
	}
}

func FuzzVerifyContract(f *testing.F) {
	p := newPKI(f, ca.LevelSubstantial)
	offerJWS, _ := SignOffer(offer(), p.seller, p.ca.Pool())
	contract, err := Countersign(offerJWS, p.buyer, p.ca.Certificate(), t0.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(contract)
	f.Add(offerJWS)
	f.Add("a.b.c")
	opts := VerifyOptions{CA: p.ca.Certificate()}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := VerifyContract(s, opts)
		if err == nil && s != contract {
			t.Fatalf("a different contract verifies: %q (%+v)", s, c)
		}
	})
}

// TestOrgCRL: a seller whose membership is on the organisation's list
// makes no offer that verifies with the list, whatever its issued_at; a
// contract is refused when the membership was revoked at or before the
// buyer signed. The list must be the organisation's and recent enough.
func TestOrgCRL(t *testing.T) {
	p := newPKI(t, ca.LevelSubstantial)
	offerJWS, _ := SignOffer(offer(), p.seller, p.ca.Pool())
	vo, err := VerifyOffer(offerJWS, p.ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	orgList := func(at time.Time, revoked ...ca.Revoked) []byte {
		der, err := p.org.RevocationList(revoked, big.NewInt(at.Unix()), at, at.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	signed := t0.Add(time.Hour)
	contract, err := Countersign(offerJWS, p.buyer, p.ca.Certificate(), signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := vo.CheckOrgCRL(orgList(signed)); err != nil {
		t.Fatalf("a current member's offer: %v", err)
	}
	// Revoked long after the offer's issued_at: the offer is refused all
	// the same, since issued_at is the signer's word.
	later := ca.Revoked{Serial: vo.Membership.Serial, At: t0.Add(48 * time.Hour)}
	if err := vo.CheckOrgCRL(orgList(t0.Add(49*time.Hour), later)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("offer of a removed member: %v", err)
	}
	// A contract signed before the removal stands; one after does not.
	if _, err := VerifyContract(contract, VerifyOptions{CA: p.ca.Certificate(), OrgCRL: orgList(t0.Add(49*time.Hour), later)}); err != nil {
		t.Fatalf("contract signed before the removal: %v", err)
	}
	before := ca.Revoked{Serial: vo.Membership.Serial, At: signed.Add(-time.Minute)}
	if _, err := VerifyContract(contract, VerifyOptions{CA: p.ca.Certificate(), OrgCRL: orgList(signed, before)}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("contract signed after the removal: %v", err)
	}
	// A list from before the document, or signed by the CA instead of
	// the organisation, cannot speak for it.
	if err := vo.CheckOrgCRL(orgList(t0.Add(-time.Minute))); !errors.Is(err, ErrNoCRL) {
		t.Fatalf("old list: %v", err)
	}
	caList, _ := p.ca.RevocationList(nil, big.NewInt(1), signed, signed.Add(time.Hour))
	if err := vo.CheckOrgCRL(caList); !errors.Is(err, ErrNoCRL) {
		t.Fatalf("list of another issuer: %v", err)
	}
}
