package forms

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	a := dog(t)
	b := dog(t)
	b.Version = "1.1.0"
	b.Layout.Pages[0].Fields[6].Label.DE = "Telefon (Pflicht)"
	b.Fee = nil
	b = recheck(t, b)
	var got []string
	for _, c := range Diff(a, b) {
		got = append(got, c.String())
	}
	want := []string{
		`- /fee: {"amount_cents":500,"purpose":"Hundesteuermarke"}`,
		`~ /layout/pages/0/fields/6/label/de: "Telefon für Rückfragen" → "Telefon (Pflicht)"`,
		`~ /version: "1.0.0" → "1.1.0"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(Diff(a, a)) != 0 {
		t.Fatal("a template differs from itself")
	}
}
