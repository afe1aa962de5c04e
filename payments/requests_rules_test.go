package payments

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/payments/epc"
)

// TestCreditorAndPurposeInCharacters: names with umlauts up to the limit
// in characters are accepted (and give a QR payload); one more character
// is refused before anything is stored.
func TestCreditorAndPurposeInCharacters(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		p := fee()
		p.Creditor = strings.Repeat("ä", MaxCreditor) // 70 characters, 140 bytes
		p.Purpose = strings.Repeat("ü", 60)
		r, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "umlauts", p)
		if err != nil {
			t.Fatalf("70-character umlaut creditor: %v", err)
		}
		if _, _, err := w.s.EPC(ctx, actor(citizen), r.RequestID, 0); err != nil {
			t.Fatalf("QR of the umlaut request: %v", err)
		}
		before := w.snapshot()
		p.Creditor += "ä"
		if _, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "umlauts-2", p); !errors.Is(err, ErrInvalid) {
			t.Fatalf("71 characters: %v", err)
		}
		w.unchanged(before, "a creditor over 70 characters")
	})
}

// TestPayloadTooLargeRefusedAtCreation: a request whose EPC payload would
// exceed 331 bytes is refused when it is created (and nothing is stored),
// not answered with 500 when its QR code is asked for.
func TestPayloadTooLargeRefusedAtCreation(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		before := w.snapshot()
		p := fee()
		p.Creditor = strings.Repeat("€", MaxCreditor) // 210 bytes
		p.Purpose = strings.Repeat("€", MaxPurpose)   // 70 of them in the information line: 210 bytes
		_, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "big", p)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "331") {
			t.Fatalf("payload over 331 bytes: %v", err)
		}
		w.unchanged(before, "a request without a possible QR code")
	})
}

// TestBICForNonEEASEPACountries: EPC069-12 keeps the BIC mandatory for
// IBANs of SEPA countries outside the EEA.
func TestBICForNonEEASEPACountries(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		before := w.snapshot()
		for _, iban := range []string{"CH9300762011623852957", "GB82WEST12345698765432"} {
			p := fee()
			p.IBAN = iban
			if _, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "nobic-"+iban, p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bic") {
				t.Errorf("%s without a BIC: %v", iban, err)
			}
		}
		w.unchanged(before, "non-EEA IBANs without a BIC")
		p := fee()
		p.IBAN, p.BIC = "CH9300762011623852957", "UBSWCHZH80A"
		r, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "ch", p)
		if err != nil {
			t.Fatal(err)
		}
		payload, _, err := w.s.EPC(ctx, actor(citizen), r.RequestID, 0)
		if err != nil || strings.Split(payload, "\n")[4] != "UBSWCHZH80A" {
			t.Fatalf("QR %q %v", payload, err)
		}
	})
	if _, err := epc.Payload(epc.Transfer{Name: "Stadt Zürich", IBAN: "CH9300762011623852957", AmountCents: 100}); !errors.Is(err, epc.ErrInvalid) {
		t.Fatalf("QR for a CH IBAN without a BIC: %v", err)
	}
	if _, err := epc.Payload(epc.Transfer{Name: "Stadtkasse", IBAN: testIBAN, AmountCents: 100}); err != nil {
		t.Fatalf("QR for a DE IBAN without a BIC: %v", err)
	}
}
