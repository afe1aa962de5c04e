package main

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/oidc"
)

// eidConfig is the eID provider (level high), all empty when there is none.
type eidConfig struct {
	Issuer           string
	ClientID         string
	ClientSecretFile string
	ClientKeyFile    string
	ClientKeyID      string
	RedirectURL      string
	ACRSubstantial   []string
	ACRHigh          []string
	Scopes           []string
	CAFile           string
}

var eidSettings = []setting{
	{"eid-issuer", "KANAL_EID_ISSUER", "", "issuer URL (https) of the OpenID Connect eID provider (a BundID or Länder account broker, an nPA gateway); empty: no eID, no level high"},
	{"eid-client-id", "KANAL_EID_CLIENT_ID", "", "kanal's client id at the eID provider"},
	{"eid-client-secret-file", "KANAL_EID_CLIENT_SECRET_FILE", "", "file (not readable by everyone) holding the client secret (client_secret_basic); or KANAL_EID_CLIENT_KEY_FILE"},
	{"eid-client-key-file", "KANAL_EID_CLIENT_KEY_FILE", "", "PEM private key (P-256, RSA or Ed25519; not readable by everyone) for private_key_jwt client authentication, registered with the provider under KANAL_EID_CLIENT_KEY_ID"},
	{"eid-client-key-id", "KANAL_EID_CLIENT_KEY_ID", "", "key id (kid) of KANAL_EID_CLIENT_KEY_FILE at the provider"},
	{"eid-redirect-url", "KANAL_EID_REDIRECT_URL", "", "kanald's callback as citizens' browsers reach it, registered with the provider: https://<your kanal host>/v1/eid/callback"},
	{"eid-acr-high", "KANAL_EID_ACR_HIGH", "http://eidas.europa.eu/LoA/high", "comma-separated acr values by which the provider says eIDAS level high (the nPA, a notified EUDI wallet)"},
	{"eid-acr-substantial", "KANAL_EID_ACR_SUBSTANTIAL", "http://eidas.europa.eu/LoA/substantial", "comma-separated acr values that mean eIDAS level substantial (they never make a session high)"},
	{"eid-scopes", "KANAL_EID_SCOPES", "profile,address", "comma-separated scopes asked for besides openid: which attributes (name, date of birth, address) the provider may release to the citizen's devices"},
	{"eid-ca-file", "KANAL_EID_CA_FILE", "", "PEM file of CA certificates the eID provider's certificate must chain to (a private CA); empty: the system's roots"},
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// parseEIDConfig reads the eID settings; without an issuer the others
// must be empty too, so a half-configured provider is named, not ignored.
func parseEIDConfig(vals map[string]*string) (eidConfig, error) {
	e := eidConfig{Issuer: *vals["KANAL_EID_ISSUER"], ClientID: *vals["KANAL_EID_CLIENT_ID"],
		ClientSecretFile: *vals["KANAL_EID_CLIENT_SECRET_FILE"], ClientKeyFile: *vals["KANAL_EID_CLIENT_KEY_FILE"],
		ClientKeyID: *vals["KANAL_EID_CLIENT_KEY_ID"], RedirectURL: *vals["KANAL_EID_REDIRECT_URL"],
		ACRHigh: splitList(*vals["KANAL_EID_ACR_HIGH"]), ACRSubstantial: splitList(*vals["KANAL_EID_ACR_SUBSTANTIAL"]),
		Scopes: splitList(*vals["KANAL_EID_SCOPES"]), CAFile: *vals["KANAL_EID_CA_FILE"]}
	if e.Issuer == "" {
		for _, env := range []string{"KANAL_EID_CLIENT_ID", "KANAL_EID_CLIENT_SECRET_FILE", "KANAL_EID_CLIENT_KEY_FILE", "KANAL_EID_REDIRECT_URL"} {
			if *vals[env] != "" {
				return e, &settingError{"KANAL_EID_ISSUER", fmt.Errorf("is empty but %s is set", env)}
			}
		}
		return e, nil
	}
	if _, err := e.relyingParty(); err != nil {
		return e, err
	}
	return e, nil
}

// relyingParty builds the eID relying party, nil without a provider.
func (e eidConfig) relyingParty() (*oidc.RP, error) {
	if e.Issuer == "" {
		return nil, nil
	}
	c := oidc.Config{Issuer: e.Issuer, ClientID: e.ClientID, ClientKeyID: e.ClientKeyID, RedirectURL: e.RedirectURL,
		ACRSubstantial: e.ACRSubstantial, ACRHigh: e.ACRHigh, Scopes: e.Scopes}
	if u, err := url.Parse(e.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, &settingError{"KANAL_EID_ISSUER", fmt.Errorf("%q is not an https URL", e.Issuer)}
	}
	if (e.ClientSecretFile == "") == (e.ClientKeyFile == "") {
		return nil, &settingError{"KANAL_EID_CLIENT_SECRET_FILE", errors.New("set exactly one of it and KANAL_EID_CLIENT_KEY_FILE")}
	}
	if e.ClientSecretFile != "" {
		b, err := readPrivateFile(e.ClientSecretFile)
		if err != nil {
			return nil, &settingError{"KANAL_EID_CLIENT_SECRET_FILE", err}
		}
		c.ClientSecret = strings.TrimSpace(string(b))
		if c.ClientSecret == "" {
			return nil, &settingError{"KANAL_EID_CLIENT_SECRET_FILE", errors.New("the file is empty")}
		}
	} else {
		b, err := readPrivateFile(e.ClientKeyFile)
		if err != nil {
			return nil, &settingError{"KANAL_EID_CLIENT_KEY_FILE", err}
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, &settingError{"KANAL_EID_CLIENT_KEY_FILE", errors.New("no PEM block")}
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			if k, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
				return nil, &settingError{"KANAL_EID_CLIENT_KEY_FILE", errors.New("not a PKCS #8 or SEC 1 private key")}
			}
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, &settingError{"KANAL_EID_CLIENT_KEY_FILE", errors.New("not a signing key")}
		}
		c.ClientKey = signer
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if e.CAFile != "" {
		pemBytes, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, &settingError{"KANAL_EID_CA_FILE", err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, &settingError{"KANAL_EID_CA_FILE", errors.New("no PEM certificate in the file")}
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.HTTPClient = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	rp, err := oidc.New(c)
	if err != nil {
		env := "KANAL_EID_ISSUER"
		switch {
		case strings.Contains(err.Error(), "redirect"):
			env = "KANAL_EID_REDIRECT_URL"
		case strings.Contains(err.Error(), "client id"):
			env = "KANAL_EID_CLIENT_ID"
		case strings.Contains(err.Error(), "key id"):
			env = "KANAL_EID_CLIENT_KEY_ID"
		case strings.Contains(err.Error(), "acr"):
			env = "KANAL_EID_ACR_HIGH"
		case strings.Contains(err.Error(), "client key"):
			env = "KANAL_EID_CLIENT_KEY_FILE"
		}
		return nil, &settingError{env, errors.New(strings.TrimPrefix(err.Error(), "oidc: "))}
	}
	return rp, nil
}

// readPrivateFile reads a secret file that must not be readable by
// everyone.
func readPrivateFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("%s is readable by everyone; chmod 600 it", path)
	}
	return os.ReadFile(path)
}
