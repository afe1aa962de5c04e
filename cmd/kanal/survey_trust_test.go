package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/keystore"
)

// TestSurveyRootsThroughIntermediates: a deployment whose root is kept
// offline signs its survey heads, tallies and receipts with a notary
// certificate that an issuing intermediate issued, and rotates that
// intermediate. The roots the survey commands verify with — from the key
// store, or from a --ca file holding the root and then the intermediates —
// accept the notary under the current and under the retired intermediate.
func TestSurveyRootsThroughIntermediates(t *testing.T) {
	now := time.Now()
	root, retired, current := surveyOfflineRoot(t, now)
	for name, inter := range map[string]*ca.CA{"current": current, "retired": retired} {
		notary, err := inter.Notary(t.TempDir(), now)
		if err != nil {
			t.Fatal(err)
		}
		st := &keystore.Store{}
		setSecret(st, secretCA, string(root.CertPEM()))
		setSecret(st, secretIntermediates, string(current.CertPEM())+string(retired.CertPEM()))
		file := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(file, []byte(string(root.CertPEM())+string(current.CertPEM())+string(retired.CertPEM())), 0o600); err != nil {
			t.Fatal(err)
		}
		for from, so := range map[string]*surveyOpts{"key store": {}, "--ca": {ca: file}} {
			var use *keystore.Store
			if so.ca == "" {
				use = st
			}
			roots, err := (&cli{}).roots(so, use)
			if err != nil {
				t.Fatalf("%s: %v", from, err)
			}
			if _, err := ca.VerifyNotary(notary.Certificate().Raw, roots, now); err != nil {
				t.Errorf("%s: the notary under the %s intermediate: %v", from, name, err)
			}
		}
	}
}

// TestAttackSurveyForeignIntermediate: an adversary who runs a deployment
// of its own — another root, with an intermediate of the same name —
// hands out a ca.pem with the real root followed by its intermediate, or
// plants its intermediate in the key store, so that its notary's survey
// heads and results would verify. The survey commands refuse to trust
// anything with a foreign intermediate, and the real root alone does not
// accept the foreign notary.
func TestAttackSurveyForeignIntermediate(t *testing.T) {
	now := time.Now()
	root, _, current := surveyOfflineRoot(t, now)
	_, _, foreign := surveyOfflineRoot(t, now)
	evil, err := foreign.Notary(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, []byte(string(root.CertPEM())+string(current.CertPEM())+string(foreign.CertPEM())), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&cli{}).roots(&surveyOpts{ca: file}, nil); !errors.Is(err, ca.ErrUntrusted) {
		t.Fatalf("--ca with a foreign intermediate: %v", err)
	}
	st := &keystore.Store{}
	setSecret(st, secretCA, string(root.CertPEM()))
	setSecret(st, secretIntermediates, string(foreign.CertPEM()))
	if _, err := (&cli{}).roots(&surveyOpts{}, st); !errors.Is(err, ca.ErrUntrusted) {
		t.Fatalf("a key store with a foreign intermediate: %v", err)
	}
	setSecret(st, secretIntermediates, string(current.CertPEM()))
	roots, err := (&cli{}).roots(&surveyOpts{}, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.VerifyNotary(evil.Certificate().Raw, roots, now); err == nil {
		t.Fatal("the foreign deployment's notary verified against the real root")
	}
	for content, want := range map[string]string{"not a certificate": "trailing data", "": "no certificate"} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := (&cli{}).roots(&surveyOpts{ca: file}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("--ca holding %q: %v, want %q", content, err, want)
		}
	}
}

// surveyOfflineRoot is a deployment under an offline root: the root, the
// intermediate it issued first (since retired) and the current one.
func surveyOfflineRoot(t *testing.T, now time.Time) (root, retired, current *ca.CA) {
	t.Helper()
	root, err := ca.Create("Worms", now.Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if retired, err = root.IssueIntermediate("2025", now.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if current, err = root.IssueIntermediate("2026", now.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return root, retired, current
}
