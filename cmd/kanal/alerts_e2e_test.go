package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

// mintLoggedDevice is the attack of a server's holder: with the node's CA
// key, its log key and its database, it enrolls a device for account that
// nobody asked for and logs it, as identity would. It returns the device id.
func mintLoggedDevice(t *testing.T, srv *kanaldtest.Server, account string) string {
	t.Helper()
	ctx := context.Background()
	caDir := filepath.Join(srv.DataDir, "ca")
	authority, _, err := ca.LoadOrCreateDir(caDir, "unused", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	device := "dev_minted_by_the_server"
	cert, err := authority.IssueDevice(ca.DeviceRequest{CSR: csr, AccountID: account, DeviceID: device, Level: ca.LevelSubstantial,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	skey, err := os.ReadFile(filepath.Join(caDir, "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/v1/log/key")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d, err := db.Open(ctx, "", srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := translog.New(ctx, translog.Options{DB: d, Signer: signer, Verifier: strings.TrimSpace(string(vkey))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO identity_devices (id, account_id, name, level, cert_pem, cert_serial, expires_at, created_at)
			VALUES ($1, $2, 'minted', 2, $3, $4, $5, $6)`, device, account, string(certPEM), cert.SerialNumber.String(), cert.NotAfter.Unix(), now); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO identity_device_certs (serial, device_id, not_after) VALUES ($1, $2, $3)`,
			cert.SerialNumber.String(), device, cert.NotAfter.Unix()); err != nil {
			return err
		}
		_, err := l.Append(ctx, tx, transparency.Entry{Kind: transparency.KindDevice, Account: account, Device: device,
			Cert: transparency.CertFingerprint(cert.Raw), Time: now})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return device
}

// TestAlertsCLI: Alice's device watches her account in the log. A phone
// she approves herself raises nothing; a device the server's holder mints
// for her and logs is reported by the next command that checks, printed
// by every command after it, and gone once acknowledged.
func TestAlertsCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := &session{t: t, work: t.TempDir(), vars: map[string]string{},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	s.run(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"))
	s.run(signUpSteps(s, srv, "bob", "bob@example.org", "BOB"))
	s.run([]step{
		{cmd: "kanal alerts", want: []string{"No alerts"}},
		{home: "alicephone", cmd: "kanal device request > alicephone.csr"},
		{cmd: "kanal device approve --name phone alicephone.csr > alicephone.pem",
			set: map[string]string{"PHONE": `Approved device (\S+) `}},
		{home: "alicephone", cmd: "kanal device install alicephone.pem"},
		{home: "alicephone", cmd: "kanal login"},
		{home: "alicephone", cmd: "kanal alerts", want: []string{"No alerts"}},
		{cmd: "kanal send $BOB 'Hallo'", want: []string{"sent"}, not: []string{"ALERT"}},
		{cmd: "kanal alerts", want: []string{"No alerts"}},
		{do: func(t *testing.T) { s.vars["MINTED"] = mintLoggedDevice(t, srv, s.vars["ALICE"]) }},
		// The next command that checks reports it...
		{cmd: "kanal send $BOB 'Noch da?'", want: []string{"ALERT: a device you do not know, $MINTED, was added to your account",
			"kanal device revoke $MINTED", "sent"}},
		// ...and so does the phone's monitor.
		{home: "alicephone", cmd: "kanal alerts", want: []string{"ALERT: a device you do not know, $MINTED"}},
		// Every command prints it until it is acknowledged.
		{cmd: "kanal whoami", want: []string{"ALERT: a device you do not know, $MINTED", "kanal alerts ack"}},
		{cmd: "kanal alerts", want: []string{"$MINTED", "kanal alerts ack"}},
		{cmd: "kanal device revoke $MINTED"},
		{cmd: "kanal alerts ack", want: []string{"Acknowledged 1 alert."}},
		{cmd: "kanal whoami", not: []string{"ALERT"}},
		{cmd: "kanal alerts", want: []string{"No alerts"}},
		{cmd: "kanal alerts ack", want: []string{"Acknowledged 0 alerts."}},
		{cmd: "kanal alerts extra", exit: 2},
	})
}
