package camt

import (
	"os"
	"strings"
	"testing"
)

// TestCamtExampleInDocs keeps the camt.053 example in docs/payments.md
// true: the reader takes it, and finds what the page says is in it.
func TestCamtExampleInDocs(t *testing.T) {
	b, err := os.ReadFile("../../docs/payments.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- camt-example:")
	if !ok {
		t.Fatal("docs/payments.md has no camt-example block")
	}
	_, rest, _ = strings.Cut(rest, "```xml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the camt-example block is not closed")
	}
	sts, err := Parse(strings.NewReader(block))
	if err != nil {
		t.Fatalf("the documented statement is refused: %v", err)
	}
	if len(sts) != 1 || sts[0].IBAN != "DE89370400440532013000" || len(sts[0].Entries) != 3 {
		t.Fatalf("statements %+v", sts)
	}
	e := sts[0].Entries
	if !e[0].Credit || !e[0].Booked || e[0].AmountCents != 3700 || e[0].Currency != "EUR" || e[0].Reference != "RF18539007547034" ||
		e[0].BankRef != "2026051300001" || e[0].Debtor != "Carl Beispiel" || e[0].BookingDate != "2026-05-13" {
		t.Errorf("entry 1: %+v", e[0])
	}
	if !e[1].Credit || e[1].AmountCents != 11000 || e[1].Reference != "" || !strings.Contains(e[1].Text, "Hundesteuer") {
		t.Errorf("entry 2: %+v", e[1])
	}
	if e[2].Credit || e[2].AmountCents != 370 {
		t.Errorf("entry 3: %+v", e[2])
	}
}
