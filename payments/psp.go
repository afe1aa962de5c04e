package payments

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PSP is a card/wallet payment service provider reached over HTTP. Its
// API, which the fake provider of the test suite implements:
//
//	POST {base}/v1/payments  {"amount_cents","currency","reference","request_id"}  → 201 {"id","checkout_url"}
//	POST {base}/v1/refunds   {"payment_id","amount_cents"}, Idempotency-Key        → 201 {"id"}
//
// both with "Authorization: Bearer <api key>". It confirms payments by
// POSTing a webhook to kanald (see VerifyWebhook).
type PSP struct {
	name    string
	base    *url.URL
	apiKey  string
	secret  []byte
	client  *http.Client
	maxSkew time.Duration
}

// PSPOptions configures a PSP.
type PSPOptions struct {
	Name          string // e.g. "psp"; the webhook route is /v1/payments/webhooks/{Name}
	BaseURL       string
	APIKey        string
	WebhookSecret string       // at least 32 bytes
	HTTPClient    *http.Client // nil: a client with a 15 s timeout
}

// NewPSP checks the options and returns the provider.
func NewPSP(o PSPOptions) (*PSP, error) {
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("payments.psp: base URL %q is not an http(s) URL", o.BaseURL)
	}
	if len(o.WebhookSecret) < 32 {
		return nil, errors.New("payments.psp: the webhook secret must be at least 32 bytes")
	}
	if o.APIKey == "" {
		return nil, errors.New("payments.psp: an API key is required")
	}
	if o.Name == "" {
		o.Name = "psp"
	}
	c := o.HTTPClient
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	return &PSP{name: o.Name, base: u, apiKey: o.APIKey, secret: []byte(o.WebhookSecret), client: c, maxSkew: WebhookTolerance}, nil
}

func (p *PSP) Name() string    { return p.name }
func (p *PSP) Account() string { return AccClearing }

type pspPayment struct {
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Reference   string `json:"reference"`
	RequestID   string `json:"request_id"`
}

// Start creates a payment at the provider and returns its checkout URL.
func (p *PSP) Start(ctx context.Context, r *Request) (*Instructions, error) {
	var out struct {
		ID          string `json:"id"`
		CheckoutURL string `json:"checkout_url"`
	}
	if err := p.call(ctx, "/v1/payments", "checkout:"+r.RequestID,
		pspPayment{AmountCents: r.AmountCents, Currency: r.Currency, Reference: r.Reference, RequestID: r.RequestID}, &out); err != nil {
		return nil, err
	}
	if out.ID == "" || !strings.HasPrefix(out.CheckoutURL, "https://") && !strings.HasPrefix(out.CheckoutURL, "http://") {
		return nil, fmt.Errorf("payments.psp: bad answer")
	}
	return &Instructions{Provider: p.name, CheckoutURL: out.CheckoutURL, PaymentID: out.ID}, nil
}

// Refund asks the provider to pay amount back.
func (p *PSP) Refund(ctx context.Context, r *Request, amount int64, key string) error {
	var out struct {
		ID string `json:"id"`
	}
	return p.call(ctx, "/v1/refunds", key, struct {
		PaymentID   string `json:"payment_id"`
		AmountCents int64  `json:"amount_cents"`
	}{r.providerPayment, amount}, &out)
}

func (p *PSP) call(ctx context.Context, path, key string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("payments.psp: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("payments.psp: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.apiKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("payments.psp: %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("payments.psp: %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("payments.psp: %s: status %d", path, resp.StatusCode)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("payments.psp: %s: %w", path, err)
	}
	return nil
}

// SignatureHeader carries a webhook's signature: "t=<unix seconds>,v1=<hex
// HMAC-SHA256 of "<t>.<body>">".
const SignatureHeader = "Kanal-Psp-Signature"

// SignWebhook computes the signature header value for body at t. The fake
// provider of the tests signs with it; a real provider documents the same
// scheme.
func SignWebhook(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// WebhookEvent is the body of a webhook.
type WebhookEvent struct {
	ID          string `json:"id"`
	Type        string `json:"type"` // payment.succeeded; other types are acknowledged and ignored
	PaymentID   string `json:"payment_id"`
	RequestID   string `json:"request_id"`
	AmountCents int64  `json:"amount_cents"`
	FeeCents    int64  `json:"fee_cents"`
	Currency    string `json:"currency"`
}

// VerifyWebhook checks a webhook's signature header against body: the
// timestamp must be within WebhookTolerance of now, and the MAC over the
// timestamp and the exact body bytes must match, compared in constant
// time. Only then is the body decoded, strictly.
func (p *PSP) VerifyWebhook(header string, body []byte, now time.Time) (*WebhookEvent, error) {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return nil, fmt.Errorf("%w: malformed signature header", ErrWebhook)
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(p.secret, ts, body)) {
		return nil, fmt.Errorf("%w: bad signature", ErrWebhook)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > p.maxSkew || d < -p.maxSkew {
		return nil, fmt.Errorf("%w: timestamp outside the %v tolerance", ErrWebhook, p.maxSkew)
	}
	var ev WebhookEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrWebhook, err)
	}
	if ev.ID == "" || len(ev.ID) > 128 || ev.Type == "" {
		return nil, fmt.Errorf("%w: event id and type are required", ErrWebhook)
	}
	return &ev, nil
}

// HandleWebhook verifies a PSP webhook and applies it. duplicate reports
// an event already processed, which the provider should stop resending.
func (s *Service) HandleWebhook(ctx context.Context, provider, header string, body []byte) (r *Request, duplicate bool, err error) {
	if s.psp == nil || provider != s.psp.Name() {
		return nil, false, fmt.Errorf("payments.webhook: %w: provider %q", ErrNotFound, provider)
	}
	if len(body) > MaxWebhookBody {
		return nil, false, fmt.Errorf("payments.webhook: %w: body too large", ErrWebhook)
	}
	ev, err := s.psp.VerifyWebhook(header, body, s.now())
	if err != nil {
		return nil, false, fmt.Errorf("payments.webhook: %w", err)
	}
	if ev.Type != "payment.succeeded" {
		return nil, false, nil
	}
	return s.settle(ctx, Settlement{Provider: s.psp.Name(), EventID: ev.ID, RequestID: ev.RequestID, PaymentID: ev.PaymentID,
		AmountCents: ev.AmountCents, FeeCents: ev.FeeCents, Currency: ev.Currency})
}

// Checkout starts paying an open request with the PSP (payer only).
func (s *Service) Checkout(ctx context.Context, actor Actor, id string) (*Instructions, error) {
	r, err := s.Request(ctx, actor, id)
	if err != nil {
		return nil, err
	}
	if actor.AccountID != r.PayerAccount {
		return nil, fmt.Errorf("payments.checkout: %w: only the payer checks out", ErrForbidden)
	}
	if r.Status != StatusOpen {
		return nil, fmt.Errorf("payments.checkout: %w: request %s is %s", ErrState, id, r.Status)
	}
	if s.psp == nil {
		return s.bank.Start(ctx, r)
	}
	in, err := s.psp.Start(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("payments.checkout: %w: %w", ErrProvider, err)
	}
	return in, nil
}
