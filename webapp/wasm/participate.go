//go:build js && wasm

package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"syscall/js"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/payments"
	pclient "github.com/kanal-server/kanal/payments/client"
	"github.com/kanal-server/kanal/payments/epc"
	"github.com/kanal-server/kanal/payments/jws"
	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// Taking part: a survey's ballot, an offer's countersignature and a
// payment request's EPC QR code, through the same SDK calls as kanal
// survey vote, kanal offer sign and kanal pay qr. The page (participate.js)
// only renders what these return.

// maxAnswersJSON bounds the answers the page hands over (a ballot of the
// largest survey is far smaller).
const maxAnswersJSON = 64 << 10

// The device keeps, per survey, the blind token until its ballot is
// counted (so that a lost connection can be retried with it) and then the
// receipt; per accepted offer, the contract's id.
func nameSurveyToken(id string) string   { return "app/survey/" + id + "/token" }
func nameSurveyReceipt(id string) string { return "app/survey/" + id + "/receipt" }
func nameContract(offer string) string   { return "app/offer/" + offer + "/contract" }

// participationBody is what an entry keeps of a message the page offers
// to act on: the typed body of a survey invitation, an offer, a payment
// request or (for an office) a contract. Other kinds keep none.
func participationBody(m *kind.Message) json.RawMessage {
	switch m.Body.(type) {
	case *kind.SurveyInviteBody, *kind.OfferBody, *kind.PaymentRequestBody, *kind.ContractBody:
		b, err := json.Marshal(m.Body)
		if err == nil {
			return b
		}
	}
	return nil
}

// received finds a message of kind k that this device received (not one
// it sent) and decodes its body into body.
func (a *app) received(id string, k kind.Kind, body any) (entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.entries {
		if e.ID == id && e.Kind == string(k) && e.From != "me" && len(e.Body) > 0 {
			return e, json.Unmarshal(e.Body, body)
		}
	}
	return entry{}, fmt.Errorf("no %s %s has been received", k, id)
}

// device is what the participation calls need of the unlocked device.
type device struct {
	st     *state
	store  *idbStore
	key    crypto.Signer
	token  string
	root   *x509.Certificate
	inters []*x509.Certificate // the root's issuing intermediates, if it is kept offline
	pool   *x509.CertPool      // the deployment CA and its intermediates
}

func (a *app) device() (*device, error) {
	a.mu.Lock()
	d := &device{st: a.st, store: a.store, key: a.key, token: a.token}
	a.mu.Unlock()
	if d.st == nil {
		return nil, errors.New("not unlocked")
	}
	root, inters, err := d.st.roots()
	if err != nil {
		return nil, err
	}
	d.root, d.inters = root, inters
	d.pool, err = ca.TrustPool(root, inters)
	return d, err
}

type surveyView struct {
	ID          string             `json:"id"`
	Title       string             `json:"title"`
	Description string             `json:"description,omitempty"`
	Questions   []surveys.Question `json:"questions"`
	Mode        string             `json:"mode"`
	OpensAt     time.Time          `json:"opens_at"`
	ClosesAt    time.Time          `json:"closes_at"`
	Status      string             `json:"status"`
	Receipt     *receiptView       `json:"receipt,omitempty"`
	Answerable  bool               `json:"answerable"`
}

type receiptView struct {
	Seq      int64     `json:"seq"`
	Hash     string    `json:"hash"` // hex, as the board shows it
	At       time.Time `json:"at"`
	Verified bool      `json:"verified"` // notary signature, board chain and the ballot on the board
}

// survey(messageID) fetches the survey a received invitation names and
// checks its organiser's signature against the deployment CA, as kanal
// survey vote does; with the receipt if this device has voted.
func (a *app) survey(args []js.Value) (any, error) {
	var inv kind.SurveyInviteBody
	if _, err := a.received(args[0].String(), kind.SurveyInvite, &inv); err != nil {
		return nil, err
	}
	ctx := context.Background()
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	api := sclient.New(a.base, nil).WithToken(dev.token)
	d, sv, err := api.Definition(ctx, inv.SurveyID, dev.pool)
	if err != nil {
		return nil, err
	}
	v := surveyView{ID: d.SurveyID, Title: d.Title, Description: d.Description, Questions: d.Questions, Mode: d.Mode,
		OpensAt: d.OpensAt, ClosesAt: d.ClosesAt, Status: sv.Status}
	if b, err := dev.store.Get(nameSurveyReceipt(d.SurveyID)); err == nil {
		var rec surveys.Receipt
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, err
		}
		v.Receipt = &receiptView{Seq: rec.Seq, Hash: fmt.Sprintf("%x", rec.Hash), At: rec.At,
			Verified: api.CheckReceipt(ctx, &rec, dev.pool) == nil}
	} else if !errors.Is(err, mclient.ErrNotFound) {
		return nil, err
	}
	now := time.Now()
	v.Answerable = v.Receipt == nil && !now.Before(d.OpensAt) && now.Before(d.ClosesAt)
	return jsonString(v)
}

