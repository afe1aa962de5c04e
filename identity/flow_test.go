package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
)

// TestFullFlow is a citizen's first day: sign-up, password, a P-256 and an
// Ed25519 device, a substantial login, /v1/me and the device list.
func TestFullFlow(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("Anna@Example.de", "correct horse battery")
		if u.session.Level != LevelSubstantial {
			t.Fatalf("level %s", u.session.Level)
		}
		var me MeResponse
		e.must(e.do("GET", "/v1/me", u.session.Token, nil), 200).decode(t, &me)
		if me.Email != "anna@example.de" || me.AccountID != u.account || me.DeviceID != u.device || me.Level != LevelSubstantial {
			t.Fatalf("me = %+v", me)
		}
		// A second device, Ed25519, enrolled with the substantial session.
		_, edKey, _ := ed25519.GenerateKey(rand.Reader)
		er := e.approve(u, edKey)
		if er.Level != LevelSubstantial {
			t.Fatalf("second device level %s", er.Level)
		}
		low := e.login(er.DeviceID, edKey, "")
		if low.Level != LevelLow {
			t.Fatalf("login without password: %s", low.Level)
		}
		var dl DeviceList
		e.must(e.do("GET", "/v1/devices", low.Token, nil), 200).decode(t, &dl)
		if len(dl.Devices) != 2 || dl.Devices[0].Status != StatusActive {
			t.Fatalf("devices %+v", dl)
		}
		// The certificate says what the server says.
		b, _ := pem.Decode([]byte(er.Certificate))
		id, err := ca.VerifyDevice(b.Bytes, e.ca.Pool(), e.clock.now())
		if err != nil || id.AccountID != u.account || id.DeviceID != er.DeviceID || id.Level != ca.LevelSubstantial {
			t.Fatalf("certificate %+v %v", id, err)
		}
		// Renewal with a new key, proved by the old one (Ed25519 here),
		// revokes the old certificate. A substantial session of another
		// device of the account may ask for it.
		var rn EnrollResponse
		newKey := newP256(t)
		e.must(e.do("POST", "/v1/devices/"+er.DeviceID+"/renew", u.session.Token, e.renewProof(er.DeviceID, edKey, csrFor(t, newKey))), 200).decode(t, &rn)
		if rn.DeviceID != er.DeviceID || rn.Certificate == er.Certificate {
			t.Fatal("renewal did not issue a new certificate")
		}
		if !crlLists(t, e, id.Serial) {
			t.Fatal("replaced certificate not on the CRL")
		}
		// The key change ended the device's sessions.
		e.mustProblem(e.do("GET", "/v1/me", low.Token, nil), 401, TypeInvalidToken)
		// Logout kills the session.
		low = e.login(er.DeviceID, newKey, "")
		e.must(e.do("DELETE", "/v1/sessions/current", low.Token, nil), 204)
		e.mustProblem(e.do("GET", "/v1/me", low.Token, nil), 401, TypeInvalidToken)
	})
}

func crlLists(t *testing.T, e *env, serial *big.Int) bool {
	t.Helper()
	r := e.must(e.do("GET", "/v1/directory/crl", "", nil), 200)
	if ct := r.header.Get("Content-Type"); ct != "application/pkix-crl" {
		t.Fatalf("crl content type %q", ct)
	}
	_, revoked, err := ca.CheckRevoked(r.body, e.ca.Certificate(), serial)
	if err != nil {
		t.Fatal(err)
	}
	return revoked
}

