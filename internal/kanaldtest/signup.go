package kanaldtest

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/identity"
	cautil "github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging/client"
)

// Device is an enrolled device of an account with a logged-in session.
type Device struct {
	AccountID, DeviceID string
	Key                 crypto.Signer
	Certificate         []byte              // PEM
	CA                  *x509.Certificate   // the deployment's device CA
	Intermediates       []*x509.Certificate // its issuing intermediates, if the root is offline
	Token               string              // the session token
	Identity            *idclient.Client    // identity's client with Token, approving with Key
}

// Verify signs email up as a user would: it asks for the code, reads it
// from the mail and verifies it. It returns the identity client (without a
// token) and the verified account with its setup token.
func (s *Server) Verify(t testing.TB, email string) (*idclient.Client, *identity.VerifyResponse) {
	t.Helper()
	ic := idclient.New(s.URL, nil)
	if err := ic.Signup(context.Background(), email); err != nil {
		t.Fatal(err)
	}
	v, err := ic.VerifySignup(context.Background(), email, s.Code(t, email))
	if err != nil {
		t.Fatal(err)
	}
	return ic, v
}

// SignUp signs email up, enrols a device named "phone" with key using the
// setup token, and logs it in with a low session (no password).
func (s *Server) SignUp(t testing.TB, email string, key crypto.Signer) *Device {
	t.Helper()
	ic, v := s.Verify(t, email)
	return s.Enrol(t, v.AccountID, ic.WithToken(v.SetupToken), "phone", key, "")
}

// Enrol enrols a device of account, named name, with key through enroller
// (identity's client with a setup token, or with a substantial session and
// the key of its device, as Device.Identity has them) and logs
// it in with password ("" for a low session).
func (s *Server) Enrol(t testing.TB, account string, enroller *idclient.Client, name string, key crypto.Signer, password string) *Device {
	t.Helper()
	ctx := context.Background()
	enr, err := enroller.EnrollDevice(ctx, name, key)
	if err != nil {
		t.Fatalf("enrol %q of %s: %v", name, account, err)
	}
	ic := idclient.New(s.URL, nil)
	sess, err := ic.Login(ctx, enr.DeviceID, key, password)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(enr.CA))
	if blk == nil {
		t.Fatalf("enrolment returned no PEM CA: %q", enr.CA)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	inters, err := cautil.ParseCertificatesPEM([]byte(strings.Join(enr.Intermediates, "")))
	if err != nil {
		t.Fatal(err)
	}
	return &Device{AccountID: account, DeviceID: enr.DeviceID, Key: key, Certificate: []byte(enr.Certificate), CA: ca, Intermediates: inters,
		Token: sess.Token, Identity: ic.WithToken(sess.Token).WithDevice(enr.DeviceID, key)}
}

// SDK returns a messaging client for d that talks to base (kanald or a
// proxy in front of it) and keeps its keys in store.
func (d *Device) SDK(t testing.TB, base string, store client.Store) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{BaseURL: base, Token: d.Token, AccountID: d.AccountID, DeviceID: d.DeviceID,
		DeviceKey: d.Key, DeviceCertificate: d.Certificate, CA: d.CA, Intermediates: d.Intermediates, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