// vote(messageID, answersJSON) casts the ballot as kanal survey vote does:
// the answers are checked first (a mistake must not cost the one token);
// for an anonymous survey the blind token is fetched with the session and
// kept in the encrypted store, and the ballot cast without a session; a
// named ballot goes with the session. The receipt is kept and then
// checked against the survey's board.
func (a *app) vote(args []js.Value) (any, error) {
	ctx := context.Background()
	var inv kind.SurveyInviteBody
	if _, err := a.received(args[0].String(), kind.SurveyInvite, &inv); err != nil {
		return nil, err
	}
	in := args[1].String()
	if len(in) > maxAnswersJSON {
		return nil, errors.New("the answers are too long")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(in), &raw); err != nil {
		return nil, fmt.Errorf("answers: %w", err)
	}
	answers := make([]any, len(raw))
	for i := range raw {
		answers[i] = raw[i]
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	api := sclient.New(a.base, nil).WithToken(dev.token)
	d, _, err := api.Definition(ctx, inv.SurveyID, dev.pool)
	if err != nil {
		return nil, err
	}
	if err := surveys.CheckAnswers(d, answers); err != nil {
		return nil, err
	}
	var rec *surveys.Receipt
	if d.Mode == surveys.ModeNamed {
		rec, err = api.CastNamed(ctx, d, dev.st.AccountID, answers)
	} else {
		tok := &surveys.Token{}
		if b, gerr := dev.store.Get(nameSurveyToken(d.SurveyID)); gerr == nil {
			if err := json.Unmarshal(b, tok); err != nil {
				return nil, fmt.Errorf("stored token: %w", err)
			}
		} else if !errors.Is(gerr, mclient.ErrNotFound) {
			return nil, gerr
		} else {
			if tok, err = api.Token(ctx, d); err != nil {
				return nil, err
			}
			b, _ := json.Marshal(tok)
			if err := dev.store.Put(nameSurveyToken(d.SurveyID), b); err != nil {
				return nil, err
			}
		}
		rec, err = api.Cast(ctx, d, tok, answers)
	}
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(rec)
	if err := dev.store.PutAll(map[string][]byte{nameSurveyReceipt(d.SurveyID): b}); err != nil {
		return nil, err
	}
	if d.Mode != surveys.ModeNamed {
		if err := dev.store.Delete(nameSurveyToken(d.SurveyID)); err != nil {
			return nil, err
		}
	}
	v := receiptView{Seq: rec.Seq, Hash: fmt.Sprintf("%x", rec.Hash), At: rec.At}
	if err := api.CheckReceipt(ctx, rec, dev.pool); err != nil {
		return nil, fmt.Errorf("the ballot was cast (entry %d), but its receipt does not check against the board: %w", rec.Seq, err)
	}
	v.Verified = true
	return jsonString(v)
}

type offerView struct {
	OfferID    string        `json:"offer_id"`
	OrgID      string        `json:"org_id"`
	OrgName    string        `json:"org_name"`
	Items      []jws.Item    `json:"items"`
	Currency   string        `json:"currency"`
	TotalCents int64         `json:"total_cents"`
	VATCents   int64         `json:"vat_cents"`
	Terms      string        `json:"terms,omitempty"`
	IssuedAt   time.Time     `json:"issued_at"`
	ValidUntil time.Time     `json:"valid_until"`
	State      string        `json:"state"` // open, expired, signed
	Contract   *contractView `json:"contract,omitempty"`
}

type contractView struct {
	ContractID   string    `json:"contract_id"`
	SignedAt     time.Time `json:"signed_at"`
	RegisteredAt time.Time `json:"registered_at"`
	TotalCents   int64     `json:"total_cents"`
}

// verifiedOffer verifies a received offer as kanal offer sign does: the
// seller's signature, certificates and membership up to the deployment
// CA, and that it is addressed to this account.
func (a *app) verifiedOffer(id string) (string, *jws.VerifiedOffer, error) {
	var ob kind.OfferBody
	e, err := a.received(id, kind.Offer, &ob)
	if err != nil {
		return "", nil, err
	}
	dev, err := a.device()
	if err != nil {
		return "", nil, err
	}
	vo, err := jws.VerifyOffer(ob.JWS, dev.pool)
	if err != nil {
		return "", nil, err
	}
	if vo.Offer.BuyerAccount != dev.st.AccountID {
		return "", nil, fmt.Errorf("the offer is addressed to %s, not to this account", vo.Offer.BuyerAccount)
	}
	if vo.Offer.OrgID != e.Peer.Org {
		return "", nil, fmt.Errorf("the offer of %s came in the conversation with %s", vo.Offer.OrgID, e.Peer.Org)
	}
	return ob.JWS, vo, nil
}

// offer(messageID) shows a received offer, and its contract if this
// device has countersigned it.
func (a *app) offer(args []js.Value) (any, error) {
	_, vo, err := a.verifiedOffer(args[0].String())
	if err != nil {
		return nil, err
	}
	o := vo.Offer
	v := offerView{OfferID: o.OfferID, OrgID: o.OrgID, OrgName: o.OrgName, Items: o.Items, Currency: o.Currency,
		TotalCents: o.TotalCents, VATCents: o.VATCents, Terms: o.Terms, IssuedAt: o.IssuedAt, ValidUntil: o.ValidUntil, State: "open"}
	if !time.Now().Before(o.ValidUntil) {
		v.State = "expired"
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	if b, err := dev.store.Get(nameContract(o.OfferID)); err == nil {
		c, err := pclient.New(a.base, dev.token, nil).Contract(context.Background(), string(b))
		if err != nil {
			return nil, err
		}
		v.State, v.Contract = "signed", &contractView{ContractID: c.ContractID, SignedAt: c.SignedAt, RegisteredAt: c.RegisteredAt, TotalCents: c.TotalCents}
	} else if !errors.Is(err, mclient.ErrNotFound) {
		return nil, err
	}
	return jsonString(v)
}

// acceptOffer(messageID, totalCents, password) countersigns a received
// offer, as kanal offer sign does after its "yes": the page passes the
// total the person confirmed, and an offer whose total is another is not
// signed. A countersignature needs level substantial (substantial below).
// The contract is registered with kanald and sent to the organisation;
// the substantial session is used for this alone.
func (a *app) acceptOffer(args []js.Value) (any, error) {
	ctx := context.Background()
	offerJWS, vo, err := a.verifiedOffer(args[0].String())
	if err != nil {
		return nil, err
	}
	confirmed, err := strconv.ParseInt(args[1].String(), 10, 64)
	if err != nil || confirmed != vo.Offer.TotalCents {
		return nil, fmt.Errorf("the confirmed amount is not the offer's total of %s: not signed", payments.Euro(vo.Offer.TotalCents))
	}
	if !time.Now().Before(vo.Offer.ValidUntil) {
		return nil, errors.New("the offer has expired: not signed")
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	token, certPEM, err := a.substantial(ctx, dev, args[2].String())
	if err != nil {
		return nil, err
	}
	devDER, err := certDER(certPEM)
	if err != nil {
		return nil, err
	}
	contract, err := pclient.Countersign(ctx, a.ident().WithToken(token), offerJWS, vo, jws.Buyer{Key: dev.key, DeviceCert: devDER}, dev.root, time.Now(), dev.inters...)
	if err != nil {
		return nil, err
	}
	info, _, err := pclient.New(a.base, token, nil).RegisterContract(ctx, jws.ContractID(contract), contract)
	if err != nil {
		return nil, fmt.Errorf("register the contract: %w", err)
	}
	if err := dev.store.Put(nameContract(vo.Offer.OfferID), []byte(info.ContractID)); err != nil {
		return nil, err
	}
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.ContractBody{ContractID: info.ContractID, JWS: contract})
	if err != nil {
		return nil, err
	}
	if _, err := mc.Send(ctx, mclient.Peer{OrgID: vo.Offer.OrgID}, m); err != nil {
		return nil, fmt.Errorf("contract %s is registered, but sending it to %s failed: %w", info.ContractID, vo.Offer.OrgName, err)
	}
	return a.offer(args[:1])
}

// substantial returns a session at level substantial and this device's
// certificate at that level: a countersignature needs both. kanald gives
// a login with the password the level of the device's certificate at
// most, and the browser enrols at level low (from the e-mail code alone);
// so a low certificate is first renewed, with the same key and the
// password, and kept; then the device logs in with the password. An
// account without a password gets this one as its first (kanald lets a
// session set the first password, never change one without the old).
func (a *app) substantial(ctx context.Context, dev *device, password string) (token, certPEM string, err error) {
	if password == "" {
		return "", "", errors.New("signing a contract needs the account password")
	}
	err = a.ident().WithToken(dev.token).SetPassword(ctx, password, "")
	var p *idclient.Problem
	if err != nil && !(errors.As(err, &p) && p.Type == string(identity.TypePasswordRequired)) {
		return "", "", err // a password kanald does not accept
	}
	id, err := checkCert(dev.st, dev.key)
	if err != nil {
		return "", "", err
	}
	st := dev.st
	if id.Level < ca.LevelSubstantial {
		res, err := a.ident().WithToken(dev.token).Renew(ctx, st.DeviceID, idclient.Renewal{Current: dev.key, Password: password})
		if err != nil {
			return "", "", fmt.Errorf("renew this device's certificate at level substantial: %w", err)
		}
		next := *st
		next.CertPEM = res.Certificate
		if id, err := checkCert(&next, dev.key); err != nil || id.Level < ca.LevelSubstantial {
			return "", "", fmt.Errorf("the renewed certificate is not this device's at level substantial (%v)", err)
		}
		b, _ := json.Marshal(next)
		if err := dev.store.Put(nameState, b); err != nil {
			return "", "", err
		}
		a.mu.Lock()
		a.st = &next
		a.mu.Unlock()
		st = &next
	}
	sess, err := a.ident().Login(ctx, st.DeviceID, dev.key, password)
	if err != nil {
		return "", "", fmt.Errorf("log in with the account password: %w", err)
	}
	return sess.Token, st.CertPEM, nil
}

func certDER(p string) ([]byte, error) {
	certs, err := ca.ParseCertificatesPEM([]byte(p))
	if err != nil || len(certs) == 0 {
		return nil, errors.New("device certificate: not PEM")
	}
	return certs[0].Raw, nil
}

type paymentView struct {
	RequestID   string `json:"request_id"`
	OrgID       string `json:"org_id"`
	AmountCents int64  `json:"amount_cents"`
	PaidCents   int64  `json:"paid_cents"`
	Currency    string `json:"currency"`
	Creditor    string `json:"creditor"`
	IBAN        string `json:"iban"`
	BIC         string `json:"bic,omitempty"`
	Reference   string `json:"reference"`
	Purpose     string `json:"purpose,omitempty"`
	DueDate     string `json:"due_date"`
	Status      string `json:"status"`
	// StatusSigned: Status is a verified payment.status notice's (office.go),
	// at StatusAt; otherwise it is kanald's record's.
	StatusSigned bool       `json:"status_signed,omitempty"`
	StatusAt     *time.Time `json:"status_at,omitempty"`
	EPC          string     `json:"epc,omitempty"`     // the EPC069-12 payload, while the request is open
	QR           string     `json:"qr,omitempty"`      // its QR code, an SVG data URL
	Modules      int        `json:"modules,omitempty"` // the QR code's width in modules, quiet zone included
}

// errRequestMismatch: the payment request the office sent end to end and
// kanald's record of it differ, so the page shows no QR code to pay.
var errRequestMismatch = errors.New("the payment request from the office does not match kanal's record of it: no QR code is shown; ask the office")

// payment(messageID) shows a received payment request: kanald's record
// (its status), checked against what the office sent end to end, and,
// while it is open, the EPC QR code made from it by the function that
// makes kanald's EPC answer, which kanal pay qr prints.
func (a *app) payment(args []js.Value) (any, error) {
	var pb kind.PaymentRequestBody
	e, err := a.received(args[0].String(), kind.PaymentRequest, &pb)
	if err != nil {
		return nil, err
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	if e.Org == "" {
		return nil, errors.New("the payment request does not come from a verified office")
	}
	r, err := pclient.New(a.base, dev.token, nil).Request(context.Background(), pb.RequestID)
	if err != nil {
		return nil, err
	}
	if !sameRequest(r, &pb, e.Peer.Org, dev.st.AccountID) {
		return nil, errRequestMismatch
	}
	v := viewOfRequest(r)
	st, err := a.signedStatus(r.RequestID)
	if err != nil {
		return nil, err
	}
	if st != nil {
		v.Status, v.StatusSigned, v.StatusAt = st.Status, true, &st.At
	}
	if v.Status == payments.StatusOpen {
		if v.EPC, err = epc.Payload(r.Transfer()); err != nil {
			return nil, err
		}
		svg, n, err := epc.SVG(r.Transfer())
		if err != nil {
			return nil, err
		}
		v.QR, v.Modules = "data:image/svg+xml;base64,"+base64.StdEncoding.EncodeToString([]byte(svg)), n
	}
	return jsonString(v)
}
