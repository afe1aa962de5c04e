package payments

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/payments/camt"
)

// Problem types of the payments API.
var (
	TypeIdempotencyKeyRequired = web.NewType("idempotency-key-required")
	TypeIdempotencyKeyReused   = web.NewType("idempotency-key-reused")
	TypeInvalidState           = web.NewType("invalid-state")
	TypeInvalidContract        = web.NewType("invalid-contract")
	TypeInvalidWebhook         = web.NewType("invalid-webhook")
	TypeInvalidStatement       = web.NewType("invalid-statement")
	TypeProviderFailed         = web.NewType("provider-failed")
	TypeNotConfigured          = web.NewType("not-configured")
)

// Auth is how the HTTP edge authenticates; kanald wires identity's.
type Auth struct {
	// Session protects a route with a session of at least level low; the
	// domain checks the levels it needs itself.
	Session func(h http.Handler) http.Handler
	// Operator protects a route with the operator token.
	Operator func(h http.Handler) http.Handler
	// Caller returns the session's actor, or the operator.
	Caller func(ctx context.Context) (Actor, bool)
}

// Route is one registered route and who may call it.
type Route struct {
	Pattern string
	Auth    string
}

type route struct {
	pattern string
	auth    string // "session", "operator", "signature"
	h       func(w http.ResponseWriter, r *http.Request, a Actor) error
}

func (s *Service) routes() []route {
	return []route{
		{"POST /v1/offers", "session", s.handleRegisterOffer},
		{"POST /v1/contracts", "session", s.handleRegisterContract},
		{"GET /v1/contracts/{id}", "session", s.handleContract},
		{"POST /v1/orgs/{org}/payment-requests", "session", s.handleCreate},
		{"GET /v1/orgs/{org}/payments/audit", "session", s.handleOrgAudit},
		{"GET /v1/payment-requests/{id}", "session", s.handleRequest},
		{"GET /v1/payment-requests/{id}/history", "session", s.handleHistory},
		{"GET /v1/payment-requests/{id}/epc", "session", s.handleEPC},
		{"POST /v1/payment-requests/{id}/cancel", "session", s.handleCancel},
		{"POST /v1/payment-requests/{id}/checkout", "session", s.handleCheckout},
		{"POST /v1/payment-requests/{id}/refunds", "session", s.handleRefund},
		{"POST /v1/payments/webhooks/{provider}", "signature", s.handleWebhook},
		{"POST /v1/admin/payments/statements", "operator", s.handleImport},
		{"GET /v1/admin/payments/bank-entries", "operator", s.handleEntries},
		{"POST /v1/admin/payments/bank-entries/{id}/resolve", "operator", s.handleResolve},
		{"GET /v1/admin/payments/books", "operator", s.handleBooks},
		{"GET /v1/admin/payments/audit", "operator", s.handleAudit},
	}
}

// Routes lists the routes Register adds.
func (s *Service) Routes() []Route {
	var out []Route
	for _, r := range s.routes() {
		out = append(out, Route{Pattern: r.pattern, Auth: r.auth})
	}
	return out
}

// Register adds the payments routes to mux.
func (s *Service) Register(mux *http.ServeMux, auth Auth) {
	for _, rt := range s.routes() {
		h := s.handler(rt.h, auth, rt.auth != "signature")
		switch rt.auth {
		case "session":
			h = auth.Session(h)
		case "operator":
			h = auth.Operator(h)
		}
		mux.Handle(rt.pattern, h)
	}
}

func (s *Service) handler(f func(w http.ResponseWriter, r *http.Request, a Actor) error, auth Auth, needActor bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Actor
		if needActor {
			var ok bool
			if a, ok = auth.Caller(r.Context()); !ok {
				web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required", "a session is required"))
				return
			}
		}
		if err := f(w, r, a); err != nil {
			web.Fail(w, r, s.log, "payments", err, problem)
		}
	})
}

