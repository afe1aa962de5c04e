package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// caFingerprint is the SHA-256 of a kanald's CA certificate, in the form
// openssl prints it (upper-case hex pairs with colons), as a city would
// publish it.
func caFingerprint(t *testing.T, srv *kanaldtest.Server) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(srv.DataDir, "ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("ca.pem holds no PEM block")
	}
	sum := sha256.Sum256(blk.Bytes)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var pairs []string
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	return strings.Join(pairs, ":")
}

// TestAttackOtherCA: a citizen given the city's CA fingerprint
// (KANAL_CA_FINGERPRINT) is not enrolled by a server with another CA:
// the CA is checked before the setup token is spent, nothing is stored
// in the key store, and a pin that is not a fingerprint is refused.
func TestAttackOtherCA(t *testing.T) {
	city := kanaldtest.Start(t, bin.kanald)
	fake := kanaldtest.Start(t, bin.kanald)
	cityFP, fakeFP := caFingerprint(t, city), caFingerprint(t, fake)
	s := &session{t: t, work: t.TempDir(), vars: map[string]string{"CITYFP": cityFP, "FAKEFP": fakeFP},
		env: []string{"PATH=" + os.Getenv("PATH"), "KANAL_SERVER=" + fake.URL,
			"KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}}
	pin := "KANAL_CA_FINGERPRINT=$CITYFP"
	s.run([]step{
		// The fake server: the citizen has the city's fingerprint.
		{home: "anna", cmd: "kanal register anna@example.org"},
		{do: func(t *testing.T) { s.vars["CODE"] = fake.Code(t, "anna@example.org") }},
		{home: "anna", cmd: "kanal verify $CODE"},
		{home: "anna", cmd: "kanal password"},
		{home: "anna", cmd: "kanal device enroll", env: []string{pin}, exit: 1,
			want: []string{"the server's CA has fingerprint", "not the KANAL_CA_FINGERPRINT", "nothing was stored"}},
		{home: "anna", cmd: "kanal device show", exit: 1},
		// A pin that is not a fingerprint is refused, not ignored.
		{home: "anna", cmd: "kanal device enroll", env: []string{"KANAL_CA_FINGERPRINT=abc"}, exit: 1,
			want: []string{"not a SHA-256 fingerprint"}},
		{home: "anna", cmd: "kanal device show", exit: 1},
	})
	s.env[1] = "KANAL_SERVER=" + city.URL
	s.run([]step{
		{home: "ben", cmd: "kanal register ben@example.org"},
		{do: func(t *testing.T) { s.vars["CODE"] = city.Code(t, "ben@example.org") }},
		{home: "ben", cmd: "kanal verify $CODE"},
		{home: "ben", cmd: "kanal password"},
		// The published form: lower case works as well as openssl's.
		{home: "ben", cmd: "kanal device enroll", env: []string{"KANAL_CA_FINGERPRINT=" + strings.ToLower(cityFP)},
			want: []string{"Enrolled device"}},
		{home: "ben", cmd: "kanal login", want: []string{"level substantial"}},
		{home: "ben", cmd: "kanal device show --ca > ben-ca.pem"},
		{do: func(t *testing.T) {
			b, _ := os.ReadFile(filepath.Join(s.work, "ben-ca.pem"))
			c, _ := os.ReadFile(filepath.Join(city.DataDir, "ca", "ca.pem"))
			if !strings.Contains(string(b), strings.TrimSpace(string(c))) {
				t.Fatalf("the key store keeps another CA than the city's:\n%s", b)
			}
		}},
	})
	// The fake server never got Anna's request: her setup token there is
	// unspent, and without the pin she can still enrol there.
	s.env[1] = "KANAL_SERVER=" + fake.URL
	s.run([]step{
		{home: "anna", cmd: "kanal device enroll", want: []string{"Enrolled device"}},
		{home: "anna", cmd: "kanal device show --ca > anna-ca.pem"},
		{do: func(t *testing.T) {
			b, _ := os.ReadFile(filepath.Join(s.work, "anna-ca.pem"))
			c, _ := os.ReadFile(filepath.Join(fake.DataDir, "ca", "ca.pem"))
			if !strings.Contains(string(b), strings.TrimSpace(string(c))) {
				t.Fatalf("the key store keeps another CA than the server's:\n%s", b)
			}
		}},
	})
}
