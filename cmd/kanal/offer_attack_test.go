package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	pclient "github.com/kanal-server/kanal/payments/client"
	"github.com/kanal-server/kanal/payments/jws"
)

// offerWorld is a kanald (SQLite, or PostgreSQL in a fresh schema) with a
// verified merchant, for the offer attack tests.
type offerWorld struct {
	srv   *kanaldtest.Server
	dbURL string
	op    *idclient.Client
	orgID string
	ca    *x509.Certificate
	work  string
}

func newOfferWorld(t *testing.T, postgres bool) *offerWorld {
	t.Helper()
	w := &offerWorld{work: t.TempDir()}
	var env []string
	if postgres {
		base := dbtest.PostgresURL(t)
		w.dbURL = dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))
		env = append(env, "KANAL_DATABASE_URL="+w.dbURL)
	}
	w.srv = kanaldtest.Start(t, bin.kanald, env...)
	ctx := context.Background()
	w.op = idclient.New(w.srv.URL, nil).WithToken(w.srv.OperatorToken(t))
	org, err := w.op.CreateOrg(ctx, "Bäckerei Korn", "merchant")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.op.VerifyOrg(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	w.orgID = org.OrgID
	dir, err := w.op.DirectoryCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(dir.Certificate))
	if w.ca, err = x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(w.work, "ca.pem"), []byte(dir.Certificate), 0o644)
	return w
}

// person is an account with a password and an enrolled device holding a
// substantial session.
type person struct {
	*kanaldtest.Device
	key crypto.Signer
	der []byte // device certificate
	pay *pclient.Client
}

func (w *offerWorld) person(t *testing.T, email string) *person {
	t.Helper()
	ctx := context.Background()
	const password = "a long enough password for kanal"
	ic, v := w.srv.Verify(t, email)
	setup := ic.WithToken(v.SetupToken)
	if err := setup.SetPassword(ctx, password, ""); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := w.srv.Enrol(t, v.AccountID, setup, "laptop", key, password)
	blk, _ := pem.Decode(d.Certificate)
	return &person{Device: d, key: key, der: blk.Bytes, pay: pclient.New(w.srv.URL, d.Token, nil)}
}

// seller makes p a seller of the organisation and returns what p then
// holds: the membership and organisation certificates.
func (w *offerWorld) seller(t *testing.T, p *person) jws.Seller {
	t.Helper()
	ctx := context.Background()
	if _, err := w.op.AddMember(ctx, w.orgID, p.AccountID, "seller"); err != nil {
		t.Fatal(err)
	}
	org, err := p.Identity.DirectoryOrg(ctx, w.orgID)
	if err != nil {
		t.Fatal(err)
	}
	s := jws.Seller{Key: p.key, DeviceCert: p.der, OrgCert: derOf(t, org.Certificate)}
	for _, m := range org.Members {
		for _, d := range m.Devices {
			if d.DeviceID == p.DeviceID {
				s.Membership = derOf(t, d.MembershipCertificate)
			}
		}
	}
	if s.Membership == nil {
		t.Fatal("no membership certificate for the seller's device")
	}
	return s
}

func derOf(t *testing.T, p string) []byte {
	t.Helper()
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		t.Fatalf("not PEM: %q", p)
	}
	return blk.Bytes
}

