package camt

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

func sample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/camt053.xml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSampleStatement(t *testing.T) {
	sts, err := Parse(bytes.NewReader(sample(t)))
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 || sts[0].IBAN != "DE89370400440532013000" || sts[0].ID != "0352C5320260514070000" || len(sts[0].Entries) != 4 {
		t.Fatalf("statements %+v", sts)
	}
	e := sts[0].Entries
	want := []Entry{
		{Index: 0, BankRef: "2026051300001234", AmountCents: 3700, Currency: "EUR", Credit: true, Booked: true, BookingDate: "2026-05-13", Reference: "RF18539007547034", Debtor: "Erika Mustermann"},
		{Index: 1, BankRef: "2026051300001235", AmountCents: 370, Currency: "EUR", Credit: true, Booked: true, BookingDate: "2026-05-13", Text: "RF18 5390 0754 7034 Reisepass", Debtor: "Max Mustermann", EndToEndID: "REISEPASS-2026-0815"},
		{Index: 2, BankRef: "2026051300001236", AmountCents: 11000, Currency: "EUR", Credit: true, Booked: true, BookingDate: "2026-05-13", Text: "Hundesteuer 2026 Bello", Debtor: "Hans Beispiel"},
		{Index: 3, BankRef: "2026051300001237", AmountCents: 491, Currency: "EUR", Credit: false, Booked: true, BookingDate: "2026-05-13", Text: "Kontofuehrung 05/2026"},
	}
	for i := range want {
		if e[i] != want[i] {
			t.Errorf("entry %d\n got %+v\nwant %+v", i, e[i], want[i])
		}
	}
}

func TestBadStatements(t *testing.T) {
	good := string(sample(t))
	for name, doc := range map[string]string{
		"empty":              "",
		"not XML":            "hello",
		"truncated":          good[:len(good)/2],
		"camt.052":           strings.Replace(good, "xsd:camt.053.001.02", "xsd:camt.052.001.02", 1),
		"no namespace":       strings.Replace(good, ` xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"`, "", 1),
		"negative amount":    strings.Replace(good, ">37.00</Amt>\n        <CdtDbtInd>", ">-37.00</Amt>\n        <CdtDbtInd>", 1),
		"three decimals":     strings.Replace(good, ">37.00</Amt>\n        <CdtDbtInd>", ">37.001</Amt>\n        <CdtDbtInd>", 1),
		"comma decimal":      strings.Replace(good, ">37.00</Amt>\n        <CdtDbtInd>", ">37,00</Amt>\n        <CdtDbtInd>", 1),
		"exponent":           strings.Replace(good, ">37.00</Amt>\n        <CdtDbtInd>", ">3.7E1</Amt>\n        <CdtDbtInd>", 1),
		"unknown indicator":  strings.Replace(good, "<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>", "<CdtDbtInd>XXXX</CdtDbtInd>\n        <Sts>", 1),
		"bad booking date":   strings.Replace(good, "<Dt>2026-05-13</Dt>\n        </BookgDt>", "<Dt>13.05.2026</Dt>\n        </BookgDt>", 1),
		"trailing element":   good + "<Document/>",
		"doctype":            strings.Replace(good, "<Document ", `<!DOCTYPE d [<!ENTITY x "y">]><Document `, 1),
		"lower-case doctype": strings.Replace(good, "<Document ", `<!doctype Document><Document `, 1),
		"mixed-case doctype": strings.Replace(good, "<Document ", `<!DocType Document SYSTEM "x.dtd"><Document `, 1),
		"unknown version":    strings.Replace(good, "xsd:camt.053.001.02", "xsd:camt.053.001.99", 1),
		"version suffix":     strings.Replace(good, "xsd:camt.053.001.02", "xsd:camt.053.001.02x", 1),
		"unclosed tag":       strings.Replace(good, "</AcctSvcrRef>", "", 1),
		"lower-case ccy":     strings.Replace(good, `Ccy="EUR">37.00`, `Ccy="eur">37.00`, 1),
		"no account IBAN":    strings.Replace(good, "<IBAN>DE89370400440532013000</IBAN>", "", 1),
	} {
		if _, err := Parse(strings.NewReader(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestHugeStatementRefused(t *testing.T) {
	huge := bytes.Repeat([]byte(" "), MaxSize+1)
	if _, err := Parse(bytes.NewReader(huge)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("huge: %v", err)
	}
}

func TestParseAmount(t *testing.T) {
	for s, want := range map[string]int64{"1": 100, "0.01": 1, "12.5": 1250, "999999999.99": 99999999999} {
		if got, err := ParseAmount(s); err != nil || got != want {
			t.Errorf("%q = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", ".5", "1.", "1.234", "-1", "+1", "1e2", "0", "0.00", "1 000", "١"} {
		if _, err := ParseAmount(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample(f))
	f.Add([]byte(`<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt><Id>1</Id><Acct><Id><IBAN>X</IBAN></Id></Acct><Ntry><Amt Ccy="EUR">1</Amt><CdtDbtInd>CRDT</CdtDbtInd></Ntry></Stmt></BkToCstmrStmt></Document>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sts, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, s := range sts {
			for _, e := range s.Entries {
				if e.AmountCents <= 0 || len(e.Currency) != 3 {
					t.Fatalf("accepted entry %+v", e)
				}
			}
		}
	})
}

// TestDocumentedVersions: each camt.053 version the docs list is read.
func TestDocumentedVersions(t *testing.T) {
	good := string(sample(t))
	for _, v := range []string{"02", "03", "04", "05", "06", "07", "08"} {
		doc := strings.Replace(good, "xsd:camt.053.001.02", "xsd:camt.053.001."+v, 1)
		if _, err := Parse(strings.NewReader(doc)); err != nil {
			t.Errorf("camt.053.001.%s: %v", v, err)
		}
	}
}
