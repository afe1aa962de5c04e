package oidc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/oidc"
	"github.com/kanal-server/kanal/internal/eidtest"
)

const redirect = "https://kanal.example/v1/eid/callback"

// login plays the browser and returns the code the provider sends back.
func login(t *testing.T, op *eidtest.Provider, authURL string) string {
	t.Helper()
	c := op.HTTPClient()
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	res, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

// TestPrivateKeyJWT: kanal authenticates at the token endpoint with a
// signed client assertion instead of a secret; an assertion by a key the
// provider does not know for kanal is refused.
func TestPrivateKeyJWT(t *testing.T) {
	op, err := eidtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	op.AddClient(eidtest.Client{ID: "kanal", PublicKey: &key.PublicKey, KeyID: "kanal-1", RedirectURIs: []string{redirect}})
	op.AddPerson(eidtest.Person{Subject: "sub-1", GivenName: "Erika", FamilyName: "Mustermann", Birthdate: "1964-08-12"})
	op.LoginAs("sub-1", eidtest.ACRHigh)
	newRP := func(k *ecdsa.PrivateKey) *oidc.RP {
		rp, err := oidc.New(oidc.Config{Issuer: op.Issuer, ClientID: "kanal", ClientKey: k, ClientKeyID: "kanal-1", RedirectURL: redirect,
			ACRSubstantial: []string{eidtest.ACRSubstantial}, ACRHigh: []string{eidtest.ACRHigh}, HTTPClient: op.HTTPClient()})
		if err != nil {
			t.Fatal(err)
		}
		return rp
	}
	ctx := context.Background()
	const state, nonce, verifier = "state-1234567890", "nonce-1234567890", "verifier-0123456789012345678901234567890123456789"
	rp := newRP(key)
	u, err := rp.AuthCodeURL(ctx, ca.LevelHigh, state, nonce, verifier)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := rp.Exchange(ctx, ca.LevelHigh, login(t, op, u), verifier, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "sub-1" || claims.Level != ca.LevelHigh || claims.Attributes.Name != "Erika Mustermann" || claims.Attributes.Birthdate != "1964-08-12" {
		t.Fatalf("claims %+v", claims)
	}
	// A wrong PKCE verifier: the code is not redeemed.
	u, _ = rp.AuthCodeURL(ctx, ca.LevelHigh, state, nonce, verifier)
	if _, err := rp.Exchange(ctx, ca.LevelHigh, login(t, op, u), verifier+"x", nonce); !errors.Is(err, oidc.ErrRejected) {
		t.Fatalf("wrong verifier: %v", err)
	}
	// Another key under kanal's key id.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ = rp.AuthCodeURL(ctx, ca.LevelHigh, state, nonce, verifier)
	if _, err := newRP(other).Exchange(ctx, ca.LevelHigh, login(t, op, u), verifier, nonce); !errors.Is(err, oidc.ErrRejected) {
		t.Fatalf("assertion by an unknown key: %v", err)
	}
}

func TestConfigRefused(t *testing.T) {
	good := oidc.Config{Issuer: "https://eid.example", ClientID: "kanal", ClientSecret: "s", RedirectURL: redirect, ACRHigh: []string{"high"}}
	for name, mod := range map[string]func(c *oidc.Config){
		"http issuer":        func(c *oidc.Config) { c.Issuer = "http://eid.example" },
		"no client id":       func(c *oidc.Config) { c.ClientID = "" },
		"no credentials":     func(c *oidc.Config) { c.ClientSecret = "" },
		"no acr for high":    func(c *oidc.Config) { c.ACRHigh = nil },
		"acr both":           func(c *oidc.Config) { c.ACRSubstantial = []string{"high"} },
		"redirect not a URL": func(c *oidc.Config) { c.RedirectURL = "kanal.example" },
		"key without key id": func(c *oidc.Config) {
			c.ClientSecret = ""
			c.ClientKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		},
		"secret and a key": func(c *oidc.Config) { c.ClientKey, c.ClientKeyID = mustKey(), "k" },
		"a P-384 client key": func(c *oidc.Config) {
			c.ClientSecret = ""
			c.ClientKeyID = "k"
			c.ClientKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		},
	} {
		c := good
		mod(&c)
		if _, err := oidc.New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := oidc.New(good); err != nil {
		t.Fatal(err)
	}
}

func mustKey() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}
