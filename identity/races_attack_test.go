package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Attack tests for races under READ COMMITTED (PostgreSQL's default): each
// fires one operation from many goroutines at once, released together by a
// start barrier, on both engines, and checks that exactly one wins or that
// the limit holds.

// racers is how many requests each race fires at once.
const racers = 20

// try is e.do for other goroutines: it returns errors instead of failing.
func (e *env) try(method, path, token string, body any, header ...string) (resp, error) {
	j, err := json.Marshal(body)
	if err != nil {
		return resp{}, err
	}
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(j))
	if err != nil {
		return resp{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := racingClient.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, body: b, header: res.Header}, err
}

// racingClient keeps a connection per racer open, so that racing requests
// leave together instead of waiting for connections one by one.
var racingClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * racers}}

// warm opens racers connections to the server before a race.
func (e *env) warm(t *testing.T) {
	t.Helper()
	race(t, racers, func(int) (resp, error) { return e.try("GET", "/v1/directory/ca", "", nil) })
}

// race runs fn(i) for i in [0, n) in n goroutines released at once and
// returns the answers in order.
func race(t *testing.T, n int, fn func(i int) (resp, error)) []resp {
	t.Helper()
	out := make([]resp, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i], errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func countStatus(rs []resp, status int) int {
	n := 0
	for _, r := range rs {
		if r.status == status {
			n++
		}
	}
	return n
}

// TestAttackRefreshRace: a thief holding a copy of a refresh token
// presents it many times at once, hoping that several rotations succeed
// and fork the login into families the owner's logout does not end. One
// rotation wins; the others count as reuse, and reuse ends the family.
func TestAttackRefreshRace(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("rita@example.de", "rita's long password")
		family := func() string {
			var f string
			if err := e.d.QueryRow(context.Background(), `SELECT family FROM identity_refresh_tokens WHERE account_id = $1`, u.account).Scan(&f); err != nil {
				t.Fatal(err)
			}
			return f
		}()
		e.warm(t)
		rs := race(t, racers, func(int) (resp, error) {
			return e.try("POST", "/v1/sessions/refresh", "", RefreshRequest{RefreshToken: u.session.RefreshToken})
		})
		if won := countStatus(rs, 201); won != 1 {
			t.Fatalf("%d of %d concurrent refreshes with one token succeeded, want exactly 1", won, racers)
		}
		for _, r := range rs {
			// A loser is told of the reuse, or, once the reuse has ended
			// the family, that the token is revoked.
			if r.status != 201 && (r.status != 401 || r.problemType() != string(TypeRefreshReused) && r.problemType() != string(TypeInvalidToken)) {
				t.Fatalf("a losing refresh got %d %s, want 401", r.status, r.body)
			}
		}
		if n := e.countWhere("identity_sessions", fmt.Sprintf("family = '%s'", family)); n != 2 {
			t.Fatalf("the family holds %d sessions, want 2 (the login and one rotation)", n)
		}
		if n := e.countWhere("identity_refresh_tokens", fmt.Sprintf("family = '%s' AND used = 0 AND revoked = 0", family)); n != 0 {
			t.Fatalf("%d live refresh tokens after a detected reuse, want 0", n)
		}
	})
}

// TestAttackSignupCodeRace: someone who knows a victim's address (no more)
// guesses the sign-up code with many requests at once, so that more than
// MaxCodeAttempts guesses are judged before any counter is seen. At most
// MaxCodeAttempts are judged; after that even the right code is refused.
func TestAttackSignupCodeRace(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		const email = "vera@example.de"
		e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: email}), 202)
		code := codeRE.FindString(e.mail.last(t, email).Body)
		e.warm(t)
		rs := race(t, racers, func(i int) (resp, error) {
			guess := fmt.Sprintf("%08d", i)
			if guess == code {
				guess = fmt.Sprintf("%08d", racers+i)
			}
			return e.try("POST", "/v1/signup/verify", "", VerifyRequest{Email: email, Code: guess})
		})
		judged := 0
		for _, r := range rs {
			if r.status != 400 || r.problemType() != string(TypeInvalidCode) {
				t.Fatalf("a wrong guess got %d %s", r.status, r.body)
			}
			if strings.Contains(string(r.body), "the code is wrong") {
				judged++
			}
		}
		if judged > MaxCodeAttempts {
			t.Fatalf("%d concurrent guesses were judged, want at most %d", judged, MaxCodeAttempts)
		}
		e.mustProblem(e.do("POST", "/v1/signup/verify", "", VerifyRequest{Email: email, Code: code}), 400, TypeInvalidCode)
		if n := e.count("identity_accounts"); n != 0 {
			t.Fatalf("%d accounts after the attack, want 0", n)
		}
	})
}

// TestAttackSetupTokenRace: whoever holds a setup token (it enrolls the
// first device only) sends many enrolments at once to get several devices
// from it. One enrolment wins.
func TestAttackSetupTokenRace(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		v := e.signup("sara@example.de")
		csrs := make([]string, racers)
		for i := range csrs {
			csrs[i] = csrFor(t, newP256(t))
		}
		e.warm(t)
		rs := race(t, racers, func(i int) (resp, error) {
			return e.try("POST", "/v1/devices", v.SetupToken, EnrollRequest{Name: "Telefon", CSR: csrs[i]})
		})
		if won := countStatus(rs, 201); won != 1 {
			t.Fatalf("%d of %d concurrent enrolments with one setup token succeeded, want exactly 1", won, racers)
		}
		if n := e.countWhere("identity_devices", fmt.Sprintf("account_id = '%s'", v.AccountID)); n != 1 {
			t.Fatalf("the account has %d devices, want 1", n)
		}
	})
}

// TestAttackDeviceCapRace: a holder of a substantial session enrols many
// devices at once to pass MaxDevices. The cap holds.
func TestAttackDeviceCapRace(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		u := e.newUser("cora@example.de", "cora's long password")
		// Each enrolment is approved by the session's device, as a
		// further device must be: the holder has that device's key too.
		reqs := make([]EnrollRequest, racers)
		for i := range reqs {
			var c ChallengeResponse
			e.must(e.do("POST", "/v1/sessions/challenge", "", ChallengeRequest{DeviceID: u.device, Purpose: ChallengeApprove}), 200).decode(t, &c)
			csr := csrFor(t, newP256(t))
			der, _ := base64.StdEncoding.DecodeString(csr)
			reqs[i] = EnrollRequest{Name: "Telefon", CSR: csr, ChallengeID: c.ChallengeID,
				Signature: sign(t, u.key, ApproveMessage(c.ChallengeID, u.device, c.Nonce, der))}
		}
		e.warm(t)
		rs := race(t, racers, func(i int) (resp, error) {
			return e.try("POST", "/v1/devices", u.session.Token, reqs[i])
		})
		if won := countStatus(rs, 201); won != MaxDevices-1 {
			t.Fatalf("%d of %d concurrent enrolments succeeded, want %d", won, racers, MaxDevices-1)
		}
		for _, r := range rs {
			if r.status != 201 && (r.status != 409 || r.problemType() != string(TypeTooManyDevices)) {
				t.Fatalf("a refused enrolment got %d %s", r.status, r.body)
			}
		}
		if n := e.countWhere("identity_devices", fmt.Sprintf("account_id = '%s' AND revoked_at IS NULL", u.account)); n != MaxDevices {
			t.Fatalf("the account has %d active devices, want %d", n, MaxDevices)
		}
	})
}