// TestSignupBadInputs: every bad sign-up input has its problem type and
// leaves the accounts table as it was.
func TestSignupBadInputs(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		for _, addr := range []string{"", "no-at-sign", "a@b", "Anna <anna@example.de>", "<anna@example.de>", "anna@example.de\r\nBcc: x@y.de", "a b@example.de", strings.Repeat("a", 250) + "@example.de"} {
			e.mustProblem(e.do("POST", "/v1/signup", "", SignupRequest{Email: addr}), 400, TypeInvalidEmail)
		}
		e.mustProblem(e.do("POST", "/v1/signup", "", `{"email":"a@example.de","admin":true}`), 400, web.TypeInvalidJSON)
		e.mustProblem(e.do("POST", "/v1/signup", "", `{"email":"`+strings.Repeat("a", 5000)+`@example.de"}`), 413, web.TypeTooLarge)
		if n := e.count("identity_signups"); n != 0 {
			t.Fatalf("%d sign-ups after bad input", n)
		}

		e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: "bert@example.de"}), 202)
		code := codeRE.FindString(e.mail.last(t, "bert@example.de").Body)
		wrong := "00000000"
		if code == wrong {
			wrong = "11111111"
		}
		verify := func(c string) resp {
			return e.do("POST", "/v1/signup/verify", "", VerifyRequest{Email: "bert@example.de", Code: c})
		}
		// Five wrong attempts use up the code: the right one then fails too.
		for i := 0; i < MaxCodeAttempts; i++ {
			e.mustProblem(verify(wrong), 400, TypeInvalidCode)
		}
		e.mustProblem(verify(code), 400, TypeInvalidCode)
		if n := e.count("identity_accounts"); n != 0 {
			t.Fatalf("%d accounts after exhausted code", n)
		}

		// Expired code.
		e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: "bert@example.de"}), 202)
		code = codeRE.FindString(e.mail.last(t, "bert@example.de").Body)
		e.clock.advance(CodeLifetime + time.Second)
		e.mustProblem(verify(code), 400, TypeInvalidCode)

		// A fresh code works once; reuse fails.
		e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: "bert@example.de"}), 202)
		code = codeRE.FindString(e.mail.last(t, "bert@example.de").Body)
		e.must(verify(code), 200)
		e.mustProblem(verify(code), 400, TypeInvalidCode)
		if n := e.count("identity_accounts"); n != 1 {
			t.Fatalf("%d accounts", n)
		}

		// No enumeration: the registered address gets the same answer and a
		// notice without a code.
		r := e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: "Bert@example.de"}), 202)
		if strings.TrimSpace(string(r.body)) != `{"status":"code_sent"}` {
			t.Fatalf("body %s", r.body)
		}
		if m := e.mail.last(t, "bert@example.de"); codeRE.MatchString(m.Body) || !strings.Contains(m.Body, "already have an account") {
			t.Fatalf("notice mail: %q", m.Body)
		}
		// Rate limit per address.
		e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: "carl@example.de"}), 202)
		var last resp
		for i := 0; i < MaxSignupsPerWindow; i++ {
			last = e.do("POST", "/v1/signup", "", SignupRequest{Email: "carl@example.de"})
		}
		e.mustProblem(last, 429, web.TypeRateLimited)
		if last.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
	})
}

// TestPasswordRules: length limits, and a change needs the current password.
func TestPasswordRules(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		v := e.signup("dora@example.de")
		e.mustProblem(e.do("PUT", "/v1/account/password", v.SetupToken, PasswordRequest{Password: "short"}), 400, TypeWeakPassword)
		e.mustProblem(e.do("PUT", "/v1/account/password", v.SetupToken, PasswordRequest{Password: strings.Repeat("x", MaxPasswordBytes+1)}), 400, TypeWeakPassword)
		e.mustProblem(e.do("PUT", "/v1/account/password", v.SetupToken, `{"password":"long enough password","extra":1}`), 400, web.TypeInvalidJSON)
		if pw, _ := e.svc.accountPassword(context.Background(), v.AccountID); pw != "" {
			t.Fatal("password set by a bad request")
		}
		e.must(e.do("PUT", "/v1/account/password", v.SetupToken, PasswordRequest{Password: "first long password"}), 204)
		pw, _ := e.svc.accountPassword(context.Background(), v.AccountID)
		if !strings.HasPrefix(pw, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Fatalf("stored %q", pw)
		}
		key := newP256(t)
		er := e.enroll(v.SetupToken, key)
		s := e.login(er.DeviceID, key, "first long password")
		e.mustProblem(e.do("PUT", "/v1/account/password", s.Token, PasswordRequest{Password: "second long password"}), 403, TypePasswordRequired)
		e.mustProblem(e.do("PUT", "/v1/account/password", s.Token, PasswordRequest{Password: "second long password", CurrentPassword: "wrong wrong wrong"}), 403, TypePasswordRequired)
		if pw2, _ := e.svc.accountPassword(context.Background(), v.AccountID); pw2 != pw {
			t.Fatal("password changed without the current one")
		}
		e.must(e.do("PUT", "/v1/account/password", s.Token, PasswordRequest{Password: "second long password", CurrentPassword: "first long password"}), 204)
		e.login(er.DeviceID, key, "second long password")
	})
}

