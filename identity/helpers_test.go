package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
	"log/slog"
)

// fastArgon keeps the suite quick; BenchmarkArgon2id measures the real
// parameters and TestPasswordRehash switches between the two.
var fastArgon = Argon2Params{Memory: 64, Time: 1, Threads: 1}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type memMailer struct {
	mu   sync.Mutex
	msgs []Message
}

func (m *memMailer) Send(_ context.Context, msg Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *memMailer) last(t testing.TB, to string) Message {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.msgs) - 1; i >= 0; i-- {
		if m.msgs[i].To == to {
			return m.msgs[i]
		}
	}
	t.Fatalf("no mail to %s", to)
	return Message{}
}

var codeRE = regexp.MustCompile(`\b\d{8}\b`)

type env struct {
	t      testing.TB
	d      *db.DB
	svc    *Service
	srv    *httptest.Server
	clock  *clock
	mail   *memMailer
	ca     *ca.CA
	op     string
	hookMu sync.Mutex
	hooks  []string
	secret []byte
}

// testSecret is the deployment secret of the tests' services.
var testSecret = bytes.Repeat([]byte{0x5e}, SecretSize)

func migrationSets() []db.Migrations { return []db.Migrations{Migrations(), translog.Migrations()} }

// newLog returns a transparency log over d with a fresh key.
func newLog(t testing.TB, d *db.DB) *translog.Log {
	t.Helper()
	skey, vkey, err := transparency.GenerateKey(rand.Reader, "kanal/test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := translog.New(context.Background(), translog.Options{DB: d, Signer: signer, Verifier: vkey})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// runDB runs fn against SQLite and PostgreSQL with a fresh server each.
func runDB(t *testing.T, fn func(t *testing.T, e *env)) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) { fn(t, newEnv(t, d)) })
}

func newEnv(t testing.TB, d *db.DB, opts ...func(*Options)) *env {
	t.Helper()
	c, err := ca.Create("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, d: d, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, mail: &memMailer{}, ca: c, secret: testSecret}
	o := Options{DB: d, CA: c, Mailer: e.mail, Now: e.clock.now, Argon2: &fastArgon, Secret: e.secret,
		Logger: slog.New(slog.DiscardHandler), Log: newLog(t, d)}
	for _, f := range opts {
		f(&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	svc.AddRevocationHook(func(ctx context.Context, tx *sql.Tx, id string) error {
		var n int
		// The hook runs inside the revoking transaction: it sees the device revoked.
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM identity_devices WHERE id = $1 AND revoked_at IS NOT NULL`, id).Scan(&n); err != nil {
			return err
		}
		if n == 1 {
			e.hookMu.Lock()
			e.hooks = append(e.hooks, id)
			e.hookMu.Unlock()
		}
		return nil
	})
	e.svc = svc
	mux := http.NewServeMux()
	svc.Register(mux)
	e.srv = httptest.NewServer(web.Handler(mux, web.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(e.srv.Close)
	var op string
	_, created, err := svc.EnsureOperator(context.Background(), OperatorOptions{Deliver: func(tok string, _ OperatorToken) error { op = tok; return nil }})
	if err != nil || !created {
		t.Fatalf("operator: %v %v", created, err)
	}
	e.op = op
	return e
}

type resp struct {
	status int
	body   []byte
	header http.Header
}

func (r resp) problemType() string {
	var p struct{ Type string }
	_ = json.Unmarshal(r.body, &p)
	return p.Type
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; body may be nil, a string (sent raw) or a value.
func (e *env) do(method, path, token string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, body: b, header: res.Header}
}

func (e *env) must(r resp, status int) resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

func (e *env) mustProblem(r resp, status int, typ web.ProblemType) {
	e.t.Helper()
	if r.status != status || r.problemType() != string(typ) {
		e.t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, typ)
	}
}

func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// signup runs sign-up and verification and returns the verify response.
func (e *env) signup(email string) VerifyResponse {
	e.t.Helper()
	e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: email}), 202)
	code := codeRE.FindString(e.mail.last(e.t, strings.ToLower(email)).Body)
	var v VerifyResponse
	e.must(e.do("POST", "/v1/signup/verify", "", VerifyRequest{Email: email, Code: code}), 200).decode(e.t, &v)
	return v
}

func newP256(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t testing.TB, key crypto.Signer) string {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func sign(t testing.TB, key crypto.Signer, msg []byte) string {
	var sig []byte
	var err error
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(msg)
		sig, err = ecdsa.SignASN1(rand.Reader, k, d[:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

type user struct {
	email, account, device, password string
	key                              crypto.Signer
	setup                            string
	session                          SessionResponse
	cert                             string
}

// enroll enrolls a device with token and returns the response.
func (e *env) enroll(token string, key crypto.Signer) EnrollResponse {
	e.t.Helper()
	var er EnrollResponse
	e.must(e.do("POST", "/v1/devices", token, EnrollRequest{Name: "Telefon", CSR: csrFor(e.t, key)}), 201).decode(e.t, &er)
	return er
}

// approve enrolls key as a further device of u's account, with u's
// session and u's device approving it with its key.
func (e *env) approve(u *user, key crypto.Signer) EnrollResponse {
	e.t.Helper()
	var c ChallengeResponse
	e.must(e.do("POST", "/v1/sessions/challenge", "", ChallengeRequest{DeviceID: u.device, Purpose: ChallengeApprove}), 200).decode(e.t, &c)
	csr := csrFor(e.t, key)
	der, _ := base64.StdEncoding.DecodeString(csr)
	req := EnrollRequest{Name: "Laptop", CSR: csr, ChallengeID: c.ChallengeID, Signature: sign(e.t, u.key, ApproveMessage(c.ChallengeID, u.device, c.Nonce, der))}
	var er EnrollResponse
	e.must(e.do("POST", "/v1/devices", u.session.Token, req), 201).decode(e.t, &er)
	return er
}

func (e *env) challenge(device string) ChallengeResponse {
	e.t.Helper()
	var c ChallengeResponse
	e.must(e.do("POST", "/v1/sessions/challenge", "", ChallengeRequest{DeviceID: device}), 200).decode(e.t, &c)
	return c
}

func (e *env) loginReq(device string, key crypto.Signer, password string) LoginRequest {
	e.t.Helper()
	c := e.challenge(device)
	return LoginRequest{ChallengeID: c.ChallengeID, DeviceID: device, Signature: sign(e.t, key, LoginMessage(c.ChallengeID, device, c.Nonce)), Password: password}
}

func (e *env) login(device string, key crypto.Signer, password string) SessionResponse {
	e.t.Helper()
	var s SessionResponse
	e.must(e.do("POST", "/v1/sessions", "", e.loginReq(device, key, password)), 201).decode(e.t, &s)
	return s
}

// newUser signs up, sets a password (unless empty), enrolls a P-256 device
// and logs in with the password.
func (e *env) newUser(email, password string) *user {
	e.t.Helper()
	u := &user{email: email, password: password, key: newP256(e.t)}
	v := e.signup(email)
	u.account, u.setup = v.AccountID, v.SetupToken
	if password != "" {
		e.must(e.do("PUT", "/v1/account/password", u.setup, PasswordRequest{Password: password}), 204)
	}
	er := e.enroll(u.setup, u.key)
	u.device, u.cert = er.DeviceID, er.Certificate
	u.session = e.login(u.device, u.key, password)
	return u
}
