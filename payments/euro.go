package payments

import "fmt"

// Euro is an amount in cents as people read it, the way they type it:
// "EUR 37.50", "EUR 0.05", "-EUR 3.00". Every message about an amount says
// it in euros, never in cents.
func Euro(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%sEUR %d.%02d", sign, cents/100, cents%100)
}
