package identity

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
)

// These tests attack device renewal — the one route that changes which
// key speaks for a device — and the use of expired device certificates.
// Every attack is built from what the adversary holds and run against the
// real handlers on SQLite and PostgreSQL.

// renewChallenge asks for a single-use challenge bound to device and to
// renewing it. Anyone may ask: the challenge proves nothing by itself.
func (e *env) renewChallenge(device string) ChallengeResponse {
	e.t.Helper()
	var c ChallengeResponse
	e.must(e.do("POST", "/v1/sessions/challenge", "", map[string]string{"device_id": device, "purpose": "renew"}), 200).decode(e.t, &c)
	return c
}

// renewProof is the request body of a renewal of device to the key in
// csr (base64 DER), with the proof signed by signer. The signed bytes are
// spelled out here rather than taken from RenewMessage, so this test also
// pins the format docs/api-identity.md specifies.
func (e *env) renewProof(device string, signer crypto.Signer, csr string) map[string]string {
	e.t.Helper()
	c := e.renewChallenge(device)
	der, err := base64.StdEncoding.DecodeString(csr)
	if err != nil {
		e.t.Fatal(err)
	}
	h := sha256.Sum256(der)
	msg := "kanal device renew v1\n" + c.ChallengeID + "\n" + device + "\n" + c.Nonce + "\n" + hex.EncodeToString(h[:])
	return map[string]string{"csr": csr, "challenge_id": c.ChallengeID, "signature": sign(e.t, signer, []byte(msg))}
}

// deviceState is everything a renewal may change about a device: its
// row, its certificates and their revocation, its membership
// certificates, its sessions and refresh tokens.
func (e *env) deviceState(device string) string {
	e.t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT level, cert_pem, cert_serial, expires_at, COALESCE(revoked_at, 0) FROM identity_devices WHERE id = $1`,
		`SELECT serial, COALESCE(revoked_at, 0) FROM identity_device_certs WHERE device_id = $1 ORDER BY serial`,
		`SELECT serial, cert_pem, COALESCE(revoked_at, 0) FROM identity_memberships WHERE device_id = $1 ORDER BY serial`,
		`SELECT token_hash, level, revoked FROM identity_sessions WHERE device_id = $1 ORDER BY token_hash`,
		`SELECT token_hash, used, revoked FROM identity_refresh_tokens WHERE device_id = $1 ORDER BY token_hash`,
	} {
		rows, err := e.d.Query(context.Background(), q, device)
		if err != nil {
			e.t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]string, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				e.t.Fatal(err)
			}
			fmt.Fprintf(&b, "%q\n", vals)
		}
		if err := rows.Close(); err != nil {
			e.t.Fatal(err)
		}
		b.WriteString("--\n")
	}
	return b.String()
}

func (e *env) membershipCount(device string) int {
	e.t.Helper()
	var n int
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM identity_memberships WHERE device_id = $1 AND revoked_at IS NULL`, device).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestAttackRenewWithStolenToken: the adversary holds a bearer token of an
// office agent's device — a low one (the agent logged in without the
// password) or a substantial one — and their own key pair, not the
// agent's device key. They try to move the agent's device, and with it the
// agent's membership certificate, to their own key.
func TestAttackRenewWithStolenToken(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		f := e.newOrg(KindOffice)
		agent := f.agent
		low := e.login(agent.device, agent.key, "")
		if low.Level != LevelLow || agent.session.Level != LevelSubstantial {
			t.Fatalf("levels %s %s", low.Level, agent.session.Level)
		}
		if e.membershipCount(agent.device) != 1 {
			t.Fatal("the agent has no membership certificate")
		}
		before := e.deviceState(agent.device)
		thief := newP256(t)
		thiefCSR := csrFor(t, thief)

		attempts := []struct {
			name  string
			token string
			body  func() any
		}{
			{"low token, no proof", low.Token, func() any { return map[string]string{"csr": thiefCSR} }},
			{"substantial token, no proof", agent.session.Token, func() any { return map[string]string{"csr": thiefCSR} }},
			{"low token, proof by the thief's own key", low.Token, func() any { return e.renewProof(agent.device, thief, thiefCSR) }},
			{"substantial token, proof by the thief's own key", agent.session.Token, func() any { return e.renewProof(agent.device, thief, thiefCSR) }},
			{"substantial token, an intercepted proof with the thief's request", agent.session.Token, func() any {
				// A legitimate renewal the thief intercepts before it reaches
				// the server: a valid proof by the agent's key, for the
				// agent's new key.
				intercepted := e.renewProof(agent.device, agent.key, csrFor(t, newP256(t)))
				return map[string]string{"csr": thiefCSR, "challenge_id": intercepted["challenge_id"], "signature": intercepted["signature"]}
			}},
			{"substantial token, the password instead of a proof", agent.session.Token, func() any {
				return map[string]string{"csr": thiefCSR, "password": agent.password}
			}},
		}
		for _, a := range attempts {
			r := e.do("POST", "/v1/devices/"+agent.device+"/renew", a.token, a.body())
			if r.status < 400 {
				t.Fatalf("%s: the thief renewed the agent's device: %d %s", a.name, r.status, r.body)
			}
			if after := e.deviceState(agent.device); after != before {
				t.Fatalf("%s: refused (%d %s) but the device changed:\nbefore\n%s\nafter\n%s", a.name, r.status, r.body, before, after)
			}
		}
		// The agent's own sessions still work: the attempts cost the agent nothing.
		e.must(e.do("GET", "/v1/me", agent.session.Token, nil), 200)
		e.must(e.do("GET", "/v1/me", low.Token, nil), 200)
	})
}

