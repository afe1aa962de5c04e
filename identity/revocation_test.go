package identity

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
)

func serialOf(t *testing.T, certPEM string) *big.Int {
	t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

func (e *env) status(serial *big.Int) resp {
	e.t.Helper()
	req, err := ca.StatusRequest(&x509.Certificate{SerialNumber: serial}, e.ca.Certificate())
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := http.Post(e.srv.URL+"/v1/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	return resp{status: r.StatusCode, body: b.Bytes(), header: r.Header}
}

// TestRevocationListsShared: two nodes on one database sign a list once
// and serve the same bytes; a revocation on one node is in the next list
// the other serves; a list is re-signed when it nears its next update.
func TestRevocationListsShared(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		other, err := New(Options{DB: e.d, CA: e.ca, Mailer: e.mail, Secret: e.secret, Now: e.clock.now, Argon2: &fastArgon, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		u := e.newUser("lena@example.de", "lena's long password")
		first, err := e.svc.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, node := range []*Service{e.svc, other, e.svc} {
			if again, err := node.CRL(ctx); err != nil || !bytes.Equal(again, first) {
				t.Fatalf("the list was signed again without a revocation: %v", err)
			}
		}
		// Node B has the list cached; the revocation happens on node A.
		e.must(e.do("DELETE", "/v1/devices/"+u.device, u.session.Token, nil), 204)
		next, err := other.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, revoked, err := ca.CheckRevokedAt(next, e.ca.Certificate(), serialOf(t, u.cert), e.clock.now()); err != nil || !revoked {
			t.Fatalf("node B served a list without node A's revocation: %v %v", revoked, err)
		}
		if mine, _ := e.svc.CRL(ctx); !bytes.Equal(mine, next) {
			t.Fatal("node A signed its own list instead of serving the stored one")
		}
		// Many requests at once on both nodes after a revocation: one list.
		v := e.newUser("vera@example.de", "vera's long password")
		e.must(e.do("DELETE", "/v1/devices/"+v.device, v.session.Token, nil), 204)
		lists := make([][]byte, 16)
		var wg sync.WaitGroup
		for i := range lists {
			wg.Add(1)
			go func() {
				defer wg.Done()
				node := e.svc
				if i%2 == 1 {
					node = other
				}
				lists[i], _ = node.CRL(ctx)
			}()
		}
		wg.Wait()
		for i := range lists {
			if !bytes.Equal(lists[i], lists[0]) || lists[i] == nil {
				t.Fatalf("concurrent requests got different lists (%d)", i)
			}
		}
		next = lists[0]
		// Near its next update the list is signed again, with a higher number.
		e.clock.advance(CRLRefresh)
		later, err := other.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l1, _ := x509.ParseRevocationList(next)
		l2, _ := x509.ParseRevocationList(later)
		if l2.Number.Cmp(l1.Number) <= 0 || !l2.ThisUpdate.After(l1.ThisUpdate) {
			t.Fatalf("refreshed list: number %v -> %v, this update %v -> %v", l1.Number, l2.Number, l1.ThisUpdate, l2.ThisUpdate)
		}
	})
}

// TestCertificateStatus: POST /v1/ocsp answers good, then revoked, signed
// by the CA; a repeated question gets the cached answer; a serial kanal
// never issued gets the unsigned "unauthorized" answer; bad input a
// problem.
func TestCertificateStatus(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("jonas@example.de", "jonas' long password")
		serial := serialOf(t, u.cert)
		r := e.status(serial)
		if r.status != 200 || r.header.Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("status: %d %q", r.status, r.header.Get("Content-Type"))
		}
		st, err := ca.CheckStatus(r.body, e.ca.Certificate(), serial, e.clock.now(), time.Minute)
		if err != nil || st.Revoked {
			t.Fatalf("good: %+v %v", st, err)
		}
		if again := e.status(serial); !bytes.Equal(again.body, r.body) {
			t.Fatal("a repeated status request was signed anew")
		}
		if _, err := ca.CheckStatus(r.body, e.ca.Certificate(), new(big.Int).Add(serial, big.NewInt(1)), e.clock.now(), time.Minute); err == nil {
			t.Fatal("a status accepted for another serial")
		}
		e.must(e.do("DELETE", "/v1/devices/"+u.device, u.session.Token, nil), 204)
		st, err = ca.CheckStatus(e.status(serial).body, e.ca.Certificate(), serial, e.clock.now(), time.Minute)
		if err != nil || !st.Revoked {
			t.Fatalf("after revocation: %+v %v", st, err)
		}
		unknown := e.status(big.NewInt(424242))
		if unknown.status != 200 || !bytes.Equal(unknown.body, ca.UnauthorizedStatus()) {
			t.Fatalf("unknown serial: %d %x", unknown.status, unknown.body)
		}
		if _, err := ca.CheckStatus(unknown.body, e.ca.Certificate(), big.NewInt(424242), e.clock.now(), time.Minute); err == nil {
			t.Fatal("an unauthorized answer checked as a status")
		}
		e.mustProblem(e.do("POST", "/v1/ocsp", "", "not an OCSP request"), 415, web.TypeUnsupportedMedia)
	})
}

