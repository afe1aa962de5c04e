package payments

import "testing"

// TestEuro: amounts in messages read in euros.
func TestEuro(t *testing.T) {
	for cents, want := range map[int64]string{0: "EUR 0.00", 5: "EUR 0.05", 3750: "EUR 37.50", -300: "-EUR 3.00", MaxAmountCents: "EUR 999999999.99"} {
		if got := Euro(cents); got != want {
			t.Errorf("Euro(%d) = %q, want %q", cents, got, want)
		}
	}
}