// problem maps a domain error to its problem, or nil for an internal one.
func problem(err error) *web.Problem {
	var p *web.Problem
	if errors.As(err, &p) {
		return p
	}
	detail := web.Detail(err)
	switch {
	case errors.Is(err, ErrIdempotency):
		return web.Errorf(http.StatusUnprocessableEntity, TypeIdempotencyKeyReused, "Idempotency key reused",
			"this Idempotency-Key was used with other parameters")
	case errors.Is(err, ErrInvalid):
		return web.Errorf(http.StatusUnprocessableEntity, web.TypeValidation, "Invalid request", "%s", detail)
	case errors.Is(err, ErrNotFound):
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "Not found", "%s", detail)
	case errors.Is(err, ErrLevelHigh):
		return web.Errorf(http.StatusForbidden, web.TypeInsufficientLevel, "Insufficient level of assurance",
			"the offer's total is above the amount from which its seller requires level high: the buyer accepts it from a high session (kanal eid link)")
	case errors.Is(err, ErrLevel):
		return web.Errorf(http.StatusForbidden, web.TypeInsufficientLevel, "Insufficient level of assurance",
			"this needs a substantial session; log in with your password")
	case errors.Is(err, ErrForbidden):
		return web.Errorf(http.StatusForbidden, web.TypeForbidden, "Forbidden", "%s", detail)
	case errors.Is(err, ErrState):
		return web.Errorf(http.StatusConflict, TypeInvalidState, "Not allowed in this state", "%s", detail)
	case errors.Is(err, ErrDuplicate):
		return web.Errorf(http.StatusConflict, web.TypeConflict, "Conflict", "%s", detail)
	case errors.Is(err, ErrContract):
		return web.Errorf(http.StatusUnprocessableEntity, TypeInvalidContract, "Contract does not verify", "%s", detail)
	case errors.Is(err, ErrWebhook):
		return web.Errorf(http.StatusBadRequest, TypeInvalidWebhook, "Webhook refused", "%s", detail)
	case errors.Is(err, ErrStatement):
		return web.Errorf(http.StatusUnprocessableEntity, TypeInvalidStatement, "Bank statement refused", "%s", detail)
	case errors.Is(err, ErrNotConfigured):
		return web.Errorf(http.StatusNotImplemented, TypeNotConfigured, "Not configured", "%s", detail)
	case errors.Is(err, ErrProvider):
		// The provider's own answer is not shown: it may echo secrets.
		return web.Errorf(http.StatusBadGateway, TypeProviderFailed, "Payment provider failed", "try again later")
	}
	return nil
}

// idemKey reads the Idempotency-Key header every create needs.
func idemKey(r *http.Request) (string, error) {
	k := r.Header.Get(web.IdempotencyKeyHeader)
	if k == "" {
		return "", web.Errorf(http.StatusBadRequest, TypeIdempotencyKeyRequired, "Idempotency-Key required",
			"send an Idempotency-Key header (a random value per create; reuse it only to retry)")
	}
	if err := checkKey(k); err != nil {
		return "", err
	}
	return k, nil
}

