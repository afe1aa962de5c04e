package jws

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

// rotated is a deployment whose root is kept offline: the merchant and
// its seller were certified under an intermediate that has since been
// retired, the buyer's device under the current one.
type rotated struct {
	root, old, cur  *ca.CA
	inters          []*x509.Certificate // current first, as kanald hands them out
	seller          Seller
	buyer           Buyer
	sellerD, buyerD ca.DeviceIdentity
}

func newRotated(t *testing.T) *rotated {
	t.Helper()
	root, err := ca.Create("Musterstadt", t0.Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old, err := root.IssueIntermediate("2026", t0.Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := root.IssueIntermediate("2027", t0.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	org, err := old.IssueOrganisation(ca.OrgRequest{OrgID: "org-baecker", Name: "Bäckerei Korn", Kind: ca.OrgMerchant, NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sellerCert := device(t, old, sk, "acc-seller", "dev-seller", ca.LevelSubstantial)
	mem, err := org.IssueMembership(ca.MembershipRequest{DevicePublicKey: sk.Public(), AccountID: "acc-seller", DeviceID: "dev-seller", Role: "seller", NotBefore: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	_, bk, _ := ed25519.GenerateKey(rand.Reader)
	buyerCert := device(t, cur, bk, "acc-buyer", "dev-buyer", ca.LevelSubstantial)
	r := &rotated{root: root, old: old, cur: cur, inters: []*x509.Certificate{cur.Certificate(), old.Certificate()},
		seller: Seller{Key: sk, DeviceCert: sellerCert, Membership: mem.Raw, OrgCert: org.Certificate().Raw},
		buyer:  Buyer{Key: bk, DeviceCert: buyerCert}}
	pool := r.pool(t)
	if r.sellerD, err = ca.VerifyDevice(sellerCert, pool, t0); err != nil {
		t.Fatal(err)
	}
	if r.buyerD, err = ca.VerifyDevice(buyerCert, pool, t0); err != nil {
		t.Fatal(err)
	}
	// Each status is signed by the intermediate that issued the device.
	r.buyer.SellerStatus = status(t, old, t0.Add(59*time.Minute), r.sellerD.Serial)
	r.buyer.BuyerStatus = status(t, cur, t0.Add(59*time.Minute), r.buyerD.Serial)
	return r
}

func (r *rotated) pool(t *testing.T) *x509.CertPool {
	t.Helper()
	p, err := ca.TrustPool(r.root.Certificate(), r.inters)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func status(t *testing.T, issuer *ca.CA, at time.Time, serial *big.Int) []byte {
	t.Helper()
	der, err := issuer.SignStatus(serial, nil, at, at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestContractUnderRotatedIntermediates: under an offline root, a seller
// certified by the retired intermediate and a buyer by the current one
// make a contract that verifies against the pinned root and the
// deployment's intermediates, with each embedded status checked against
// the intermediate that issued that device, and with the deployment's
// device revocation list signed by the current intermediate. The root
// alone does not reach either device.
func TestContractUnderRotatedIntermediates(t *testing.T) {
	r := newRotated(t)
	root := r.root.Certificate()
	offerJWS, err := SignOffer(offer(), r.seller, r.pool(t))
	if err != nil {
		t.Fatal(err)
	}
	signed := t0.Add(time.Hour)
	if _, err := Countersign(offerJWS, r.buyer, root, signed); !errors.Is(err, ErrCertificate) {
		t.Fatalf("countersigned with the root alone: %v", err)
	}
	contract, err := Countersign(offerJWS, r.buyer, root, signed, r.inters...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyContract(contract, VerifyOptions{CA: root, Intermediates: r.inters})
	if err != nil {
		t.Fatal(err)
	}
	if c.Buyer.DeviceID != "dev-buyer" || c.Offer.SellerDevice.DeviceID != "dev-seller" || !c.Offer.SellerCert.Equal(mustCert(t, r.seller.DeviceCert)) {
		t.Fatalf("contract %+v", c)
	}
	if _, err := VerifyContract(contract, VerifyOptions{CA: root}); !errors.Is(err, ErrCertificate) {
		t.Fatalf("verified with the root alone: %v", err)
	}

	// kanald's device list is signed by the current intermediate and names
	// revoked devices of every intermediate.
	crl := func(issuer *ca.CA, rev ...ca.Revoked) []byte {
		at := signed.Add(time.Hour)
		der, err := issuer.RevocationList(rev, big.NewInt(at.UnixNano()), at, at.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	opts := VerifyOptions{CA: root, Intermediates: r.inters, CRL: crl(r.cur)}
	if _, err := VerifyContract(contract, opts); err != nil {
		t.Fatalf("current list: %v", err)
	}
	opts.CRL = crl(r.cur, ca.Revoked{Serial: r.sellerD.Serial, At: signed.Add(-time.Minute)})
	if _, err := VerifyContract(contract, opts); !errors.Is(err, ErrRevoked) {
		t.Fatalf("seller of the retired intermediate revoked before signing: %v", err)
	}
}

// TestAttackStatusesUnderIntermediates: a status must be signed by the
// intermediate that issued the device it speaks for. One signed by the
// deployment's other intermediate, by an intermediate of another root
// offered among the deployment's, or a revocation list of another root,
// does not count.
func TestAttackStatusesUnderIntermediates(t *testing.T) {
	r := newRotated(t)
	root := r.root.Certificate()
	offerJWS, err := SignOffer(offer(), r.seller, r.pool(t))
	if err != nil {
		t.Fatal(err)
	}
	signed := t0.Add(time.Hour)
	wrong := r.buyer
	wrong.BuyerStatus = status(t, r.old, t0.Add(59*time.Minute), r.buyerD.Serial) // the buyer's device is the current one's
	if _, err := Countersign(offerJWS, wrong, root, signed, r.inters...); !errors.Is(err, ErrNoCRL) {
		t.Fatalf("a status signed by the other intermediate: %v", err)
	}

	other, err := ca.Create("Musterstadt", t0.Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueIntermediate("2027", t0.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Countersign(offerJWS, r.buyer, root, signed, append(r.inters, foreign.Certificate())...); !errors.Is(err, ErrCertificate) {
		t.Fatalf("a foreign intermediate was accepted: %v", err)
	}
	contract, err := Countersign(offerJWS, r.buyer, root, signed, r.inters...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyContract(contract, VerifyOptions{CA: root, Intermediates: append(r.inters, foreign.Certificate())}); !errors.Is(err, ErrCertificate) {
		t.Fatalf("verified with a foreign intermediate offered: %v", err)
	}
	at := signed.Add(time.Hour)
	list, err := foreign.RevocationList(nil, big.NewInt(at.UnixNano()), at, at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyContract(contract, VerifyOptions{CA: root, Intermediates: r.inters, CRL: list}); !errors.Is(err, ErrNoCRL) {
		t.Fatalf("a list of another root: %v", err)
	}
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
