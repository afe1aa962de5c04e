// Package client is the Go client of kanal's payments API: contracts,
// payment requests, their EPC QR codes, checkout, refunds, and the
// operator's bank statement import, books and audit log.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/payments"
)

// maxAnswer bounds an answer's size (a QR PNG included).
const maxAnswer = 4 << 20

// Client calls one kanald with one bearer token (a session or the
// operator's).
type Client struct {
	base  string
	hc    *http.Client
	token string
}

// New returns a client for baseURL; a nil hc uses a 30 s timeout.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc, token: token}
}

// Replayed reports whether an answer was a stored first result
// (Idempotent-Replayed: true).
type Replayed bool

func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, body io.Reader, out any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, maxAnswer)
	if err != nil {
		return nil, fmt.Errorf("payments/client: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return nil, (*idclient.Problem)(apiclient.ProblemOf(resp, b))
	}
	switch v := out.(type) {
	case nil:
	case *[]byte:
		*v = b
	default:
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("payments/client: %s %s: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

func (c *Client) postJSON(ctx context.Context, path, key string, in, out any) (Replayed, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return false, err
	}
	hdr := http.Header{}
	if key != "" {
		hdr.Set("Idempotency-Key", key)
	}
	h, err := c.do(ctx, http.MethodPost, path, hdr, bytes.NewReader(b), out)
	if err != nil {
		return false, err
	}
	return h.Get("Idempotent-Replayed") == "true", nil
}

func seg(s string) string { return url.PathEscape(s) }

// RegisterOffer registers an offer JWS as its seller sends it.
func (c *Client) RegisterOffer(ctx context.Context, offer string) (*payments.OfferInfo, Replayed, error) {
	var out payments.OfferInfo
	r, err := c.postJSON(ctx, "/v1/offers", "", payments.RegisterOfferRequest{Offer: offer}, &out)
	return &out, r, err
}

// RegisterContract registers a contract JWS.
func (c *Client) RegisterContract(ctx context.Context, key, contract string) (*payments.ContractInfo, Replayed, error) {
	var out payments.ContractInfo
	r, err := c.postJSON(ctx, "/v1/contracts", key, payments.RegisterContractRequest{Contract: contract}, &out)
	return &out, r, err
}

// Contract reads a registered contract.
func (c *Client) Contract(ctx context.Context, id string) (*payments.ContractInfo, error) {
	var out payments.ContractInfo
	_, err := c.do(ctx, http.MethodGet, "/v1/contracts/"+seg(id), nil, nil, &out)
	return &out, err
}

// CreateRequest creates a payment request for org.
func (c *Client) CreateRequest(ctx context.Context, org, key string, p payments.CreateParams) (*payments.Request, Replayed, error) {
	var out payments.Request
	r, err := c.postJSON(ctx, "/v1/orgs/"+seg(org)+"/payment-requests", key, p, &out)
	return &out, r, err
}

// Request reads a payment request.
func (c *Client) Request(ctx context.Context, id string) (*payments.Request, error) {
	var out payments.Request
	_, err := c.do(ctx, http.MethodGet, "/v1/payment-requests/"+seg(id), nil, nil, &out)
	return &out, err
}

// History lists a request's transitions.
func (c *Client) History(ctx context.Context, id string) ([]payments.Transition, error) {
	var out payments.HistoryResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/payment-requests/"+seg(id)+"/history", nil, nil, &out)
	return out.Transitions, err
}

// EPC returns the EPC069-12 payload of an open request.
func (c *Client) EPC(ctx context.Context, id string) (string, error) {
	var b []byte
	_, err := c.do(ctx, http.MethodGet, "/v1/payment-requests/"+seg(id)+"/epc", nil, nil, &b)
	return string(b), err
}

// EPCPNG returns the request's EPC QR code as a PNG of size×size pixels.
func (c *Client) EPCPNG(ctx context.Context, id string, size int) ([]byte, error) {
	var b []byte
	_, err := c.do(ctx, http.MethodGet, "/v1/payment-requests/"+seg(id)+"/epc?format=png&size="+strconv.Itoa(size), nil, nil, &b)
	return b, err
}

// Cancel cancels an open request.
func (c *Client) Cancel(ctx context.Context, id string) (*payments.Request, error) {
	var out payments.Request
	_, err := c.postJSON(ctx, "/v1/payment-requests/"+seg(id)+"/cancel", "", struct{}{}, &out)
	return &out, err
}

// Checkout starts paying a request with the card/wallet provider.
func (c *Client) Checkout(ctx context.Context, id string) (*payments.Instructions, error) {
	var out payments.Instructions
	_, err := c.postJSON(ctx, "/v1/payment-requests/"+seg(id)+"/checkout", "", struct{}{}, &out)
	return &out, err
}

// Refund gives back amount cents of a paid request.
func (c *Client) Refund(ctx context.Context, id, key string, amount int64) (*payments.RefundResult, Replayed, error) {
	var out payments.RefundResult
	r, err := c.postJSON(ctx, "/v1/payment-requests/"+seg(id)+"/refunds", key, payments.RefundRequest{AmountCents: amount}, &out)
	return &out, r, err
}

// ImportStatement uploads a camt.053 file (operator).
func (c *Client) ImportStatement(ctx context.Context, xml []byte) (*payments.ImportResult, error) {
	var out payments.ImportResult
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/xml")
	_, err := c.do(ctx, http.MethodPost, "/v1/admin/payments/statements", hdr, bytes.NewReader(xml), &out)
	return &out, err
}

// BankEntries lists imported bank entries by status (operator).
func (c *Client) BankEntries(ctx context.Context, status string) ([]payments.BankEntry, error) {
	var out payments.EntriesResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/admin/payments/bank-entries?status="+url.QueryEscape(status), nil, nil, &out)
	return out.Entries, err
}

// Resolve resolves an unmatched bank entry (operator).
func (c *Client) Resolve(ctx context.Context, entry string, in payments.ResolveRequest) (*payments.BankEntry, error) {
	var out payments.BankEntry
	_, err := c.postJSON(ctx, "/v1/admin/payments/bank-entries/"+seg(entry)+"/resolve", "", in, &out)
	return &out, err
}

// Books runs the ledger's balance check (operator).
func (c *Client) Books(ctx context.Context) (*payments.Books, error) {
	var out payments.Books
	_, err := c.do(ctx, http.MethodGet, "/v1/admin/payments/books", nil, nil, &out)
	return &out, err
}

// Audit reads the audit log: the operator's whole log (org ""), or one
// organisation's (an owner's or admin's session).
func (c *Client) Audit(ctx context.Context, org string, after int64) ([]payments.AuditEntry, error) {
	var out payments.AuditResponse
	path := "/v1/admin/payments/audit?after=" + strconv.FormatInt(after, 10)
	if org != "" && c.token != "" && !strings.HasPrefix(c.token, "kanal_op_") {
		path = "/v1/orgs/" + seg(org) + "/payments/audit?after=" + strconv.FormatInt(after, 10)
	} else if org != "" {
		path += "&org=" + url.QueryEscape(org)
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out.Entries, err
}