// TestAttackRenewEndsOldSessions: the adversary holds a session and a
// refresh token of a device whose owner then changes the device key (what
// an owner does when they suspect the key or the token). Afterwards the
// adversary's tokens are dead, the new certificate claims no more than the
// session proved, and the account's other device is told.
func TestAttackRenewEndsOldSessions(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("anna@example.de", "anna's long password")
		// A second device of the account, which must hear of the change.
		laptop := newP256(t)
		second := e.approve(u, laptop)
		var mu sync.Mutex
		var told []string
		e.svc.AddKeyChangeNotice(func(account, device string) {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, account+"/"+device)
		})
		stolen := e.login(u.device, u.key, "") // low: key only
		stolenSubst := e.login(u.device, u.key, u.password)
		// The adversary used one refresh already; both kinds must die.
		var refreshed SessionResponse
		e.must(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: stolenSubst.RefreshToken}), 201).decode(t, &refreshed)
		laptopSession := e.login(second.DeviceID, laptop, u.password)

		next := newP256(t)
		csr := csrFor(t, next)
		var rn EnrollResponse
		e.must(e.do("POST", "/v1/devices/"+u.device+"/renew", stolen.Token, e.renewProof(u.device, u.key, csr)), 200).decode(t, &rn)
		if rn.Level != LevelLow {
			t.Fatalf("a low session got a %s certificate", rn.Level)
		}
		b, _ := pemDecode(rn.Certificate)
		id, err := ca.VerifyDevice(b, e.ca.Pool(), e.clock.now())
		if err != nil || id.Level != ca.LevelLow {
			t.Fatalf("certificate level %v %v", id.Level, err)
		}
		for _, tok := range []string{stolen.Token, stolenSubst.Token, refreshed.Token, u.session.Token} {
			e.mustProblem(e.do("GET", "/v1/me", tok, nil), 401, TypeInvalidToken)
		}
		for _, ref := range []string{stolen.RefreshToken, refreshed.RefreshToken} {
			e.mustProblem(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: ref}), 401, TypeInvalidToken)
		}
		var open int
		if err := e.d.QueryRow(context.Background(), `SELECT
			(SELECT COUNT(*) FROM identity_sessions WHERE device_id = $1 AND revoked = 0) +
			(SELECT COUNT(*) FROM identity_refresh_tokens WHERE device_id = $1 AND revoked = 0)`, u.device).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open != 0 {
			t.Fatalf("%d sessions or refresh tokens of the device survived the key change", open)
		}
		// The old key no longer logs in; the new one does, and with the
		// password the device may now renew itself up to substantial.
		e.mustProblem(e.do("POST", "/v1/sessions", "", e.loginReq(u.device, u.key, u.password)), 401, TypeInvalidCredentials)
		fresh := e.login(u.device, next, u.password)
		if fresh.Level != LevelLow {
			t.Fatalf("login capped by a low certificate: %s", fresh.Level)
		}
		up := e.renewProof(u.device, next, csrFor(t, next))
		up["password"] = u.password
		e.must(e.do("POST", "/v1/devices/"+u.device+"/renew", fresh.Token, up), 200).decode(t, &rn)
		if rn.Level != LevelSubstantial {
			t.Fatalf("renewal with the password: %s", rn.Level)
		}
		// The other device is untouched, and was told once, of the key change only.
		e.must(e.do("GET", "/v1/me", laptopSession.Token, nil), 200)
		mu.Lock()
		defer mu.Unlock()
		if len(told) != 1 || told[0] != u.account+"/"+u.device {
			t.Fatalf("key change notices: %v", told)
		}
	})
}

