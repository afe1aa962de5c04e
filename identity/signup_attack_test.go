package identity

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
)

func (m *memMailer) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.msgs)
}

// checkRefused checks that every answer past the first accepted ones is
// 429 rate-limited with a Retry-After, and that exactly accepted mails
// were sent and sign-ups stored.
func checkRefused(t *testing.T, e *env, rs []resp, accepted int) {
	t.Helper()
	if got := countStatus(rs, 202); got != accepted {
		t.Fatalf("%d of %d sign-ups accepted, want %d", got, len(rs), accepted)
	}
	for _, r := range rs {
		if r.status == 202 {
			continue
		}
		if r.status != 429 || r.problemType() != string(web.TypeRateLimited) {
			t.Fatalf("a refused sign-up got %d %s", r.status, r.body)
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s <= 0 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	if n := e.mail.count(); n != accepted {
		t.Fatalf("%d mails sent, want %d", n, accepted)
	}
	if n := e.count("identity_signups"); n != accepted {
		t.Fatalf("%d sign-ups stored, want %d", n, accepted)
	}
}

// TestAttackSignupFloodOneClient: an anonymous client mail-bombs many
// victims' addresses from one network — here rotating through the IPv6
// addresses of one /64, as anyone with a home connection can — and fills
// the sign-up table as it goes. After MaxSignupsPerClient it is refused,
// and refused sign-ups send no mail and store nothing.
func TestAttackSignupFloodOneClient(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, func(o *Options) { o.TrustProxy = true })
		const n = MaxSignupsPerClient + 10
		rs := make([]resp, n)
		for i := range n {
			r, err := e.try("POST", "/v1/signup", "", SignupRequest{Email: fmt.Sprintf("victim%d@example.de", i)},
				"X-Forwarded-For", fmt.Sprintf("2001:db8:1:2::%x", i+1))
			if err != nil {
				t.Fatal(err)
			}
			rs[i] = r
		}
		checkRefused(t, e, rs, MaxSignupsPerClient)
		// Another network is not held back by this one.
		e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: "someone@example.de"}), 202)
	})
}

// TestAttackSignupFloodManyClients: the same flood from many addresses
// at once (a botnet) meets the deployment's global limit, which holds
// under concurrency.
func TestAttackSignupFloodManyClients(t *testing.T) {
	dbtest.Run(t, migrationSets(), func(t *testing.T, d *db.DB) {
		const global = 15
		e := newEnv(t, d, func(o *Options) {
			o.TrustProxy = true
			o.SignupLimits = SignupLimits{Global: global}
		})
		e.warm(t)
		rs := race(t, racers, func(i int) (resp, error) {
			return e.try("POST", "/v1/signup", "", SignupRequest{Email: fmt.Sprintf("victim%d@example.de", i)},
				"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		})
		checkRefused(t, e, rs, global)
	})
}

// TestSignupExpiry: the sweep deletes sign-ups whose code and window have
// passed, and the counters of windows that have ended; a verified address
// keeps its account.
func TestSignupExpiry(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		e.signup("kept@example.de")
		e.must(e.do("POST", "/v1/signup", "", SignupRequest{Email: "pending@example.de"}), 202)
		if n, err := e.svc.ExpireSignups(t.Context()); err != nil || n != 0 {
			t.Fatalf("expire in the window: %d %v", n, err)
		}
		e.clock.advance(SignupWindow + CodeLifetime)
		if n, err := e.svc.ExpireSignups(t.Context()); err != nil || n != 2 {
			t.Fatalf("expire after the window: %d %v", n, err)
		}
		if n := e.count("identity_signups"); n != 0 {
			t.Fatalf("%d sign-ups left", n)
		}
		if n := e.countWhere("identity_throttle", "key LIKE 'signup%'"); n != 0 {
			t.Fatalf("%d sign-up counters left", n)
		}
		if n := e.count("identity_accounts"); n != 1 {
			t.Fatalf("%d accounts", n)
		}
	})
}

// TestAttackSignupLooseInput: an anonymous client sends sign-ups whose
// address is not what a reader would take it for — bytes that are not
// UTF-8 (encoding/json would turn them into U+FFFD and carry on, and the
// address would reach the mail's To: header), escapes that decode to
// U+FFFD or a control character, an address literal naming a host by IP,
// a key in another case and a key given twice. Each is refused with a
// problem, and no sign-up is stored and no mail sent.
func TestAttackSignupLooseInput(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		cases := []struct {
			name, body string
			typ        web.ProblemType
		}{
			{"invalid UTF-8", "{\"email\":\"anna\xff@example.de\"}", web.TypeInvalidJSON},
			{"invalid UTF-8 in the domain", "{\"email\":\"anna@exa\xc3mple.de\"}", web.TypeInvalidJSON},
			{"escaped replacement character", `{"email":"anna\ufffd@example.de"}`, TypeInvalidEmail},
			{"escaped lone surrogate", `{"email":"anna\ud800@example.de"}`, TypeInvalidEmail},
			{"escaped NUL", `{"email":"anna\u0000@example.de"}`, TypeInvalidEmail},
			{"escaped DEL", `{"email":"anna\u007f@example.de"}`, TypeInvalidEmail},
			{"IPv4 address literal", `{"email":"a@[127.0.0.1]"}`, TypeInvalidEmail},
			{"IPv6 address literal", `{"email":"a@[IPv6:::1]"}`, TypeInvalidEmail},
			{"address literal with a dot name", `{"email":"a@[mail.example.de]"}`, TypeInvalidEmail},
			{"key in capitals", `{"EMAIL":"anna@example.de"}`, web.TypeInvalidJSON},
			{"key twice", `{"email":"anna@example.de","email":"bert@example.de"}`, web.TypeInvalidJSON},
		}
		for _, c := range cases {
			e.mustProblem(e.do("POST", "/v1/signup", "", c.body), 400, c.typ)
		}
		if n := e.count("identity_signups"); n != 0 {
			t.Fatalf("%d sign-ups stored after bad input", n)
		}
		if n := e.mail.count(); n != 0 {
			t.Fatalf("%d mails sent after bad input", n)
		}
	})
}
