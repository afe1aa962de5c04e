package payments

import (
	"testing"
	"time"
)

// FuzzVerifyWebhook: nothing but the exact signed header and body, within
// the tolerance, verifies.
func FuzzVerifyWebhook(f *testing.F) {
	p, err := NewPSP(PSPOptions{BaseURL: "https://psp.example", APIKey: "k", WebhookSecret: secret})
	if err != nil {
		f.Fatal(err)
	}
	body := []byte(`{"id":"evt_1","type":"payment.succeeded","payment_id":"p","request_id":"pr_1","amount_cents":100,"fee_cents":0,"currency":"EUR"}`)
	good := SignWebhook([]byte(secret), t0, body)
	f.Add(good, body)
	f.Add("t=1,v1=00", body)
	f.Add(good, []byte(`{}`))
	f.Fuzz(func(t *testing.T, hdr string, b []byte) {
		ev, err := p.VerifyWebhook(hdr, b, t0)
		if err != nil {
			return
		}
		if hdr != good || string(b) != string(body) {
			// Another header can only verify if it carries the same MAC
			// and timestamp (a reordered or padded header).
			if _, err := p.VerifyWebhook(SignWebhook([]byte(secret), t0, b), b, t0); err != nil {
				t.Fatalf("%q %q verified: %+v", hdr, b, ev)
			}
			if string(b) != string(body) {
				t.Fatalf("a body that was never signed verified: %q", b)
			}
		}
		if _, err := p.VerifyWebhook(hdr, b, t0.Add(WebhookTolerance+time.Second)); err == nil {
			t.Fatalf("verified outside the tolerance")
		}
	})
}
