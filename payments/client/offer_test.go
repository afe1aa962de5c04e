package client

import (
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/payments"
	"github.com/kanal-server/kanal/payments/jws"
)

func TestParseItem(t *testing.T) {
	for _, c := range []struct {
		desc, qty, price, vat string
		want                  jws.Item
		err                   string
	}{
		{"Torte", "1", "45.00", "7", jws.Item{Description: "Torte", Quantity: 1, UnitCents: 4500, VATBasisPoints: 700}, ""},
		{" Reisepass ", "2", "37,50", "0", jws.Item{Description: "Reisepass", Quantity: 2, UnitCents: 3750}, ""},
		{"Brot", "3", "2", "5,5", jws.Item{Description: "Brot", Quantity: 3, UnitCents: 200, VATBasisPoints: 550}, ""},
		{"", "1", "1", "19", jws.Item{}, "description"},
		{"Brot", "0", "1", "19", jws.Item{}, "quantity"},
		{"Brot", "1.5", "1", "19", jws.Item{}, "quantity"},
		{"Brot", "10001", "1", "19", jws.Item{}, "quantity"},
		{"Brot", "1", "", "19", jws.Item{}, "amount"},
		{"Brot", "1", "-1", "19", jws.Item{}, "amount"},
		{"Brot", "1", "1.999", "19", jws.Item{}, "amount"},
		{"Brot", "1", "1.000,00", "19", jws.Item{}, "amount"},
		{"Brot", "1", "0", "19", jws.Item{}, "amount"},
		{"Brot", "1", "1", "101", jws.Item{}, "VAT"},
		{"Brot", "1", "1", "19%", jws.Item{}, "VAT"},
	} {
		got, err := ParseItem(c.desc, c.qty, c.price, c.vat)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseItem(%q, %q, %q, %q) = %v, want an error about %s", c.desc, c.qty, c.price, c.vat, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseItem(%q, %q, %q, %q) = %+v, %v, want %+v", c.desc, c.qty, c.price, c.vat, got, err, c.want)
		}
	}
}

func TestBuildOffer(t *testing.T) {
	now := time.Date(2026, 5, 13, 10, 0, 0, 500, time.UTC)
	p := OfferParams{OrgID: "org_bakery", OrgName: "Bäckerei", BuyerAccount: "acc_carl", Valid: 72 * time.Hour,
		Items: []jws.Item{{Description: "Torte", Quantity: 2, UnitCents: 4500, VATBasisPoints: 700}}}
	o, err := BuildOffer(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if o.TotalCents != 9000 || o.VATCents != 589 || !o.IssuedAt.Equal(now.Truncate(time.Second)) || o.ValidUntil.Sub(o.IssuedAt) != 72*time.Hour ||
		!strings.HasPrefix(o.OfferID, "of_") || o.Currency != "EUR" {
		t.Fatalf("BuildOffer: %+v", o)
	}
	if o2, _ := BuildOffer(p, now); o2.OfferID == o.OfferID {
		t.Fatal("two offers with one id")
	}
	for name, bad := range map[string]func(*OfferParams){
		"no items":   func(p *OfferParams) { p.Items = nil },
		"no time":    func(p *OfferParams) { p.Valid = 0 },
		"too long":   func(p *OfferParams) { p.Valid = jws.MaxValidity + time.Hour },
		"no buyer":   func(p *OfferParams) { p.BuyerAccount = "" },
		"long terms": func(p *OfferParams) { p.Terms = strings.Repeat("x", jws.MaxTerms+1) },
	} {
		q := p
		bad(&q)
		if _, err := BuildOffer(q, now); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

// TestRequestKey: the key is the same for the same request (a retry is
// recognised) and differs for another account, organisation or
// parameter.
func TestRequestKey(t *testing.T) {
	p := payments.CreateParams{PayerAccount: "acc_carl", AmountCents: 1250, Creditor: "Stadtkasse", IBAN: "DE89370400440532013000", Purpose: "Gebühr", DueDate: "2026-06-01"}
	k := RequestKey("acc_anna", "org_amt", p)
	if k != RequestKey("acc_anna", "org_amt", p) || !strings.HasPrefix(k, "cli-") || len(k) > 128 {
		t.Fatalf("key %q", k)
	}
	q := p
	q.AmountCents++
	for _, other := range []string{RequestKey("acc_bert", "org_amt", p), RequestKey("acc_anna", "org_other", p), RequestKey("acc_anna", "org_amt", q)} {
		if other == k {
			t.Fatal("two requests with one key")
		}
	}
}
