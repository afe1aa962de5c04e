package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
)

func deviceKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{"p256": p256, "ed25519": ed}
}

// TestCertificateRequestIsAcceptedByTheCA feeds the client's requests to
// the real deployment CA: what the client builds is what the CA certifies.
func TestCertificateRequestIsAcceptedByTheCA(t *testing.T) {
	now := time.Now()
	authority, err := ca.Create("Musterstadt", now)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range deviceKeys(t) {
		t.Run(name, func(t *testing.T) {
			csr, err := CertificateRequest(key)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := authority.IssueDevice(ca.DeviceRequest{
				CSR: csr, AccountID: "acc_1", DeviceID: "dev_1", Level: ca.LevelLow, NotBefore: now,
			})
			if err != nil {
				t.Fatal(err)
			}
			id, err := ca.VerifyDevice(cert.Raw, authority.Pool(), now)
			if err != nil {
				t.Fatal(err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(id.PublicKey) {
				t.Fatal("the certificate certifies another key")
			}
		})
	}
}

func TestUnsupportedKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"rsa": rsaKey, "p384": p384, "nil": nil} {
		if _, err := CertificateRequest(key); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("%s: CertificateRequest: %v, want ErrUnsupportedKey", name, err)
		}
		c := New("http://127.0.0.1:1", nil)
		if _, err := c.Login(context.Background(), "dev_1", key, ""); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("%s: Login: %v, want ErrUnsupportedKey before any request", name, err)
		}
	}
}

// TestLoginSignature checks the signature against the rule in identity/api.go:
// ECDSA over the SHA-256 of LoginMessage in ASN.1, Ed25519 over the message.
func TestLoginSignature(t *testing.T) {
	msg := identity.LoginMessage("ch_1", "dev_1", "bm9uY2Vub25jZW5vbmNlbm9uY2Vub25jZW5vbmNlISE=")
	for name, key := range deviceKeys(t) {
		sig, err := signMessage(key, msg)
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		switch pub := key.Public().(type) {
		case *ecdsa.PublicKey:
			digest := sha256.Sum256(msg)
			ok = ecdsa.VerifyASN1(pub, digest[:], sig)
		case ed25519.PublicKey:
			ok = ed25519.Verify(pub, msg, sig)
		}
		if !ok {
			t.Errorf("%s: signature does not verify", name)
		}
		tampered := append([]byte(nil), msg...)
		tampered[len(tampered)-1] ^= 1
		if pub, isEd := key.Public().(ed25519.PublicKey); isEd && ed25519.Verify(pub, tampered, sig) {
			t.Errorf("%s: signature verifies over another message", name)
		}
	}
}

func TestProblemError(t *testing.T) {
	cases := []struct {
		p    Problem
		want string
	}{
		{Problem{Type: string(identity.TypeInvalidCredentials), Title: "Invalid credentials", Status: 401},
			"invalid credentials (urn:kanal:problem:invalid-credentials)"},
		{Problem{Type: "urn:kanal:problem:invalid-csr", Title: "CSR rejected", Status: 400, Detail: "bad\nsignature"},
			"CSR rejected: bad signature (urn:kanal:problem:invalid-csr)"},
		{Problem{Type: BlankType, Status: 502}, "bad gateway (HTTP 502)"},
	}
	for _, c := range cases {
		if got := c.p.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	err := error(&Problem{Type: string(identity.TypeDeviceRevoked), Status: 401})
	wrapped := errors.Join(errors.New("whoami"), err)
	if !IsProblem(wrapped, string(identity.TypeDeviceRevoked)) || StatusOf(wrapped) != 401 {
		t.Error("IsProblem/StatusOf do not see through wrapping")
	}
	if IsProblem(errors.New("x"), string(identity.TypeDeviceRevoked)) || StatusOf(errors.New("x")) != 0 {
		t.Error("a plain error is not a problem")
	}
}

// TestMisbehavingServer covers answers the real server never gives but a
// proxy, a wrong address or a hostile server might: the client must refuse
// them with a clear error rather than act on them.
func TestMisbehavingServer(t *testing.T) {
	cases := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{"oversized body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"account_id":"` + strings.Repeat("a", MaxResponseBytes) + `"}`))
		}, wantBadResponse("larger than")},
		{"unknown field", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"account_id":"acc_1","setup_token":"t","expires_at":"2030-01-01T00:00:00Z","admin":true}`))
		}, wantBadResponse("unknown field")},
		{"trailing data", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"account_id":"acc_1"} {}`))
		}, wantBadResponse("trailing")},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`<html>hello</html>`))
		}, wantBadResponse("content type")},
		{"unexpected success status", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, wantBadResponse("status 204")},
		{"proxy error page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`<html>bad gateway</html>`))
		}, func(t *testing.T, err error) {
			var p *Problem
			if !errors.As(err, &p) || p.Type != BlankType || p.Status != 502 {
				t.Fatalf("got %v, want an about:blank problem with status 502", err)
			}
		}},
		{"problem with extensions", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"type":"urn:kanal:problem:rate-limited","title":"Too many requests","status":429,"retry_after":30}`))
		}, func(t *testing.T, err error) {
			var p *Problem
			if !errors.As(err, &p) || p.Type != "urn:kanal:problem:rate-limited" || p.Status != 429 || string(p.Extra["retry_after"]) != "30" {
				t.Fatalf("got %#v", err)
			}
		}},
		{"problem with a bad member", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"type":42}`))
		}, wantBadResponse("not a string")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			_, err := New(srv.URL, srv.Client()).VerifySignup(context.Background(), "a@example.org", "12345678")
			c.check(t, err)
		})
	}
}

func wantBadResponse(substr string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), substr) {
			t.Fatalf("got %v, want ErrBadResponse mentioning %q", err, substr)
		}
	}
}

func TestBadArguments(t *testing.T) {
	ctx := context.Background()
	if err := New("ftp://example.org", nil).Signup(ctx, "a@example.org"); err == nil || !strings.Contains(err.Error(), "http(s)") {
		t.Errorf("ftp base URL: %v", err)
	}
	c := New("http://127.0.0.1:1", nil)
	for _, id := range []string{"", ".", ".."} {
		if err := c.RevokeDevice(ctx, id); err == nil || !strings.Contains(err.Error(), "invalid id") {
			t.Errorf("RevokeDevice(%q): %v", id, err)
		}
	}
	// An id with a slash stays one path segment.
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.EscapedPath()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if err := New(srv.URL+"/", srv.Client()).RevokeDevice(ctx, "a/../b"); err != nil {
		t.Fatal(err)
	}
	if path != "/v1/devices/a%2F..%2Fb" {
		t.Errorf("path %q", path)
	}
}

func TestWithTokenDoesNotChangeTheOriginal(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	base := New(srv.URL, srv.Client())
	ctx := context.Background()
	base.WithToken("kanal_s_x").Logout(ctx)
	base.Logout(ctx)
	if len(got) != 2 || got[0] != "Bearer kanal_s_x" || got[1] != "" {
		t.Fatalf("Authorization headers %q", got)
	}
}
