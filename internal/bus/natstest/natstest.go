// Package natstest runs a real nats-server for tests, configured the way a
// production deployment should run it: TLS with a test CA, and only
// clients that present a user and password, an nkey or a JWT (.creds)
// get in. It generates every certificate, key and credential it needs in
// the test's temporary directory.
package natstest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Binary is the nats-server the tests run.
const Binary = "/usr/sbin/nats-server"

// Options chooses how the server authenticates.
type Options struct {
	// VerifyClients makes the server require a client certificate signed
	// by the test CA, as well as credentials.
	VerifyClients bool
	// JWT runs the server in operator mode: only clients with a .creds
	// file of a user the test operator's account signed get in (instead
	// of user/password and nkey users).
	JWT bool
}

// Server is a running nats-server and what a client needs to reach it.
type Server struct {
	URL string // nats://127.0.0.1:port

	CAFile         string // the test CA that signed the server's certificate
	OtherCAFile    string // a CA that signed nothing of this server's
	ClientCertFile string // a client certificate from the test CA
	ClientKeyFile  string
	User, Password string // a user/password user (not in JWT mode)
	NKeySeedFile   string // seed (mode 0600) of an nkey user (not in JWT mode)
	CredsFile      string // a .creds file (mode 0600), in JWT mode only

	Dir string
	cmd *exec.Cmd
	out *lockedBuffer
}

// Skip skips the test when nats-server is not installed, and fails it
// under CI, where it must be.
func Skip(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed under CI", Binary)
		}
		t.Skipf("%s not installed", Binary)
	}
}

// Start runs nats-server with TLS and authentication and waits until it
// listens. It stops when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Skip(t)
	s := &Server{Dir: t.TempDir(), out: &lockedBuffer{}}
	ca, caKey := newCA(t, "kanal test NATS CA")
	s.CAFile = s.write(t, "ca.pem", pemCert(ca.Raw), 0o644)
	other, _ := newCA(t, "some other CA")
	s.OtherCAFile = s.write(t, "other-ca.pem", pemCert(other.Raw), 0o644)

	srvCert, srvKey := issue(t, ca, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	serverCert := s.write(t, "server.pem", pemCert(srvCert), 0o644)
	serverKey := s.write(t, "server.key", pemKey(t, srvKey), 0o600)
	cliCert, cliKey := issue(t, ca, caKey, "kanald", x509.ExtKeyUsageClientAuth, nil)
	s.ClientCertFile = s.write(t, "client.pem", pemCert(cliCert), 0o644)
	s.ClientKeyFile = s.write(t, "client.key", pemKey(t, cliKey), 0o600)

	var auth string
	if o.JWT {
		auth = s.operatorMode(t)
	} else {
		s.User, s.Password = "kanal", randomHex(t, 16)
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		s.NKeySeedFile = s.write(t, "kanald.nk", string(seed)+"\n", 0o600)
		auth = fmt.Sprintf("authorization {\n  users: [\n    {user: %q, password: %q}\n    {nkey: %q}\n  ]\n}\n", s.User, s.Password, pub)
	}
	conf := fmt.Sprintf(`listen: "127.0.0.1:-1"
tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify: %v
  timeout: 5
}
%s`, serverCert, serverKey, s.CAFile, o.VerifyClients, auth)
	confFile := s.write(t, "nats.conf", conf, 0o600)

	s.cmd = exec.Command(Binary, "-c", confFile)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", s.out.String())
		}
	})
	listening := regexp.MustCompile(`Listening for client connections on (127\.0\.0\.1:\d+)`)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			s.out.Write([]byte(sc.Text() + "\n"))
			if m := listening.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("nats-server exited before it listened:\n%s", s.out.String())
		}
		s.URL = "nats://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("nats-server not listening after 30s:\n%s", s.out.String())
	}
	return s
}

func (s *Server) write(t testing.TB, name, data string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(s.Dir, name)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage, ip net.IP) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func pemKey(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Output returns what nats-server logged so far.
func (s *Server) Output() string { return s.out.String() }

// Env returns kanald's settings for this server with user and password
// over TLS.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"KANAL_NATS_URL":      s.URL,
		"KANAL_NATS_CA_FILE":  s.CAFile,
		"KANAL_NATS_USER":     s.User,
		"KANAL_NATS_PASSWORD": s.Password,
	}
}

// operatorMode creates a test operator, an account it signs and a user of
// that account with its .creds file, and returns the server settings that
// trust the operator and know the account.
func (s *Server) operatorMode(t testing.TB) string {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "kanal-test"
	opJWT, err := oc.Encode(op)
	must(err)
	acc, err := nkeys.CreateAccount()
	must(err)
	accPub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "KANAL"
	accJWT, err := ac.Encode(op)
	must(err)
	usr, err := nkeys.CreateUser()
	must(err)
	usrPub, _ := usr.PublicKey()
	usrSeed, _ := usr.Seed()
	uc := jwt.NewUserClaims(usrPub)
	uc.Name = "kanald"
	userJWT, err := uc.Encode(acc)
	must(err)
	creds, err := jwt.FormatUserConfig(userJWT, usrSeed)
	must(err)
	s.CredsFile = s.write(t, "kanald.creds", string(creds), 0o600)
	opFile := s.write(t, "operator.jwt", opJWT, 0o644)
	return fmt.Sprintf("operator: %q\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n}\n", opFile, accPub, accJWT)
}