// TestPasswordRehash: a hash with old parameters is replaced at login.
func TestPasswordRehash(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("erik@example.de", "a long password here")
		e.svc.argon = Argon2Params{Memory: 128, Time: 1, Threads: 1}
		e.login(u.device, u.key, u.password)
		pw, _ := e.svc.accountPassword(context.Background(), u.account)
		if !strings.Contains(pw, "$m=128,t=1,p=1$") {
			t.Fatalf("not rehashed: %s", pw)
		}
		e.login(u.device, u.key, u.password)
	})
}

// TestEnrollBadInputs: bad CSRs, RSA, a spent setup token and a low
// session are refused and no device is stored.
func TestEnrollBadInputs(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		v := e.signup("fritz@example.de")
		good := csrFor(t, newP256(t))
		der, _ := base64.StdEncoding.DecodeString(good)
		der[len(der)-3] ^= 0xff // break the signature
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
		cases := []struct {
			body   any
			status int
			typ    web.ProblemType
		}{
			{EnrollRequest{Name: "x", CSR: base64.StdEncoding.EncodeToString(der)}, 400, TypeInvalidCSR},
			{EnrollRequest{Name: "x", CSR: csrFor(t, rsaKey)}, 400, TypeUnsupportedKey},
			{EnrollRequest{Name: "x", CSR: "not base64!"}, 400, TypeInvalidCSR},
			{EnrollRequest{Name: "", CSR: good}, 400, web.TypeValidation},
			{EnrollRequest{Name: "a\x00b", CSR: good}, 400, web.TypeValidation},
			{`{"name":"x","csr":"` + good + `","level":"high"}`, 400, web.TypeInvalidJSON},
			{`{"name":"x","csr":"` + strings.Repeat("A", 40<<10) + `"}`, 413, web.TypeTooLarge},
		}
		for _, c := range cases {
			e.mustProblem(e.do("POST", "/v1/devices", v.SetupToken, c.body), c.status, c.typ)
		}
		if n := e.count("identity_devices"); n != 0 {
			t.Fatalf("%d devices after bad input", n)
		}
		key := newP256(t)
		er := e.enroll(v.SetupToken, key)
		if er.Level != LevelLow {
			t.Fatalf("level without password %s", er.Level)
		}
		// The setup token enrolled its one device.
		e.mustProblem(e.do("POST", "/v1/devices", v.SetupToken, EnrollRequest{Name: "x", CSR: good}), 403, web.TypeForbidden)
		// A low session cannot add devices.
		s := e.login(er.DeviceID, key, "")
		e.mustProblem(e.do("POST", "/v1/devices", s.Token, EnrollRequest{Name: "x", CSR: good}), 403, web.TypeInsufficientLevel)
		if n := e.count("identity_devices"); n != 1 {
			t.Fatalf("%d devices", n)
		}
	})
}