func pemDecode(s string) ([]byte, error) {
	b, err := parsePEMCert(s)
	if err != nil {
		return nil, err
	}
	return b.Raw, nil
}

// TestAttackRenewFlood: the adversary is a legitimate account holder who
// changes their device keys as fast as the server lets them, to grow the
// revocation list until nobody can download it. Key changes are limited
// per device and per account, and a refused one changes nothing.
func TestAttackRenewFlood(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("flood@example.de", "flood's long password")
		rekey := func(device string, key crypto.Signer, password string) (resp, crypto.Signer) {
			t.Helper()
			s := e.login(device, key, password)
			next := newP256(t)
			return e.do("POST", "/v1/devices/"+device+"/renew", s.Token, e.renewProof(device, key, csrFor(t, next))), next
		}
		key := u.key
		for i := 0; i < MaxKeyChangesPerDevice; i++ {
			r, next := rekey(u.device, key, u.password)
			e.must(r, 200)
			key = next
		}
		before := e.deviceState(u.device)
		revoked := e.revokedSerials()
		r, _ := rekey(u.device, key, u.password)
		e.mustProblem(r, 429, web.TypeRateLimited)
		if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs <= 0 || time.Duration(secs)*time.Second > KeyChangeWindow {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		// The refused attempt's login is the only change: drop it from the comparison.
		if after := e.deviceState(u.device); stripSessions(after) != stripSessions(before) || e.revokedSerials() != revoked {
			t.Fatalf("a refused key change changed the device:\n%s\n%s", before, after)
		}
		// A renewal that keeps the key revokes nothing and is not limited.
		s := e.login(u.device, key, u.password)
		e.must(e.do("POST", "/v1/devices/"+u.device+"/renew", s.Token, e.renewProof(u.device, key, csrFor(t, key))), 200)
		// After the window the device may change its key again.
		e.clock.advance(KeyChangeWindow)
		r, _ = rekey(u.device, key, u.password)
		e.must(r, 200)

		// Per account: more devices do not buy more key changes.
		v := e.newUser("flood2@example.de", "flood2's long password")
		type dev struct {
			id  string
			key crypto.Signer
		}
		devs := []dev{{v.device, v.key}}
		for len(devs)*MaxKeyChangesPerDevice <= MaxKeyChangesPerAccount {
			k := newP256(t)
			devs = append(devs, dev{e.approve(v, k).DeviceID, k})
		}
		changes := 0
		for _, d := range devs {
			for i := 0; i < MaxKeyChangesPerDevice && changes < MaxKeyChangesPerAccount; i++ {
				r, next := rekey(d.id, d.key, v.password)
				e.must(r, 200)
				d.key = next
				changes++
			}
			if changes == MaxKeyChangesPerAccount {
				revoked := e.revokedSerials()
				r, _ := rekey(d.id, d.key, v.password)
				e.mustProblem(r, 429, web.TypeRateLimited)
				if e.revokedSerials() != revoked {
					t.Fatal("a refused key change revoked a serial")
				}
				return
			}
		}
		t.Fatal("the account limit was never reached")
	})
}