// TestOrgCRL: removing a member revokes their membership certificates and
// the organisation's list, signed by the organisation certificate, names
// them at once; an unknown organisation has no list.
func TestOrgCRL(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		owner := e.newUser("olga@example.de", "olga's long password")
		var org Organisation
		e.must(e.do("POST", "/v1/admin/orgs", e.op, CreateOrgRequest{Name: "Bäckerei Korn", Kind: KindMerchant}), 201).decode(t, &org)
		e.must(e.do("POST", "/v1/admin/orgs/"+org.OrgID+"/verify", e.op, nil), 200).decode(t, &org)
		var m Member
		e.must(e.do("POST", "/v1/orgs/"+org.OrgID+"/members", e.op, AddMemberRequest{AccountID: owner.account, Role: RoleOwner}), 201).decode(t, &m)
		if len(m.Memberships) != 1 {
			t.Fatalf("memberships %+v", m.Memberships)
		}
		orgCert, _ := x509.ParseCertificate(func() []byte { b, _ := pem.Decode([]byte(org.Certificate)); return b.Bytes }())
		memSerial := serialOf(t, m.Memberships[0].MembershipCertificate)
		list := func() []byte {
			r := e.must(e.do("GET", "/v1/directory/orgs/"+org.OrgID+"/crl", "", nil), 200)
			return r.body
		}
		before := list()
		if _, revoked, err := ca.CheckRevoked(before, orgCert, memSerial); err != nil || revoked {
			t.Fatalf("a current member listed: %v %v", revoked, err)
		}
		if !bytes.Equal(list(), before) {
			t.Fatal("the organisation's list was signed again without a revocation")
		}
		e.must(e.do("DELETE", "/v1/orgs/"+org.OrgID+"/members/"+owner.account, e.op, nil), 204)
		after := list()
		if _, revoked, err := ca.CheckRevoked(after, orgCert, memSerial); err != nil || !revoked {
			t.Fatalf("the removed member's membership is not listed: %v %v", revoked, err)
		}
		if _, _, err := ca.CheckRevoked(after, e.ca.Certificate(), memSerial); err == nil {
			t.Fatal("the organisation's list verified under the deployment CA, not the organisation")
		}
		// The membership's own status, signed by the organisation, says the same.
		req, _ := ca.StatusRequest(&x509.Certificate{SerialNumber: memSerial}, orgCert)
		hr, err := http.Post(e.srv.URL+"/v1/directory/orgs/"+org.OrgID+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(hr.Body)
		hr.Body.Close()
		st, err := ca.CheckStatus(body.Bytes(), orgCert, memSerial, e.clock.now(), time.Minute)
		if err != nil || !st.Revoked {
			t.Fatalf("membership status after removal: %+v %v", st, err)
		}
		if _, err := ca.CheckStatus(body.Bytes(), e.ca.Certificate(), memSerial, e.clock.now(), time.Minute); err == nil {
			t.Fatal("a membership status checked against the deployment CA instead of the organisation")
		}
		// Asked with the deployment CA as issuer: not this responder's.
		req, _ = ca.StatusRequest(&x509.Certificate{SerialNumber: memSerial}, e.ca.Certificate())
		hr, err = http.Post(e.srv.URL+"/v1/directory/orgs/"+org.OrgID+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		body.Reset()
		body.ReadFrom(hr.Body)
		hr.Body.Close()
		if !bytes.Equal(body.Bytes(), ca.UnauthorizedStatus()) {
			t.Fatalf("a request for another issuer: %x", body.Bytes())
		}
		e.mustProblem(e.do("GET", "/v1/directory/orgs/org_nope/crl", "", nil), 404, web.TypeNotFound)
	})
}

// BenchmarkCRLWithFlood measures serving the device CRL with 100,000
// revoked, unexpired serials in the database: "cached" is every request
// after the first (one generation read), "sign" a request after each
// revocation (the list is read and signed anew).
func BenchmarkCRLWithFlood(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			d := dbtest.Open(b, engine, migrationSets()...)
			ctx := context.Background()
			c, err := ca.Create("bench", time.Now())
			if err != nil {
				b.Fatal(err)
			}
			svc, err := New(Options{DB: d, CA: c, Mailer: &memMailer{}, Secret: testSecret, Argon2: &fastArgon, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			err = d.Tx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO identity_accounts (id, email, created_at) VALUES ('acc_b', 'b@example.de', 0)`); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO identity_devices (id, account_id, name, level, cert_pem, cert_serial, expires_at, created_at)
					VALUES ('dev_b', 'acc_b', 'b', 1, '', '1', 0, 0)`); err != nil {
					return err
				}
				for i := 0; i < 100_000; i += 500 {
					var q strings.Builder
					q.WriteString(`INSERT INTO identity_device_certs (serial, device_id, not_after, revoked_at) VALUES `)
					for j := i; j < i+500; j++ {
						if j > i {
							q.WriteString(",")
						}
						fmt.Fprintf(&q, "('%d', 'dev_b', %d, %d)", new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 126), big.NewInt(int64(j))), now.Add(time.Hour).Unix(), now.Unix())
					}
					if _, err := tx.ExecContext(ctx, q.String()); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Run("cached", func(b *testing.B) {
				if _, err := svc.CRL(ctx); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := svc.CRL(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("sign", func(b *testing.B) {
				for b.Loop() {
					if _, err := d.Exec(ctx, `UPDATE identity_revocation_generations SET generation = generation + 1 WHERE scope = 'device'`); err != nil {
						b.Fatal(err)
					}
					if _, err := svc.CRL(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
