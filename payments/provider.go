package payments

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kanal-server/kanal/payments/epc"
)

// Provider is a way of collecting a request's money. Two exist: the
// card/wallet payment service provider (PSP), which confirms payments with
// signed webhooks, and bank transfer, which a camt.053 statement confirms.
type Provider interface {
	Name() string
	// Start tells the payer how to pay r.
	Start(ctx context.Context, r *Request) (*Instructions, error)
	// Refund pays amount back to the payer of r. key is stable across
	// retries of the same refund.
	Refund(ctx context.Context, r *Request, amount int64, key string) error
	// Account is the ledger account the provider's money sits in.
	Account() string
}

// Instructions tell a payer how to pay.
type Instructions struct {
	Provider    string `json:"provider"`
	CheckoutURL string `json:"checkout_url,omitempty"` // PSP: where to pay
	PaymentID   string `json:"payment_id,omitempty"`
	EPCPayload  string `json:"epc_payload,omitempty"` // bank transfer: the GiroCode content
}

func (s *Service) provider(name string) Provider {
	switch {
	case name == ProviderBank:
		return s.bank
	case s.psp != nil && name == s.psp.Name():
		return s.psp
	}
	return nil
}

// ProviderBank is the name of the bank transfer provider.
const ProviderBank = "bank"

// bankTransfer is paying by SEPA credit transfer to the creditor's IBAN
// with the RF reference; a camt.053 import confirms it. Refunds are booked
// and left to the organisation's treasury to transfer.
type bankTransfer struct{}

func (bankTransfer) Name() string    { return ProviderBank }
func (bankTransfer) Account() string { return AccBank }

func (bankTransfer) Start(_ context.Context, r *Request) (*Instructions, error) {
	p, err := epc.Payload(r.Transfer())
	if err != nil {
		return nil, fmt.Errorf("payments.bank: %w", err)
	}
	return &Instructions{Provider: ProviderBank, EPCPayload: p}, nil
}

func (bankTransfer) Refund(context.Context, *Request, int64, string) error { return nil }

// Transfer is the SEPA credit transfer that pays r, as its EPC QR code
// carries it: the creditor, IBAN, BIC, amount and RF reference, and the
// purpose (cut to 70 characters) as the information to the payer. kanald's
// EPC answer and the web app's QR code are both made from it.
func (r *Request) Transfer() epc.Transfer {
	info := []rune(r.Purpose)
	if len(info) > epc.MaxInformation {
		info = info[:epc.MaxInformation]
	}
	return epc.Transfer{BIC: r.BIC, Name: r.Creditor, IBAN: r.IBAN, AmountCents: r.AmountCents, Reference: r.Reference,
		Information: string(info)}
}

// EPC returns the EPC069-12 payload of an open request and, with size > 0,
// a PNG of its QR code, to those who may see the request.
func (s *Service) EPC(ctx context.Context, actor Actor, id string, size int) (string, []byte, error) {
	r, err := s.Request(ctx, actor, id)
	if err != nil {
		return "", nil, err
	}
	if r.Status != StatusOpen {
		return "", nil, fmt.Errorf("payments.epc: %w: request %s is %s", ErrState, id, r.Status)
	}
	p, err := epc.Payload(r.Transfer())
	if err != nil {
		return "", nil, fmt.Errorf("payments.epc: %w", err)
	}
	if size == 0 {
		return p, nil, nil
	}
	png, err := epc.PNG(r.Transfer(), size)
	if err != nil {
		return "", nil, fmt.Errorf("payments.epc: %w", err)
	}
	return p, png, nil
}

func jsonUnmarshal(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("payments: stored result: %w", err)
	}
	return nil
}
