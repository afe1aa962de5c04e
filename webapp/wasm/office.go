//go:build js && wasm

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall/js"
	"time"

	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/payments"
	pclient "github.com/kanal-server/kanal/payments/client"
	"github.com/kanal-server/kanal/payments/jws"
)

// The office agent's side of offers and payment requests, and the live
// payment status: an agent sends an offer or a payment request in a
// conversation with a citizen through the functions kanal offer send and
// kanal pay request use (payments/client: BuildOffer, SignOffer,
// RequestKey; payments.CreateParams.Check), sees the contract the citizen
// signed verified as kanal verify does, and both sides take a payment's
// new status only from a payment.status notice the SDK verified.

// maxFormJSON bounds what the page hands over for one form (an offer of
// jws.MaxItems items is far smaller).
const maxFormJSON = 64 << 10

// fieldError is a mistake in one field of a form: the page shows the
// message next to the field and ties it to it (aria-describedby).
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// formResult is the answer of a form: the entry sent, or the mistakes
// that kept anything from being sent.
type formResult struct {
	Errors []fieldError `json:"errors,omitempty"`
	Entry  *entry       `json:"entry,omitempty"`
}

// agentPeer reads the conversation a form is sent in: the office's
// conversation with one citizen.
func agentPeer(s string) (peer, error) {
	var p peer
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return p, err
	}
	if p.Org == "" || p.Account == "" || p.Group != "" {
		return p, errors.New("offers and payment requests are sent in an office's conversation with a citizen")
	}
	return p, nil
}

