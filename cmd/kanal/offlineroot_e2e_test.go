package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestOffersUnderOfflineRootCLI: a deployment whose root key is kept
// offline ('kanald ca init --root-key') issues every certificate through
// an intermediate. With the real binaries: a merchant's offer is
// registered and countersigned, the contract is registered and a payment
// request made for it (kanald verifies both up to the root through the
// intermediate), 'kanal directory ca' writes the root and the intermediate,
// and 'kanal verify' checks the contract offline against that file, with
// the embedded statuses and with the device revocation list, which the
// intermediate signs. The root alone verifies nothing.
func TestOffersUnderOfflineRootCLI(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	rootKey := filepath.Join(t.TempDir(), "root.key")
	mk := exec.Command(bin.kanald, "ca", "init", "--root-key", rootKey, "--name", "Musterstadt")
	mk.Env = append(os.Environ(), "KANAL_CA_DIR="+caDir)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("kanald ca init: %v\n%s", err, out)
	}
	srv := kanaldtest.Start(t, bin.kanald, "KANAL_CA_DIR="+caDir)
	s := &session{t: t, work: t.TempDir(), vars: map[string]string{"DUE": time.Now().AddDate(0, 0, 14).Format(time.DateOnly)}, env: []string{
		"PATH=" + os.Getenv("PATH"),
		"KANAL_SERVER=" + srv.URL,
		"KANAL_PASSPHRASE=correct horse battery staple",
		"KANAL_PASSWORD=Tr0ub4dor&3-but-longer",
	}}
	signup := append(signUpSteps(s, srv, "mia", "mia@example.org", "MIA"), signUpSteps(s, srv, "carl", "carl@example.org", "CARL")...)
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run(append(signup, []step{
		{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }},
		{cmd: "kanal admin org create --kind merchant 'Bäckerei Korn'", env: op, set: map[string]string{"ORG": `(?m)^(\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role seller $ORG mia@example.org", env: op},
		{home: "carl", cmd: "kanal pay wait none --timeout 2s", exit: 1, want: []string{"nothing arrived"}},
		{home: "mia", cmd: "kanal offer send --org $ORG --to $CARL --item 'Brot|2|4.50|7'",
			want: []string{"Sent offer over EUR 9.00"}, set: map[string]string{"OFFER": `(?m)^(of_\S+)$`}},
		{home: "carl", cmd: "kanal offer sign --yes --out contract.jws", want: []string{"Offer $OFFER from Bäckerei Korn"},
			set: map[string]string{"CONTRACT": `(?m)^([0-9a-f]{64})$`}},
		{home: "mia", cmd: "kanal pay request --org $ORG --contract $CONTRACT --creditor 'Bäckerei Korn' --iban 'DE02 1203 0000 0000 2020 51' --purpose 'Auftrag $OFFER' --due $DUE --key req-1",
			want: []string{"EUR 9.00"}},
		{home: "carl", cmd: "kanal directory ca > ca.pem"},
		{do: func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(s.work, "ca.pem"))
			if err != nil {
				t.Fatal(err)
			}
			certs, err := ca.ParseCertificatesPEM(b)
			if err != nil || len(certs) != 2 {
				t.Fatalf("kanal directory ca wrote %d certificates (%v), want the root and the intermediate", len(certs), err)
			}
			root, _ := os.ReadFile(filepath.Join(caDir, ca.RootCertFile))
			if !strings.HasPrefix(string(b), string(root)) {
				t.Fatal("kanal directory ca does not begin with the deployment's root.pem")
			}
			os.WriteFile(filepath.Join(s.work, "root.pem"), root, 0o644)
		}},
		{home: "carl", cmd: "kanal directory ca --crl > crl.pem"},
		{cmd: "kanal verify contract.jws --ca ca.pem", want: []string{"Contract $CONTRACT verifies.", "role seller"}},
		{cmd: "kanal verify contract.jws --ca ca.pem --crl crl.pem", want: []string{"Contract $CONTRACT verifies.", "checked against the given revocation list"}},
		{cmd: "kanal verify contract.jws --ca root.pem", exit: 1, not: []string{"verifies."}},
	}...))
}