// TestLoginBadInputs: wrong passwords, bad signatures, expired, replayed and
// foreign challenges, and revoked devices.
func TestLoginBadInputs(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("gina@example.de", "gina's long password")
		nopw := e.newUser("hans@example.de", "")
		sessions := e.count("identity_sessions")

		// Wrong password; and a password for an account without one: same answer.
		r1 := e.do("POST", "/v1/sessions", "", e.loginReq(u.device, u.key, "not the password"))
		r2 := e.do("POST", "/v1/sessions", "", e.loginReq(nopw.device, nopw.key, "not the password"))
		e.mustProblem(r1, 401, TypeInvalidCredentials)
		e.mustProblem(r2, 401, TypeInvalidCredentials)
		var p1, p2 web.Problem
		r1.decode(t, &p1)
		r2.decode(t, &p2)
		if p1.Detail != p2.Detail || p1.Title != p2.Title {
			t.Fatalf("answers differ: %s / %s", r1.body, r2.body)
		}
		// Signature by another key.
		req := e.loginReq(u.device, newP256(t), "")
		e.mustProblem(e.do("POST", "/v1/sessions", "", req), 401, TypeInvalidCredentials)
		// Replay of a used challenge (even with a good signature).
		good := e.loginReq(u.device, u.key, "")
		e.must(e.do("POST", "/v1/sessions", "", good), 201)
		sessions++
		e.mustProblem(e.do("POST", "/v1/sessions", "", good), 401, TypeInvalidChallenge)
		// Expired challenge.
		late := e.loginReq(u.device, u.key, "")
		e.clock.advance(ChallengeLifetime + time.Second)
		e.mustProblem(e.do("POST", "/v1/sessions", "", late), 401, TypeInvalidChallenge)
		// A challenge for one device used for another (foreign) device.
		c := e.challenge(u.device)
		foreign := LoginRequest{ChallengeID: c.ChallengeID, DeviceID: nopw.device, Signature: sign(t, nopw.key, LoginMessage(c.ChallengeID, nopw.device, c.Nonce))}
		e.mustProblem(e.do("POST", "/v1/sessions", "", foreign), 401, TypeInvalidChallenge)
		// Malformed bodies.
		e.mustProblem(e.do("POST", "/v1/sessions", "", `{"challenge_id":"x","device_id":"y","signature":"AA==","otp":"1"}`), 400, web.TypeInvalidJSON)
		e.mustProblem(e.do("POST", "/v1/sessions", "", LoginRequest{ChallengeID: "a/b", DeviceID: u.device, Signature: "AA=="}), 400, web.TypeValidation)
		if n := e.count("identity_sessions"); n != sessions {
			t.Fatalf("%d sessions, want %d", n, sessions)
		}
		// Revoked device: challenge and login refused.
		pending := e.loginReq(nopw.device, nopw.key, "")
		e.must(e.do("DELETE", "/v1/devices/"+nopw.device, nopw.session.Token, nil), 204)
		e.mustProblem(e.do("POST", "/v1/sessions/challenge", "", ChallengeRequest{DeviceID: nopw.device}), 401, TypeDeviceRevoked)
		e.mustProblem(e.do("POST", "/v1/sessions", "", pending), 401, TypeInvalidChallenge)
	})
}

// TestLoginThrottle: ten wrong passwords in a row are throttled with 429
// and Retry-After; after the lockout the right password works.
func TestLoginThrottle(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("ida@example.de", "ida's long password")
		var limited int
		for i := 0; i < 10; i++ {
			r := e.do("POST", "/v1/sessions", "", e.loginReq(u.device, u.key, "wrong password!"))
			switch r.status {
			case 401:
			case 429:
				limited++
				if r.header.Get("Retry-After") == "" || r.problemType() != string(web.TypeRateLimited) {
					t.Fatalf("429 without Retry-After: %v %s", r.header, r.body)
				}
			default:
				t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
			}
		}
		if limited == 0 {
			t.Fatal("ten wrong passwords were never throttled")
		}
		// Even the right password waits out the lockout...
		e.mustProblem(e.do("POST", "/v1/sessions", "", e.loginReq(u.device, u.key, u.password)), 429, web.TypeRateLimited)
		// ...and works after it.
		e.clock.advance(MaxLockout)
		if s := e.login(u.device, u.key, u.password); s.Level != LevelSubstantial {
			t.Fatalf("level %s", s.Level)
		}
	})
}

// TestRefreshRotation: refresh rotates; an old refresh token revokes the family.
func TestRefreshRotation(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("jan@example.de", "jan's long password")
		var s2 SessionResponse
		e.must(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: u.session.RefreshToken}), 201).decode(t, &s2)
		if s2.Level != LevelSubstantial || s2.RefreshToken == u.session.RefreshToken {
			t.Fatalf("refresh %+v", s2)
		}
		e.must(e.do("GET", "/v1/me", s2.Token, nil), 200)
		e.mustProblem(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: u.session.RefreshToken}), 401, TypeRefreshReused)
		e.mustProblem(e.do("GET", "/v1/me", s2.Token, nil), 401, TypeInvalidToken)
		e.mustProblem(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: s2.RefreshToken}), 401, TypeInvalidToken)
		// Sessions expire.
		s3 := e.login(u.device, u.key, "")
		e.clock.advance(SessionLifetime)
		e.mustProblem(e.do("GET", "/v1/me", s3.Token, nil), 401, TypeSessionExpired)
	})
}

