package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestFormsAdoptionCLI is a template's adoption across two deployments
// with two CAs, through the real kanald and kanal binaries: Darmstadt's
// Bürgeramt publishes the dog registration form and exports a bundle;
// Griesheim's Ordnungsamt imports it with Darmstadt's CA certificate,
// adapts a field, publishes its own version, and anyone holding
// Griesheim's CA certificate sees both organisations in its provenance
// without asking a server.
func TestFormsAdoptionCLI(t *testing.T) {
	srvA := kanaldtest.Start(t, bin.kanald)
	srvB := kanaldtest.Start(t, bin.kanald)
	work := t.TempDir()
	common := []string{"PATH=" + os.Getenv("PATH"), "KANAL_PASSPHRASE=correct horse battery staple", "KANAL_PASSWORD=Tr0ub4dor&3-but-longer"}
	vars := map[string]string{}
	a := &session{t: t, work: work, vars: vars, env: append([]string{"KANAL_SERVER=" + srvA.URL}, common...)}
	b := &session{t: t, work: work, vars: vars, env: append([]string{"KANAL_SERVER=" + srvB.URL}, common...)}
	signup := func(s *session, srv *kanaldtest.Server, home, email, org, orgVar string) []step {
		return []step{
			{home: home, cmd: "kanal register " + email},
			{do: func(t *testing.T) { vars["CODE"] = srv.Code(t, email) }},
			{home: home, cmd: "kanal verify $CODE"},
			{home: home, cmd: "kanal password"},
			{home: home, cmd: "kanal device enroll --name laptop"},
			{home: home, cmd: "kanal login", want: []string{"level substantial"}},
			{do: func(t *testing.T) { vars["OPTOKEN"] = srv.OperatorToken(t) }},
			{home: home, cmd: "kanal admin org create --kind office '" + org + "'", env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"},
				set: map[string]string{orgVar: `(?m)^(org_\S+)$`}},
			{home: home, cmd: "kanal admin org verify $" + orgVar, env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}},
			{home: home, cmd: "kanal admin org member add --role agent $" + orgVar + " " + email, env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}},
		}
	}

	// Deployment A: Darmstadt publishes and exports.
	a.run(append(signup(a, srvA, "anna", "anna@darmstadt.example", "Bürgeramt Darmstadt", "ORGA"), []step{
		{home: "anna", cmd: "kanal form publish builtin:hundeanmeldung --org $ORGA",
			want: []string{"Published hundeanmeldung 1.0.0 of Bürgeramt Darmstadt ($ORGA), sha256:", "1. hundeanmeldung 1.0.0 by Bürgeramt Darmstadt"}},
		{home: "anna", cmd: "kanal form publish builtin:hundeanmeldung --org $ORGA", exit: 1, want: []string{"1.0.0"}},
		{home: "anna", cmd: "kanal form list", want: []string{"hundeanmeldung", "Bürgeramt Darmstadt", "Anmeldung eines Hundes"}},
		{home: "anna", cmd: "kanal form show hundeanmeldung", want: []string{"fee EUR 5.00 (Hundesteuermarke)", "received → in_progress → needs_information → decided",
			"previous_municipality", "(if moved_here = true)", "competence_proof", "[attachment]"}},
		{home: "anna", cmd: "kanal form export hundeanmeldung@1.0.0 --org $ORGA --out bundle.jws", want: []string{"Exported 1 templates to bundle.jws"}},
		{home: "anna", cmd: "kanal directory ca > a-ca.pem"},
	}...))

	// Deployment B: Griesheim verifies the bundle with A's CA (its own
	// does not do), adapts a field and publishes its own version.
	b.run(append(signup(b, srvB, "ben", "ben@griesheim.example", "Ordnungsamt Griesheim", "ORGB"), []step{
		{home: "ben", cmd: "kanal directory ca > b-ca.pem"},
		{home: "ben", cmd: "kanal form import bundle.jws --ca b-ca.pem", exit: 1, want: []string{"certificate"}, not: []string{"Verified"}},
		{home: "ben", cmd: "kanal form import bundle.jws --ca a-ca.pem", want: []string{"Bundle signed by Bürgeramt Darmstadt ($ORGA)",
			"Verified hundeanmeldung 1.0.0", "hundeanmeldung-1.0.0.adopt.json"}},
		{do: func(t *testing.T) {
			p := filepath.Join(work, "hundeanmeldung-1.0.0.json")
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			m["version"] = "1.1.0"
			field := m["layout"].(map[string]any)["pages"].([]any)[0].(map[string]any)["fields"].([]any)[6].(map[string]any)
			field["label"] = map[string]any{"de": "Telefon (Rückfragen der Griesheimer Hundesteuerstelle)", "en": "Phone (Griesheim dog tax office)"}
			out, _ := json.MarshalIndent(m, "", "  ")
			if err := os.WriteFile(filepath.Join(work, "griesheim.json"), out, 0o644); err != nil {
				t.Fatal(err)
			}
			// A fork naming a parent it does not descend from: the
			// adoption file with Griesheim's own CA in place of Darmstadt's.
			ad, _ := os.ReadFile(filepath.Join(work, "hundeanmeldung-1.0.0.adopt.json"))
			var adopt map[string]any
			_ = json.Unmarshal(ad, &adopt)
			bca, _ := os.ReadFile(filepath.Join(work, "b-ca.pem"))
			der, err := pemBlock(bca, "CERTIFICATE")
			if err != nil {
				t.Fatal(err)
			}
			adopt["ca"] = der
			forged, _ := json.Marshal(adopt)
			if err := os.WriteFile(filepath.Join(work, "forged.adopt.json"), forged, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{home: "ben", cmd: "kanal form publish griesheim.json --org $ORGB --parent forged.adopt.json", exit: 1, want: []string{"certificate"}},
		{home: "ben", cmd: "kanal form list", want: []string{"No templates."}},
		{home: "ben", cmd: "kanal form publish griesheim.json --org $ORGB --parent hundeanmeldung-1.0.0.adopt.json",
			want: []string{"Published hundeanmeldung 1.1.0 of Ordnungsamt Griesheim ($ORGB)",
				"1. hundeanmeldung 1.1.0 by Ordnungsamt Griesheim", "2. hundeanmeldung 1.0.0 by Bürgeramt Darmstadt ($ORGA)"}},
		{home: "ben", cmd: "kanal form diff hundeanmeldung@1.1.0", want: []string{"--- hundeanmeldung 1.0.0 (Bürgeramt Darmstadt)",
			"+++ hundeanmeldung 1.1.0 (Ordnungsamt Griesheim)", `~ /layout/pages/0/fields/6/label/de: "Telefon für Rückfragen" → "Telefon (Rückfragen der Griesheimer Hundesteuerstelle)"`,
			`~ /org/name: "Bürgeramt Darmstadt" → "Ordnungsamt Griesheim"`, `+ /parent:`}},
		{home: "ben", cmd: "kanal form diff hundeanmeldung-1.0.0.json griesheim.json", want: []string{`~ /version: "1.0.0" → "1.1.0"`}},
		{home: "ben", cmd: "kanal form show hundeanmeldung@1.1.0 --out b-template.json", want: []string{"Provenance:", "Bürgeramt Darmstadt"}},
		// Offline: no server answers at KANAL_SERVER.
		{home: "ben", cmd: "kanal verify b-template.json --ca b-ca.pem", env: []string{"KANAL_SERVER=http://127.0.0.1:1"},
			want: []string{"Form template hundeanmeldung 1.1.0 verifies", "1. hundeanmeldung 1.1.0 by Ordnungsamt Griesheim ($ORGB)",
				"2. hundeanmeldung 1.0.0 by Bürgeramt Darmstadt ($ORGA)", "2 organisations in its provenance, 2 versions."}},
		{home: "ben", cmd: "kanal verify b-template.json --ca a-ca.pem", env: []string{"KANAL_SERVER=http://127.0.0.1:1"}, exit: 1, not: []string{"verifies"}},
		{home: "ben", cmd: "kanal verify bundle.jws --ca a-ca.pem", env: []string{"KANAL_SERVER=http://127.0.0.1:1"},
			want: []string{"Bundle verifies: signed by Bürgeramt Darmstadt"}},
		{do: func(t *testing.T) {
			// One byte of Darmstadt's signature in the lineage changed.
			p := filepath.Join(work, "b-template.json")
			raw, _ := os.ReadFile(p)
			var s struct {
				JWS     string           `json:"jws"`
				Lineage []map[string]any `json:"lineage"`
			}
			_ = json.Unmarshal(raw, &s)
			j := s.Lineage[0]["jws"].(string)
			i := strings.LastIndexByte(j, '.') + 5
			c := byte('A')
			if j[i] == 'A' {
				c = 'B'
			}
			s.Lineage[0]["jws"] = j[:i] + string(c) + j[i+1:]
			out, _ := json.Marshal(s)
			_ = os.WriteFile(filepath.Join(work, "tampered.json"), out, 0o644)
		}},
		{home: "ben", cmd: "kanal verify tampered.json --ca b-ca.pem", env: []string{"KANAL_SERVER=http://127.0.0.1:1"}, exit: 1,
			want: []string{"ancestor 1"}, not: []string{"verifies"}},
		{home: "ben", cmd: "kanal form withdraw hundeanmeldung@1.1.0", want: []string{"Withdrew hundeanmeldung 1.1.0"}},
		{home: "ben", cmd: "kanal -v form show hundeanmeldung@1.1.0", exit: 1, want: []string{"urn:kanal:problem:template-withdrawn"}},
		{home: "ben", cmd: "kanal form show hundeanmeldung@1.1.0 --withdrawn", want: []string{"WITHDRAWN"}},
		{home: "ben", cmd: "kanal form list --id hundeanmeldung --withdrawn", want: []string{"1.1.0", "withdrawn"}},
	}...))
}