func (e *env) revokedSerials() int {
	e.t.Helper()
	var n int
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM identity_device_certs WHERE revoked_at IS NOT NULL`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// stripSessions drops the session and refresh token sections of a
// deviceState, for comparisons across a login.
func stripSessions(s string) string {
	parts := strings.SplitN(s, "--\n", 4)
	return strings.Join(parts[:3], "--\n")
}

// TestAttackExpiredDeviceCertificate: the adversary holds a device key
// (and the password) of a device whose 30-day certificate expired long ago
// — a lost phone found again, a key copied from an old backup. The
// certificate no longer vouches for the key: it cannot log in, ask for a
// challenge, renew, refresh, or use a session it still has.
func TestAttackExpiredDeviceCertificate(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("old@example.de", "old's long password")
		b, _ := pemDecode(u.cert)
		id, err := ca.VerifyDevice(b, e.ca.Pool(), e.clock.now())
		if err != nil {
			t.Fatal(err)
		}
		// Just before expiry: a fresh session and refresh token.
		e.clock.advance(id.NotAfter.Sub(e.clock.now()) - 30*time.Minute)
		var s SessionResponse
		e.must(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: u.session.RefreshToken}), 201).decode(t, &s)
		before := e.deviceState(u.device)
		// Past expiry, within the session's hour.
		e.clock.advance(31 * time.Minute)
		e.mustProblem(e.do("GET", "/v1/me", s.Token, nil), 401, TypeDeviceExpired)
		e.mustProblem(e.do("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: s.RefreshToken}), 401, TypeDeviceExpired)
		// 200 days on.
		e.clock.advance(200 * 24 * time.Hour)
		r := e.do("POST", "/v1/sessions/challenge", "", ChallengeRequest{DeviceID: u.device})
		e.mustProblem(r, 401, TypeDeviceExpired)
		// The way back is a new device, enrolled from a device that is
		// still valid: the error says so.
		if !strings.Contains(string(r.body), "enrol") {
			t.Fatalf("the error does not say what to do: %s", r.body)
		}
		e.mustProblem(e.do("POST", "/v1/sessions/challenge", "", map[string]string{"device_id": u.device, "purpose": "renew"}), 401, TypeDeviceExpired)
		// Made a member now, the account gets no membership for the
		// expired device: a membership names a key nobody vouches for.
		// (The operator's token from the start has expired too by now:
		// the operator resets it, as kanald operator reset does.)
		if _, _, err := ResetOperator(context.Background(), e.svc.db, OperatorOptions{Now: e.clock.now,
			Deliver: func(tok string, _ OperatorToken) error { e.op = tok; return nil }}); err != nil {
			t.Fatal(err)
		}
		var org Organisation
		e.must(e.do("POST", "/v1/admin/orgs", e.op, CreateOrgRequest{Name: "Bürgeramt", Kind: KindOffice}), 201).decode(t, &org)
		e.must(e.do("POST", "/v1/admin/orgs/"+org.OrgID+"/verify", e.op, nil), 200)
		var m Member
		e.must(e.do("POST", "/v1/orgs/"+org.OrgID+"/members", e.op, AddMemberRequest{AccountID: u.account, Role: RoleAgent}), 201).decode(t, &m)
		if len(m.Memberships) != 0 {
			t.Fatalf("an expired device got a membership: %+v", m.Memberships)
		}
		if after := e.deviceState(u.device); stripSessions(after) != stripSessions(before) {
			t.Fatalf("the expired device changed:\n%s\n%s", before, after)
		}

		// A challenge taken while the certificate was valid does not help
		// either: the certificate is checked when the signature is.
		v := e.newUser("old2@example.de", "old2's long password")
		b, _ = pemDecode(v.cert)
		id, _ = ca.VerifyDevice(b, e.ca.Pool(), e.clock.now())
		e.clock.advance(id.NotAfter.Sub(e.clock.now()) - 30*time.Second)
		lr := e.loginReq(v.device, v.key, v.password)
		renew := e.renewProof(v.device, v.key, csrFor(t, newP256(t)))
		tok := e.login(v.device, v.key, v.password).Token
		e.clock.advance(time.Minute) // the challenges are still valid, the certificate is not
		before = e.deviceState(v.device)
		e.mustProblem(e.do("POST", "/v1/sessions", "", lr), 401, TypeDeviceExpired)
		e.mustProblem(e.do("POST", "/v1/devices/"+v.device+"/renew", tok, renew), 401, TypeDeviceExpired)
		if after := e.deviceState(v.device); after != before {
			t.Fatalf("the expired device changed:\n%s\n%s", before, after)
		}
	})
}

// TestAttackRenewFloodConcurrent: the same adversary changes the keys of
// all the account's devices at once, on every engine, hoping that
// concurrent renewals each see the account's count before the others
// raise it. Exactly MaxKeyChangesPerAccount go through.
func TestAttackRenewFloodConcurrent(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("burst@example.de", "burst's long password")
		type dev struct {
			id  string
			key crypto.Signer
		}
		devs := []dev{{u.device, u.key}}
		for len(devs) < MaxDevices {
			k := newP256(t)
			devs = append(devs, dev{e.approve(u, k).DeviceID, k})
		}
		const perDevice = 2 // below MaxKeyChangesPerDevice: only the account limit bites
		if len(devs)*perDevice <= MaxKeyChangesPerAccount || perDevice > MaxKeyChangesPerDevice {
			t.Fatal("the burst does not exceed the account limit")
		}
		revoked := e.revokedSerials()
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		for _, d := range devs {
			wg.Add(1)
			go func(d dev) {
				defer wg.Done()
				for i := 0; i < perDevice; i++ {
					next := newP256(t)
					s := e.login(d.id, d.key, u.password)
					r := e.do("POST", "/v1/devices/"+d.id+"/renew", s.Token, e.renewProof(d.id, d.key, csrFor(t, next)))
					mu.Lock()
					codes[r.status]++
					mu.Unlock()
					if r.status == 200 {
						d.key = next
					}
				}
			}(d)
		}
		wg.Wait()
		if codes[200] != MaxKeyChangesPerAccount || codes[429] != len(devs)*perDevice-MaxKeyChangesPerAccount {
			t.Fatalf("answers %v, want %d × 200 and the rest 429", codes, MaxKeyChangesPerAccount)
		}
		if got := e.revokedSerials() - revoked; got != MaxKeyChangesPerAccount {
			t.Fatalf("%d serials revoked, want %d", got, MaxKeyChangesPerAccount)
		}
	})
}

// TestAttackEnrolWithStolenToken: the adversary holds a copy of an office
// agent's substantial session token and a key pair of their own. Instead
// of moving the agent's device to their key, they try to add their own
// device to the agent's account, which would get a membership of the
// office. A further device needs the approval of the session's device,
// signed with its key: refused, and the account is as before.
func TestAttackEnrolWithStolenToken(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		f := e.newOrg(KindOffice)
		agent := f.agent
		state := func() string {
			var b strings.Builder
			for _, q := range []string{
				`SELECT COUNT(*) FROM identity_devices WHERE account_id = $1`,
				`SELECT COUNT(*) FROM identity_memberships WHERE account_id = $1`,
				`SELECT COUNT(*) FROM identity_device_certs c JOIN identity_devices d ON d.id = c.device_id WHERE d.account_id = $1`,
			} {
				var n int
				if err := e.d.QueryRow(context.Background(), q, agent.account).Scan(&n); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%d ", n)
			}
			return b.String()
		}
		before := state()
		thief := newP256(t)
		thiefCSR := csrFor(t, thief)
		approval := func(signer crypto.Signer) EnrollRequest {
			var c ChallengeResponse
			e.must(e.do("POST", "/v1/sessions/challenge", "", map[string]string{"device_id": agent.device, "purpose": "approve"}), 200).decode(t, &c)
			der, _ := base64.StdEncoding.DecodeString(thiefCSR)
			h := sha256.Sum256(der)
			msg := "kanal device approve v1\n" + c.ChallengeID + "\n" + agent.device + "\n" + c.Nonce + "\n" + hex.EncodeToString(h[:])
			return EnrollRequest{Name: "Dienst-Laptop", CSR: thiefCSR, ChallengeID: c.ChallengeID, Signature: sign(t, signer, []byte(msg))}
		}
		for _, a := range []struct {
			name string
			body func() any
		}{
			{"no approval", func() any { return EnrollRequest{Name: "Dienst-Laptop", CSR: thiefCSR} }},
			{"approval signed by the thief's own key", func() any { return approval(thief) }},
		} {
			r := e.do("POST", "/v1/devices", agent.session.Token, a.body())
			if r.status < 400 {
				t.Fatalf("%s: the thief enrolled a device of the agent's account: %d %s", a.name, r.status, r.body)
			}
			e.mustProblem(r, 403, TypeInvalidKeyProof)
			if after := state(); after != before {
				t.Fatalf("%s: refused but the account changed: %s → %s", a.name, before, after)
			}
		}
		// The agent's own device approves: that works, and the new device
		// gets the membership.
		er := e.approve(agent, newP256(t))
		if e.membershipCount(er.DeviceID) != 1 {
			t.Fatal("the approved device has no membership")
		}
	})
}