func decodeForm(s string, v any) error {
	if len(s) > maxFormJSON {
		return errors.New("the form is too long")
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

type offerForm struct {
	Items []struct {
		Description string `json:"description"`
		Quantity    string `json:"quantity"`
		UnitPrice   string `json:"unit_price"`
		VAT         string `json:"vat"`
	} `json:"items"`
	ValidDays string `json:"valid_days"`
	Terms     string `json:"terms"`
}

// sendOffer(peerJSON, formJSON, password) signs an offer as the office's
// seller and sends it to the citizen, as kanal offer send does: every
// field is checked first (the answer names the fields that are wrong and
// nothing is sent); then, with the account password, a session at level
// substantial (which registering an offer needs); the offer is signed with
// this device's WebCrypto key, its certificate and its membership
// certificate, registered with kanald and sent.
func (a *app) sendOffer(args []js.Value) (any, error) {
	ctx := context.Background()
	p, err := agentPeer(args[0].String())
	if err != nil {
		return nil, err
	}
	var f offerForm
	if err := decodeForm(args[1].String(), &f); err != nil {
		return nil, fmt.Errorf("offer form: %w", err)
	}
	var errs []fieldError
	var items []jws.Item
	if len(f.Items) == 0 || len(f.Items) > jws.MaxItems {
		errs = append(errs, fieldError{"offer-item-0-description", fmt.Sprintf("an offer has 1 to %d items", jws.MaxItems)})
	}
	for i, it := range f.Items {
		field := func(name string) string { return fmt.Sprintf("offer-item-%d-%s", i, name) }
		item, err := pclient.ParseItem(it.Description, it.Quantity, it.UnitPrice, it.VAT)
		if err != nil {
			name := "description"
			switch {
			case strings.HasPrefix(err.Error(), "quantity"):
				name = "quantity"
			case strings.HasPrefix(err.Error(), "VAT"):
				name = "vat"
			case strings.Contains(err.Error(), "amount") || strings.Contains(err.Error(), "price"):
				name = "price"
			}
			errs = append(errs, fieldError{field(name), err.Error()})
			continue
		}
		items = append(items, item)
	}
	days, err := strconv.Atoi(strings.TrimSpace(f.ValidDays))
	if err != nil || days < 1 || days > int(jws.MaxValidity/(24*time.Hour)) {
		errs = append(errs, fieldError{"offer-valid", fmt.Sprintf("the validity is a whole number of days from 1 to %d", int(jws.MaxValidity/(24*time.Hour)))})
	}
	password := args[2].String()
	if password == "" {
		errs = append(errs, fieldError{"offer-password", "signing an offer needs the account password"})
	}
	if len(errs) > 0 {
		return jsonString(formResult{Errors: errs})
	}
	o, err := pclient.BuildOffer(pclient.OfferParams{OrgID: p.Org, OrgName: p.Org, BuyerAccount: p.Account, Items: items,
		Valid: time.Duration(days) * 24 * time.Hour, Terms: strings.TrimSpace(f.Terms)}, time.Now())
	if err != nil {
		field := "offer-terms"
		if !strings.Contains(err.Error(), "terms") {
			field = "offer-item-0-description"
		}
		return jsonString(formResult{Errors: []fieldError{{field, err.Error()}}})
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	token, certPEM, err := a.substantial(ctx, dev, password)
	if err != nil {
		return nil, err
	}
	devDER, err := certDER(certPEM)
	if err != nil {
		return nil, err
	}
	signed, o, err := pclient.SignOffer(ctx, a.ident().WithToken(token), o,
		pclient.SellerDevice{DeviceID: dev.st.DeviceID, Key: dev.key, DeviceCert: devDER}, dev.pool)
	if err != nil {
		return nil, err
	}
	// kanald registers the offer now, while this device is a current
	// member and issued_at is close to its clock: only a registered offer
	// becomes a registered contract.
	if _, _, err := pclient.New(a.base, token, nil).RegisterOffer(ctx, signed); err != nil {
		return nil, fmt.Errorf("register the offer: %w", err)
	}
	e, err := a.sendTyped(ctx, p, &kind.OfferBody{OfferID: o.OfferID, JWS: signed},
		fmt.Sprintf("%s %s", o.OfferID, payments.Euro(o.TotalCents)))
	if err != nil {
		return nil, fmt.Errorf("offer %s is signed and registered, but sending it failed: %w", o.OfferID, err)
	}
	return jsonString(formResult{Entry: &e})
}

type paymentForm struct {
	ContractID string `json:"contract_id"`
	Amount     string `json:"amount"`
	Creditor   string `json:"creditor"`
	IBAN       string `json:"iban"`
	BIC        string `json:"bic"`
	Purpose    string `json:"purpose"`
	Reference  string `json:"reference"`
	Due        string `json:"due"`
}

// paymentField names the form field a create's error is about.
func paymentField(msg string) string {
	for _, f := range []struct{ word, field string }{{"contract", "pay-contract"}, {"amount", "pay-amount"}, {"fee", "pay-amount"},
		{"creditor", "pay-creditor"}, {"iban", "pay-iban"}, {"bic", "pay-bic"}, {"purpose", "pay-purpose"},
		{"reference", "pay-reference"}, {"due", "pay-due"}} {
		if strings.Contains(strings.ToLower(msg), f.word) {
			return f.field
		}
	}
	return "pay-purpose"
}

// requestPayment(peerJSON, formJSON, password) creates a payment request
// for the citizen, for a signed contract (amount and payer come from it)
// or as a fee, and sends it as a payment.request message, as kanal pay
// request does: the create's own rules (CreateParams.Check) run first, and
// the Idempotency-Key is derived from the parameters (RequestKey), so a
// retry after a failed send answers with the request made first.
func (a *app) requestPayment(args []js.Value) (any, error) {
	ctx := context.Background()
	p, err := agentPeer(args[0].String())
	if err != nil {
		return nil, err
	}
	var f paymentForm
	if err := decodeForm(args[1].String(), &f); err != nil {
		return nil, fmt.Errorf("payment form: %w", err)
	}
	cp := payments.CreateParams{ContractID: strings.TrimSpace(f.ContractID), Creditor: strings.TrimSpace(f.Creditor),
		IBAN: strings.TrimSpace(f.IBAN), BIC: strings.TrimSpace(f.BIC), Purpose: strings.TrimSpace(f.Purpose),
		Reference: strings.TrimSpace(f.Reference), DueDate: strings.TrimSpace(f.Due)}
	var errs []fieldError
	if cp.ContractID == "" {
		cp.PayerAccount = p.Account
		n, err := pclient.ParseEuro(f.Amount)
		if err != nil {
			errs = append(errs, fieldError{"pay-amount", err.Error()})
		}
		cp.AmountCents = n
	} else if c := a.receivedContract(p, cp.ContractID); c == nil {
		errs = append(errs, fieldError{"pay-contract", "no contract " + cp.ContractID + " has been signed in this conversation"})
	}
	password := args[2].String()
	if password == "" {
		errs = append(errs, fieldError{"pay-password", "a payment request needs the account password"})
	}
	if len(errs) == 0 {
		if err := cp.Check(time.Now()); err != nil {
			msg := strings.TrimPrefix(err.Error(), payments.ErrInvalid.Error()+": ")
			errs = append(errs, fieldError{paymentField(msg), msg})
		}
	}
	if len(errs) > 0 {
		return jsonString(formResult{Errors: errs})
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	token, _, err := a.substantial(ctx, dev, password)
	if err != nil {
		return nil, err
	}
	r, _, err := pclient.New(a.base, token, nil).CreateRequest(ctx, p.Org, pclient.RequestKey(dev.st.AccountID, p.Org, cp), cp)
	if err != nil {
		return nil, err
	}
	if r.PayerAccount != p.Account || r.OrgID != p.Org {
		return nil, fmt.Errorf("payment request %s is for %s, not for this conversation: not sent", r.RequestID, r.PayerAccount)
	}
	e, err := a.sendTyped(ctx, p, &kind.PaymentRequestBody{RequestID: r.RequestID, AmountCents: r.AmountCents, Currency: r.Currency,
		Creditor: r.Creditor, IBAN: r.IBAN, Reference: r.Reference, DueDate: r.DueDate, Purpose: r.Purpose, BIC: r.BIC, ContractID: r.ContractID},
		fmt.Sprintf("%s %s", payments.Euro(r.AmountCents), r.Purpose))
	if err != nil {
		return nil, fmt.Errorf("created %s, but sending it failed (send the same request again: it is not created twice): %w", r.RequestID, err)
	}
	return jsonString(formResult{Entry: &e})
}

// sendTyped sends body to p and keeps it in the history with its body,
// so that the page can show what was sent and its state.
func (a *app) sendTyped(ctx context.Context, p peer, body kind.Body, text string) (entry, error) {
	mc, err := a.client()
	if err != nil {
		return entry{}, err
	}
	m, err := kind.New(mclient.NewMessageID(), time.Now(), body)
	if err != nil {
		return entry{}, err
	}
	a.mu.Lock()
	live := a.live
	a.mu.Unlock()
	if live != nil {
		_, err = live.Send(ctx, p.sdk(), m)
	} else {
		_, err = mc.Send(ctx, p.sdk(), m)
	}
	if err != nil {
		return entry{}, err
	}
	conv, _ := mc.ConversationID(p.sdk())
	b, err := json.Marshal(body)
	if err != nil {
		return entry{}, err
	}
	e := entry{ID: m.ID, Conv: conv, Peer: p, From: "me", Kind: string(m.Kind), Text: text, At: m.SentAt.Format(time.RFC3339),
		State: "sent", Body: b}
	return e, a.keep(e)
}

// receivedContract finds the contract message with this id that the
// citizen of p sent in the office's conversation.
func (a *app) receivedContract(p peer, id string) *entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.entries) - 1; i >= 0; i-- {
		e := a.entries[i]
		var cb kind.ContractBody
		if e.Kind == string(kind.Contract) && e.From == p.Account && e.Peer == p && json.Unmarshal(e.Body, &cb) == nil && cb.ContractID == id {
			return &e
		}
	}
	return nil
}

type officeContractView struct {
	ContractID   string     `json:"contract_id"`
	OfferID      string     `json:"offer_id"`
	OrgName      string     `json:"org_name"`
	Buyer        string     `json:"buyer"`
	Items        []jws.Item `json:"items"`
	Currency     string     `json:"currency"`
	TotalCents   int64      `json:"total_cents"`
	VATCents     int64      `json:"vat_cents"`
	SignedAt     time.Time  `json:"signed_at"`
	RegisteredAt time.Time  `json:"registered_at"`
	// Payment is the state of the payment request sent for the contract,
	// if one was: its id and status.
	PaymentID     string `json:"payment_id,omitempty"`
	PaymentStatus string `json:"payment_status,omitempty"`
}

// contract(messageID) shows a contract a citizen signed, to the office:
// verified offline as kanal verify does (jws.VerifyContract against the
// deployment CA: the offer's seller and membership, the buyer's device,
// both certificates' signed statuses), for an offer of this organisation,
// by the citizen who sent it in this conversation; and kanald's
// registration of it. Its state: signed, payment requested, paid.
func (a *app) contract(args []js.Value) (any, error) {
	var cb kind.ContractBody
	e, err := a.received(args[0].String(), kind.Contract, &cb)
	if err != nil {
		return nil, err
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	c, err := jws.VerifyContract(cb.JWS, jws.VerifyOptions{CA: dev.root})
	if err != nil {
		return nil, fmt.Errorf("the contract does not verify: %w", err)
	}
	o := c.Offer.Offer
	switch {
	case c.ID != cb.ContractID:
		return nil, fmt.Errorf("the message names contract %s, but the contract is %s", cb.ContractID, c.ID)
	case e.Peer.Org == "" || o.OrgID != e.Peer.Org:
		return nil, fmt.Errorf("the contract is with %s, but came in the conversation of %s", o.OrgID, e.Peer.Org)
	case c.Buyer.AccountID != e.From || o.BuyerAccount != e.From || e.Peer.Account != e.From:
		return nil, fmt.Errorf("the contract is signed by %s, but was sent by %s", c.Buyer.AccountID, e.From)
	}
	info, err := pclient.New(a.base, dev.token, nil).Contract(context.Background(), c.ID)
	if err != nil {
		return nil, fmt.Errorf("kanal's registration of the contract: %w", err)
	}
	v := officeContractView{ContractID: c.ID, OfferID: o.OfferID, OrgName: o.OrgName, Buyer: e.Name, Items: o.Items, Currency: o.Currency,
		TotalCents: o.TotalCents, VATCents: o.VATCents, SignedAt: c.SignedAt, RegisteredAt: info.RegisteredAt}
	if v.Buyer == "" {
		v.Buyer = e.From
	}
	a.mu.Lock()
	for _, x := range a.entries {
		var pb kind.PaymentRequestBody
		if x.From == "me" && x.Kind == string(kind.PaymentRequest) && x.Conv == e.Conv && json.Unmarshal(x.Body, &pb) == nil && pb.ContractID == c.ID {
			v.PaymentID, v.PaymentStatus = pb.RequestID, payments.StatusOpen
		}
	}
	a.mu.Unlock()
	if v.PaymentID != "" {
		if st, err := a.signedStatus(v.PaymentID); err != nil {
			return nil, err
		} else if st != nil {
			v.PaymentStatus = st.Status
		}
	}
	return jsonString(v)
}

// sentPayment(messageID) shows a payment request this device sent:
// kanald's record compared with what was sent, and its status.
func (a *app) sentPayment(args []js.Value) (any, error) {
	id := args[0].String()
	var pb kind.PaymentRequestBody
	var e entry
	a.mu.Lock()
	for _, x := range a.entries {
		if x.ID == id && x.From == "me" && x.Kind == string(kind.PaymentRequest) {
			e = x
		}
	}
	a.mu.Unlock()
	if e.ID == "" || json.Unmarshal(e.Body, &pb) != nil {
		return nil, fmt.Errorf("no payment request %s has been sent from this device", id)
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	r, err := pclient.New(a.base, dev.token, nil).Request(context.Background(), pb.RequestID)
	if err != nil {
		return nil, err
	}
	if !sameRequest(r, &pb, e.Peer.Org, e.Peer.Account) {
		return nil, errRequestMismatch
	}
	v := viewOfRequest(r)
	return a.withSignedStatus(v)
}

// sameRequest compares kanald's record of a request with the message
// sent end to end, field by field.
func sameRequest(r *payments.Request, pb *kind.PaymentRequestBody, org, payer string) bool {
	return r.RequestID == pb.RequestID && r.OrgID == org && r.PayerAccount == payer && r.AmountCents == pb.AmountCents &&
		r.Currency == pb.Currency && r.Creditor == pb.Creditor && r.IBAN == pb.IBAN && r.BIC == pb.BIC &&
		r.Reference == pb.Reference && r.Purpose == pb.Purpose && r.DueDate == pb.DueDate && r.ContractID == pb.ContractID
}

func viewOfRequest(r *payments.Request) paymentView {
	return paymentView{RequestID: r.RequestID, OrgID: r.OrgID, AmountCents: r.AmountCents, PaidCents: r.PaidCents, Currency: r.Currency,
		Creditor: r.Creditor, IBAN: r.IBAN, BIC: r.BIC, Reference: r.Reference, Purpose: r.Purpose, DueDate: r.DueDate, Status: r.Status}
}

// withSignedStatus puts the status of a verified payment.status notice,
// if this device has one for the request, over kanald's record: the page
// believes a status other than open only from such a notice, and says so
// when it has only the record's word.
func (a *app) withSignedStatus(v paymentView) (any, error) {
	st, err := a.signedStatus(v.RequestID)
	if err != nil {
		return nil, err
	}
	if st != nil {
		v.Status, v.StatusSigned, v.StatusAt = st.Status, true, &st.At
	}
	return jsonString(v)
}

// ---- payment.status notices ----

// paidStatus is the newest payment.status notice this device accepted for
// one request, kept in the encrypted store.
type paidStatus struct {
	Status      string    `json:"status"`
	AmountCents int64     `json:"amount_cents"`
	At          time.Time `json:"at"` // the time the notary signed
	Notice      string    `json:"notice"`
}

func nameStatus(request string) string { return "app/payment/" + request + "/status" }

// statusRank orders a request's states along its lifecycle (open → paid |
// cancelled | expired, paid → refunded), for two notices signed in the
// same millisecond.
var statusRank = map[string]int{"open": 0, "paid": 1, "cancelled": 1, "expired": 1, "refunded": 2}

func (a *app) signedStatus(request string) (*paidStatus, error) {
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	b, err := store.Get(nameStatus(request))
	if errors.Is(err, mclient.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var st paidStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// paymentNotice takes a payment.status: only a notice the SDK verified
// (FromServer: signed by the deployment's notary for this device and the
// conversation it came in; anything else that claims to come from kanal
// never reaches here, and an end-to-end message of this kind from a person
// is not a status), and only for a payment request this device received
// or sent in that same conversation; an older notice than the one kept
// changes nothing. The receive loop calls it after the other messages of
// the batch are kept (a request and its status may arrive together). It
// reports whether in was a payment.status; a status it takes is kept,
// added to the conversation and passed to the page.
func (a *app) paymentNotice(in *mclient.Incoming, cb js.Value) bool {
	b, ok := in.Message.Body.(*kind.PaymentStatusBody)
	if !ok {
		return false
	}
	if !in.FromServer {
		return true // a person's word about a payment: not shown, not believed
	}
	var req *entry
	a.mu.Lock()
	for i := range a.entries {
		e := &a.entries[i]
		var pb kind.PaymentRequestBody
		if e.Kind == string(kind.PaymentRequest) && e.Conv == in.Conversation && json.Unmarshal(e.Body, &pb) == nil && pb.RequestID == b.RequestID {
			req = e
		}
	}
	var p peer
	if req != nil {
		p = req.Peer
	}
	a.mu.Unlock()
	if req == nil {
		return true // about no request of this conversation: misplaced, changes nothing
	}
	prev, err := a.signedStatus(b.RequestID)
	if err != nil {
		return true
	}
	if prev != nil && (in.ServerTime.Before(prev.At) || in.ServerTime.Equal(prev.At) && statusRank[b.Status] <= statusRank[prev.Status]) {
		return true
	}
	st := paidStatus{Status: b.Status, AmountCents: b.AmountCents, At: in.ServerTime, Notice: in.Message.ID}
	raw, _ := json.Marshal(st)
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if err := store.Put(nameStatus(b.RequestID), raw); err != nil {
		return true
	}
	body, _ := json.Marshal(b)
	e := entry{ID: in.Message.ID, Conv: in.Conversation, Peer: p, From: "kanal", Kind: string(kind.PaymentStatus),
		Text: fmt.Sprintf("%s %s %s", b.RequestID, b.Status, payments.Euro(b.AmountCents)), At: in.ServerTime.Format(time.RFC3339), Body: body}
	if err := a.keep(e); err != nil {
		return true
	}
	s, _ := jsonString(map[string]any{"payment": st, "request_id": b.RequestID, "entry": e})
	cb.Invoke(s)
	return true
}
