package miniapps

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
)

// bridgeCall posts body to the bridge path as the app's backend.
func (w *world) bridgeCall(appID, secret, path string, body any) (int, map[string]any) {
	w.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, w.srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(appID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestBridge(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		secret := w.secret("bakery", ScopeOpenID, ScopeChatPost, ScopePaymentsRequest, ScopeFormsRequest)
		o := w.consentAndOpen(citizen, "bakery", ScopeOpenID, ScopeChatPost)
		lc, err := w.s.VerifyLaunch(o.LaunchToken, "bakery")
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := w.bridgeCall("bakery", secret, "/v1/bridge/messages", BridgeMessage{Conversation: lc.Conversation, Text: "Ihre Bestellung ist bestätigt."}); code != http.StatusNoContent {
			t.Fatalf("post: %d", code)
		}
		if len(w.posts) != 1 || w.posts[0].AccountID != citizen || w.posts[0].Conversation != "o_"+orgBakery+"_"+citizen || w.posts[0].AppName == "" {
			t.Fatalf("posts: %+v", w.posts)
		}
		// Not consented: payments.request, forms.request.
		code, p := w.bridgeCall("bakery", secret, "/v1/bridge/payment-requests", BridgePaymentRequest{Subject: o.Subject, AmountCents: 450, Purpose: "Brötchen", IdempotencyKey: "k1"})
		if code != http.StatusForbidden || p["type"] != string(TypeConsentRequired) {
			t.Errorf("payment without consent: %d %v", code, p)
		}
		if code, _ := w.bridgeCall("bakery", secret, "/v1/bridge/form-requests", BridgeFormRequest{Conversation: lc.Conversation, TemplateID: "t1", Title: "x"}); code != http.StatusForbidden {
			t.Errorf("form without consent: %d", code)
		}
		if _, err := w.s.Consent(context.Background(), citizenActor(citizen), "bakery", []string{ScopeOpenID, ScopeChatPost, ScopePaymentsRequest}); err != nil {
			t.Fatal(err)
		}
		code, p = w.bridgeCall("bakery", secret, "/v1/bridge/payment-requests", BridgePaymentRequest{Subject: o.Subject, AmountCents: 450, Purpose: "Brötchen", IdempotencyKey: "k1"})
		if code != http.StatusCreated || len(w.asks) != 1 || w.asks[0].AccountID != citizen || w.asks[0].Key != "bakery:k1" {
			t.Fatalf("payment: %d %v %+v", code, p, w.asks)
		}
		// Wrong secret, another app's handle, a made-up subject.
		if code, _ := w.bridgeCall("bakery", "kanal_app_wrong", "/v1/bridge/messages", BridgeMessage{Conversation: lc.Conversation, Text: "x"}); code != http.StatusUnauthorized {
			t.Errorf("wrong secret: %d", code)
		}
		poolSecret := w.secret("pool", ScopeOpenID, ScopeChatPost)
		if code, _ := w.bridgeCall("pool", poolSecret, "/v1/bridge/messages", BridgeMessage{Conversation: lc.Conversation, Text: "x"}); code != http.StatusNotFound {
			t.Errorf("another app's handle: %d", code)
		}
		if code, _ := w.bridgeCall("bakery", secret, "/v1/bridge/payment-requests", BridgePaymentRequest{Subject: "made-up", AmountCents: 1, Purpose: "x", IdempotencyKey: "k2"}); code != http.StatusNotFound {
			t.Errorf("unknown subject: %d", code)
		}
		// Rate limit per citizen.
		for i := 0; ; i++ {
			code, _ := w.bridgeCall("bakery", secret, "/v1/bridge/messages", BridgeMessage{Conversation: lc.Conversation, Text: "x"})
			if code == http.StatusTooManyRequests {
				if i+2 != BridgeRatePerCitizen { // one post and one payment before
					t.Errorf("limited after %d calls", i+2)
				}
				break
			}
			if i > BridgeRatePerCitizen {
				t.Fatal("no rate limit")
			}
		}
		// Suspended: the bridge is shut.
		if _, err := w.s.Suspend(context.Background(), operator, "bakery"); err != nil {
			t.Fatal(err)
		}
		w.now = w.now.Add(2 * 60e9)
		if code, p := w.bridgeCall("bakery", secret, "/v1/bridge/messages", BridgeMessage{Conversation: lc.Conversation, Text: "x"}); code != http.StatusForbidden || p["type"] != string(TypeAppSuspended) {
			t.Errorf("suspended: %d %v", code, p)
		}
	})
}