func writeCreated(w http.ResponseWriter, v any, replay bool) {
	if replay {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	web.WriteJSON(w, http.StatusCreated, v)
}

// RegisterContractRequest is the body of POST /v1/contracts.
type RegisterContractRequest struct {
	Contract string `json:"contract"` // compact JWS
}

func (s *Service) handleRegisterContract(w http.ResponseWriter, r *http.Request, a Actor) error {
	key, err := idemKey(r)
	if err != nil {
		return err
	}
	var in RegisterContractRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	c, replay, err := s.RegisterContract(r.Context(), a, key, in.Contract)
	if err != nil {
		return err
	}
	writeCreated(w, c, replay)
	return nil
}

func (s *Service) handleRegisterOffer(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in RegisterOfferRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	o, replay, err := s.RegisterOffer(r.Context(), a, in.Offer)
	if err != nil {
		return err
	}
	writeCreated(w, o, replay)
	return nil
}

func (s *Service) handleContract(w http.ResponseWriter, r *http.Request, a Actor) error {
	c, err := s.Contract(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request, a Actor) error {
	key, err := idemKey(r)
	if err != nil {
		return err
	}
	var in CreateParams
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	out, replay, err := s.CreateRequest(r.Context(), a, r.PathValue("org"), key, in)
	if err != nil {
		return err
	}
	writeCreated(w, out, replay)
	return nil
}

func (s *Service) handleRequest(w http.ResponseWriter, r *http.Request, a Actor) error {
	out, err := s.Request(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// HistoryResponse is the answer of GET /v1/payment-requests/{id}/history.
type HistoryResponse struct {
	Transitions []Transition `json:"transitions"`
}

func (s *Service) handleHistory(w http.ResponseWriter, r *http.Request, a Actor) error {
	out, err := s.History(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, HistoryResponse{Transitions: out})
	return nil
}

// handleEPC answers the EPC payload as text/plain, or with ?format=png
// (&size=100..2000, default 400) its QR code.
func (s *Service) handleEPC(w http.ResponseWriter, r *http.Request, a Actor) error {
	size := 0
	switch r.URL.Query().Get("format") {
	case "", "text":
	case "png":
		size = 400
		if v := r.URL.Query().Get("size"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 100 || n > 2000 {
				return invalid("size must be 100..2000")
			}
			size = n
		}
	default:
		return invalid("format must be text or png")
	}
	payload, png, err := s.EPC(r.Context(), a, r.PathValue("id"), size)
	if err != nil {
		return err
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if size > 0 {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(png)
		return nil
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, payload)
	return nil
}

func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request, a Actor) error {
	out, err := s.Cancel(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleCheckout(w http.ResponseWriter, r *http.Request, a Actor) error {
	out, err := s.Checkout(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// RefundRequest is the body of POST /v1/payment-requests/{id}/refunds.
type RefundRequest struct {
	AmountCents int64 `json:"amount_cents"`
}

func (s *Service) handleRefund(w http.ResponseWriter, r *http.Request, a Actor) error {
	key, err := idemKey(r)
	if err != nil {
		return err
	}
	var in RefundRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	out, replay, err := s.Refund(r.Context(), a, r.PathValue("id"), key, in.AmountCents)
	if err != nil {
		return err
	}
	writeCreated(w, out, replay)
	return nil
}

// WebhookResponse acknowledges a webhook.
type WebhookResponse struct {
	Status string `json:"status"` // applied, duplicate or ignored
}

func (s *Service) handleWebhook(w http.ResponseWriter, r *http.Request, _ Actor) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		return web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Request too large", "a webhook is at most %d bytes", MaxWebhookBody)
	}
	req, dup, err := s.HandleWebhook(r.Context(), r.PathValue("provider"), r.Header.Get(SignatureHeader), body)
	if err != nil {
		return err
	}
	status := "applied"
	switch {
	case dup:
		status = "duplicate"
	case req == nil:
		status = "ignored"
	}
	web.WriteJSON(w, http.StatusOK, WebhookResponse{Status: status})
	return nil
}

func (s *Service) handleImport(w http.ResponseWriter, r *http.Request, a Actor) error {
	switch ct := r.Header.Get("Content-Type"); ct {
	case "application/xml", "text/xml", "application/xml; charset=utf-8", "text/xml; charset=utf-8":
	default:
		return web.Errorf(http.StatusUnsupportedMediaType, web.TypeUnsupportedMedia, "Unsupported media type", "send the camt.053 file as application/xml")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, camt.MaxSize))
	if err != nil {
		return web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Request too large", "a statement is at most %d bytes", camt.MaxSize)
	}
	out, err := s.ImportStatement(r.Context(), a, body)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// EntriesResponse lists bank entries.
type EntriesResponse struct {
	Entries []BankEntry `json:"entries"`
}

func (s *Service) handleEntries(w http.ResponseWriter, r *http.Request, a Actor) error {
	st := r.URL.Query().Get("status")
	if st == "" {
		st = EntryUnmatched
	}
	out, err := s.BankEntries(r.Context(), a, st)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, EntriesResponse{Entries: out})
	return nil
}

// ResolveRequest is the body of POST /v1/admin/payments/bank-entries/{id}/resolve.
type ResolveRequest struct {
	RequestID string `json:"request_id,omitempty"` // pay this open request with the entry
	Note      string `json:"note,omitempty"`       // required without request_id: how the money went back
}

func (s *Service) handleResolve(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in ResolveRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	out, err := s.Resolve(r.Context(), a, r.PathValue("id"), in.RequestID, in.Note)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleBooks(w http.ResponseWriter, r *http.Request, _ Actor) error {
	b, err := s.CheckBooks(r.Context())
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, b)
	return nil
}

// AuditResponse lists audit entries.
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
}

func (s *Service) auditPage(w http.ResponseWriter, r *http.Request, a Actor, org string) error {
	var after int64
	limit := MaxListLimit
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return invalid("after must be a non-negative integer")
		}
		after = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return invalid("limit must be 1..%d", MaxListLimit)
		}
		limit = n
	}
	out, err := s.Audit(r.Context(), a, org, after, limit)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, AuditResponse{Entries: out})
	return nil
}

func (s *Service) handleAudit(w http.ResponseWriter, r *http.Request, a Actor) error {
	return s.auditPage(w, r, a, r.URL.Query().Get("org"))
}

func (s *Service) handleOrgAudit(w http.ResponseWriter, r *http.Request, a Actor) error {
	if a.Level < ca.LevelSubstantial {
		return ErrLevel
	}
	return s.auditPage(w, r, a, r.PathValue("org"))
}
