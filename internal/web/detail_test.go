package web

import (
	"errors"
	"fmt"
	"testing"
)

// TestDetail: a problem's detail is the chain without package prefixes
// and without repeats.
func TestDetail(t *testing.T) {
	errStatement := errors.New("bank statement refused")
	camt := errors.New("camt: invalid statement: no Ntry element")
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("payments.import: %w: %w", errStatement, camt), "bank statement refused: invalid statement: no Ntry element"},
		{fmt.Errorf("%w: this account already received its token for this survey", errors.New("surveys: token already issued")),
			"token already issued: this account already received its token for this survey"},
		{errors.New("push: invalid subscription: keys.p256dh must be a base64url uncompressed P-256 public key (65 bytes)"),
			"invalid subscription: keys.p256dh must be a base64url uncompressed P-256 public key (65 bytes)"},
		{errors.New("messaging/client: envelope: bad"), "envelope: bad"},
		{errors.New("iban: checksum: DE03 is wrong"), "iban: checksum: DE03 is wrong"},
		{errors.New("surveys"), "surveys"},
		{errors.New("a: a: b"), "a: b"},
	} {
		if got := Detail(c.err); got != c.want {
			t.Errorf("Detail(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestDetailKeepsFieldNames: a prefix that names a field stays.
func TestDetailKeepsFieldNames(t *testing.T) {
	for _, s := range []string{"identity: invalid key: bad base64", "offer: expired", "contract: total differs"} {
		if got := DetailText(s); got != s {
			t.Errorf("DetailText(%q) = %q", s, got)
		}
	}
	if got := DetailText("messaging: identity: invalid key"); got != "identity: invalid key" {
		t.Errorf("got %q", got)
	}
}