func (w *offerWorld) sign(t *testing.T, s jws.Seller, id, buyer string, issued time.Time) string {
	t.Helper()
	issued = issued.UTC().Truncate(time.Second)
	o := jws.Offer{Version: 1, OfferID: id, OrgID: w.orgID, OrgName: "Bäckerei Korn", BuyerAccount: buyer,
		Items:    []jws.Item{{Description: "Hochzeitstorte", Quantity: 1, UnitCents: 18900, VATBasisPoints: 700}},
		Currency: "EUR", IssuedAt: issued, ValidUntil: issued.Add(72 * time.Hour)}
	o.TotalCents, o.VATCents = jws.Totals(o.Items)
	roots := x509.NewCertPool()
	roots.AddCert(w.ca)
	signed, err := jws.SignOffer(o, s, roots)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// countersign is the buyer's side, with the CA's signed statuses of both
// devices fetched now.
func (w *offerWorld) countersign(t *testing.T, buyer *person, offer string) string {
	t.Helper()
	ctx := context.Background()
	roots := x509.NewCertPool()
	roots.AddCert(w.ca)
	vo, err := jws.VerifyOffer(offer, roots)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b := jws.Buyer{Key: buyer.key, DeviceCert: buyer.der}
	if _, b.SellerStatus, err = buyer.Identity.CertificateStatus(ctx, &x509.Certificate{SerialNumber: vo.SellerDevice.Serial}, w.ca, now); err != nil {
		t.Fatal(err)
	}
	own, _ := x509.ParseCertificate(buyer.der)
	if _, b.BuyerStatus, err = buyer.Identity.CertificateStatus(ctx, own, w.ca, now); err != nil {
		t.Fatal(err)
	}
	c, err := jws.Countersign(offer, b, w.ca, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// counts is what a refused registration must leave unchanged.
func (w *offerWorld) counts(t *testing.T) [2]int64 {
	t.Helper()
	d, err := db.Open(context.Background(), w.dbURL, w.srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n [2]int64
	for i, table := range []string{"payments_offers", "payments_contracts"} {
		if err := d.QueryRow(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n[i]); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// kanal runs the real CLI in the world's work directory, offline unless
// KANAL_SERVER is given in env.
func (w *offerWorld) kanal(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin.kanal, args...)
	cmd.Dir = w.work
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + w.work, "KANAL_HOME=" + filepath.Join(w.work, "home")}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func problemType(err error) string {
	var p *idclient.Problem
	if errors.As(err, &p) {
		return p.Type
	}
	return ""
}

func offerEngines(t *testing.T, f func(t *testing.T, postgres bool)) {
	t.Run("sqlite", func(t *testing.T) { f(t, false) })
	t.Run("postgres", func(t *testing.T) {
		dbtest.PostgresURL(t)
		f(t, true)
	})
}

// TestAttackBackdatedOfferByRemovedMember: the adversary is a seller who
// has been removed from the organisation but still holds their device
// key, device certificate, old membership certificate and the
// organisation certificate. They sign an offer dated back to when they
// were a member. kanald refuses to register it (or a contract a citizen
// countersigned on it), and nothing is stored; 'kanal verify' with the
// organisation's revocation list (a file, or fetched) refuses it offline.
func TestAttackBackdatedOfferByRemovedMember(t *testing.T) {
	offerEngines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		w := newOfferWorld(t, postgres)
		mallory, carl := w.person(t, "mallory@example.org"), w.person(t, "carl@example.org")
		held := w.seller(t, mallory)

		// While a member, mallory's offers register and become contracts.
		good := w.sign(t, held, "of-good", carl.AccountID, time.Now())
		if _, _, err := mallory.pay.RegisterOffer(ctx, good); err != nil {
			t.Fatalf("a current member's offer: %v", err)
		}
		if _, _, err := carl.pay.RegisterContract(ctx, "c-good", w.countersign(t, carl, good)); err != nil {
			t.Fatalf("a contract on it: %v", err)
		}

		if err := w.op.RemoveMember(ctx, w.orgID, mallory.AccountID); err != nil {
			t.Fatal(err)
		}
		before := w.counts(t)
		// Dated 30 seconds back, to when mallory was still a member: every
		// certificate in it was valid then.
		backdated := w.sign(t, held, "of-backdated", carl.AccountID, time.Now().Add(-30*time.Second))
		_, _, err := mallory.pay.RegisterOffer(ctx, backdated)
		if err == nil || problemType(err) != "urn:kanal:problem:forbidden" {
			t.Fatalf("kanald registered a removed member's back-dated offer: %v", err)
		}
		// A citizen who countersigns it cannot register the contract.
		if _, _, err := carl.pay.RegisterContract(ctx, "c-backdated", w.countersign(t, carl, backdated)); err == nil {
			t.Fatal("kanald registered a contract on a removed member's back-dated offer")
		}
		if after := w.counts(t); after != before {
			t.Fatalf("refused registrations changed the database: %v -> %v", before, after)
		}

		// Offline: without the organisation's list the signature checks
		// out, and kanal verify says that membership was not checked; with
		// the list (a file, or fetched) the offer is refused.
		os.WriteFile(filepath.Join(w.work, "backdated.jws"), []byte(backdated+"\n"), 0o644)
		out, err := w.kanal(t, nil, "verify", "backdated.jws", "--ca", "ca.pem")
		if err != nil || !strings.Contains(out, "Membership revocation not checked") {
			t.Fatalf("verify without the organisation's list: %v\n%s", err, out)
		}
		out, err = w.kanal(t, []string{"KANAL_SERVER=" + w.srv.URL}, "directory", "ca", "--org-crl", w.orgID)
		if err != nil || !strings.Contains(out, "BEGIN X509 CRL") {
			t.Fatalf("kanal directory ca --org-crl: %v\n%s", err, out)
		}
		os.WriteFile(filepath.Join(w.work, "org-crl.pem"), []byte(out), 0o644)
		for _, args := range [][]string{
			{"verify", "backdated.jws", "--ca", "ca.pem", "--org-crl", "org-crl.pem"},
			{"verify", "backdated.jws", "--ca", "ca.pem", "--fetch"},
		} {
			out, err := w.kanal(t, []string{"KANAL_SERVER=" + w.srv.URL}, args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "revoked") || strings.Contains(out, "verify,") {
				t.Fatalf("kanal %s accepted a removed member's offer: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		// The good offer, made while mallory was a member, is on the same
		// list too: an offer alone cannot show when it was made. The
		// registered contract on it still verifies with the list.
		os.WriteFile(filepath.Join(w.work, "good.jws"), []byte(good+"\n"), 0o644)
		if out, err := w.kanal(t, nil, "verify", "good.jws", "--ca", "ca.pem", "--org-crl", "org-crl.pem"); err == nil {
			t.Fatalf("an offer whose membership is revoked verified with the list:\n%s", out)
		}
	})
}

// TestAttackOfferClockSkew: the adversary is a current seller who dates an
// offer far from now (into the future, or back beyond MaxClockSkew), to
// make it outlive a later removal or look older than it is. kanald
// refuses to register either, and stores nothing.
func TestAttackOfferClockSkew(t *testing.T) {
	offerEngines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		w := newOfferWorld(t, postgres)
		sam, carl := w.person(t, "sam@example.org"), w.person(t, "carl@example.org")
		held := w.seller(t, sam)
		before := w.counts(t)
		for name, at := range map[string]time.Time{
			"an hour ahead":       time.Now().Add(time.Hour),
			"four minutes back":   time.Now().Add(-4 * time.Minute), // certificates allow five minutes of skew
			"three minutes ahead": time.Now().Add(3 * time.Minute),
		} {
			offer := w.sign(t, held, "of-skew", carl.AccountID, at)
			_, _, err := sam.pay.RegisterOffer(ctx, offer)
			if err == nil || problemType(err) != "urn:kanal:problem:validation" || !strings.Contains(err.Error(), "issued_at") {
				t.Fatalf("%s: kanald registered an offer dated %s: %v", name, at.UTC().Format(time.RFC3339), err)
			}
		}
		if after := w.counts(t); after != before {
			t.Fatalf("refused offers changed the database: %v -> %v", before, after)
		}
		// Dated now, the same seller's offer registers.
		if _, _, err := sam.pay.RegisterOffer(ctx, w.sign(t, held, "of-now", carl.AccountID, time.Now())); err != nil {
			t.Fatalf("an offer dated now: %v", err)
		}
	})
}
