package forms

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// TestVectors checks the vectors docs/forms.md cites: the canonical form
// and hash of the shipped Hundeanmeldung, and a signed template (with a
// parent from another deployment) that verifies against the CA
// certificate beside it. With -update they are made anew.
func TestVectors(t *testing.T) {
	tpl := dog(t)
	if *update {
		must(t, os.WriteFile("testdata/hundeanmeldung.canonical.json", tpl.JSON(), 0o644))
		must(t, os.WriteFile("testdata/hundeanmeldung.hash", []byte(tpl.Hash()+"\n"), 0o644))
		a := newDeployment(t, "Darmstadt", "buergeramt", "Bürgeramt Darmstadt", ca.OrgOffice)
		b := newDeployment(t, "Griesheim", "ordnungsamt", "Ordnungsamt Griesheim", ca.OrgOffice)
		sa, va := a.sign(t, a.template(t, "hundeanmeldung"), nil)
		p, l := Descend(sa, va, a.ca.Certificate().Raw)
		fork := b.template(t, "hundeanmeldung")
		fork.Version, fork.Parent = "1.1.0", p
		sb, _ := b.sign(t, recheck(t, fork), l)
		out, _ := json.MarshalIndent(sb, "", "  ")
		must(t, os.WriteFile("testdata/signed-fork.json", append(out, '\n'), 0o644))
		must(t, os.WriteFile("testdata/signed-fork.ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.ca.Certificate().Raw}), 0o644))
	}
	canon, err := os.ReadFile("testdata/hundeanmeldung.canonical.json")
	must(t, err)
	hash, err := os.ReadFile("testdata/hundeanmeldung.hash")
	must(t, err)
	if !bytes.Equal(canon, tpl.JSON()) || strings.TrimSpace(string(hash)) != tpl.Hash() || HashOf(canon) != tpl.Hash() {
		t.Fatal("the canonical form or hash of the shipped Hundeanmeldung changed (run with -update and review the diff)")
	}
	raw, err := os.ReadFile("testdata/signed-fork.json")
	must(t, err)
	var s Signed
	must(t, json.Unmarshal(raw, &s))
	caPEM, err := os.ReadFile("testdata/signed-fork.ca.pem")
	must(t, err)
	blk, _ := pem.Decode(caPEM)
	caCert, err := parseCert(blk.Bytes)
	must(t, err)
	v, err := Verify(s, caCert)
	must(t, err)
	if len(v.Provenance()) != 2 || v.Membership.OrgName != "Ordnungsamt Griesheim" || v.Ancestors[0].Membership.OrgName != "Bürgeramt Darmstadt" {
		t.Fatalf("provenance %+v", v.Provenance())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
