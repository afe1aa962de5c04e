package archtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// securityPackages maps the package names docs/security.md uses to their
// directories.
var securityPackages = map[string]string{
	"keys":             "keys",
	"identity":         "identity",
	"messaging":        "messaging",
	"messaging/client": "messaging/client",
	"mailbox":          "messaging/mailbox",
	"push":             "messaging/push",
	"transparency":     "keys/transparency",
	"translog":         "identity/translog",
	"witness":          "identity/translog/witness",
	"ca":               "identity/ca",
	"payments":         "payments",
	"jws":              "payments/jws",
	"forms":            "miniapps/forms",
	"surveys":          "surveys",
	"bus":              "internal/bus",
	"kanald":           "cmd/kanald",
	"kanal":            "cmd/kanal",
}

// TestSecurityDocNamesRealTests: every test docs/security.md cites as the
// proof of a "cannot" exists in the package it names, so the threat model
// cannot point at a test that was renamed or removed.
func TestSecurityDocNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	cited := regexp.MustCompile("`([a-z/]+)\\.(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1)
	if len(cited) < 20 {
		t.Fatalf("docs/security.md cites %d tests; the threat model has lost its proofs", len(cited))
	}
	sources := map[string]string{}
	for _, c := range cited {
		pkgName, test := c[1], c[2]
		dir, ok := securityPackages[pkgName]
		if !ok {
			t.Errorf("docs/security.md cites %s.%s: unknown package %q", pkgName, test, pkgName)
			continue
		}
		src, ok := sources[dir]
		if !ok {
			files, _ := filepath.Glob(filepath.Join("../..", dir, "*_test.go"))
			var b strings.Builder
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				b.Write(data)
			}
			src = b.String()
			sources[dir] = src
		}
		if !strings.Contains(src, "func "+test+"(") {
			t.Errorf("docs/security.md cites %s.%s, but %s has no such test", pkgName, test, dir)
		}
	}
}