// TestRevocation: after DELETE /v1/devices/{id} the device's next request
// is 401 device-revoked, the directory says revoked, the CRL lists the
// serial, and the hooks ran in the transaction.
func TestRevocation(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("karl@example.de", "karl's long password")
		key2 := newP256(t)
		er := e.approve(u, key2)
		s2 := e.login(er.DeviceID, key2, u.password)
		other := e.newUser("lena@example.de", "lena's long password")
		// A foreign device cannot be revoked or renewed.
		e.mustProblem(e.do("DELETE", "/v1/devices/"+er.DeviceID, other.session.Token, nil), 404, web.TypeNotFound)
		e.mustProblem(e.do("POST", "/v1/devices/"+er.DeviceID+"/renew", other.session.Token, RenewRequest{CSR: csrFor(t, key2)}), 404, web.TypeNotFound)

		e.must(e.do("DELETE", "/v1/devices/"+er.DeviceID, u.session.Token, nil), 204)
		e.mustProblem(e.do("GET", "/v1/me", s2.Token, nil), 401, TypeDeviceRevoked)
		e.mustProblem(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: s2.RefreshToken}), 401, TypeDeviceRevoked)
		e.mustProblem(e.do("POST", "/v1/devices/"+er.DeviceID+"/renew", u.session.Token, RenewRequest{CSR: csrFor(t, key2)}), 409, TypeDeviceRevoked)
		var dd DirectoryDevices
		e.must(e.do("GET", "/v1/directory/accounts/"+u.account+"/devices", other.session.Token, nil), 200).decode(t, &dd)
		found := false
		for _, d := range dd.Devices {
			if d.DeviceID == er.DeviceID {
				found = d.Status == StatusRevoked && d.RevokedAt != nil
			}
		}
		if !found {
			t.Fatalf("directory: %+v", dd)
		}
		b, _ := pem.Decode([]byte(er.Certificate))
		cert, _ := x509.ParseCertificate(b.Bytes)
		if !crlLists(t, e, cert.SerialNumber) {
			t.Fatal("serial not on the CRL")
		}
		e.hookMu.Lock()
		defer e.hookMu.Unlock()
		if len(e.hooks) != 1 || e.hooks[0] != er.DeviceID {
			t.Fatalf("hooks %v", e.hooks)
		}
		// The other device still works.
		e.must(e.do("GET", "/v1/me", u.session.Token, nil), 200)
	})
}

// TestOpenSSLVerify: an enrolled device certificate verifies with openssl
// against the CA from the directory.
func TestOpenSSLVerify(t *testing.T) {
	const openssl = "/usr/bin/openssl"
	if _, err := os.Stat(openssl); err != nil {
		t.Fatalf("openssl is required: %v", err)
	}
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("mia@example.de", "mia's long password")
		var d DirectoryCA
		e.must(e.do("GET", "/v1/directory/ca", "", nil), 200).decode(t, &d)
		dir := t.TempDir()
		caFile, certFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "dev.pem")
		os.WriteFile(caFile, []byte(d.Certificate), 0o600)
		os.WriteFile(certFile, []byte(u.cert), 0o600)
		out, err := exec.Command(openssl, "verify", "-purpose", "sslclient", "-CAfile", caFile, certFile).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
		// The certificate status, as openssl's OCSP client asks for it.
		ocspCheck := func(want string) {
			t.Helper()
			out, err := exec.Command(openssl, "ocsp", "-no_nonce", "-issuer", caFile, "-CAfile", caFile, "-cert", certFile,
				"-url", e.srv.URL+"/v1/ocsp").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Response verify OK") || !strings.Contains(string(out), certFile+": "+want) {
				t.Fatalf("openssl ocsp, want %s: %v\n%s", want, err, out)
			}
		}
		ocspCheck("good")
		// And with the CRL once the device is revoked.
		e.must(e.do("DELETE", "/v1/devices/"+u.device, u.session.Token, nil), 204)
		r := e.must(e.do("GET", "/v1/directory/crl", "", nil), 200)
		crlFile := filepath.Join(dir, "crl.pem")
		os.WriteFile(crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: r.body}), 0o600)
		out, err = exec.Command(openssl, "verify", "-crl_check", "-CAfile", caFile, "-CRLfile", crlFile, certFile).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "revoked") {
			t.Fatalf("openssl accepted a revoked certificate: %v\n%s", err, out)
		}
		ocspCheck("revoked")
	})
}
