package miniapps

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/internal/web"
)

// The bridge: an app's backend, authenticated with its client credentials
// (HTTP Basic: app id and client secret), acts towards a citizen the app
// knows by a pairwise subject or a conversation handle. Each call needs
// the citizen's consent to its scope, is rate-limited per app and per
// citizen, and is written to the audit log.

// BridgePaymentRequest is the body of POST /v1/bridge/payment-requests.
type BridgePaymentRequest struct {
	Subject        string `json:"subject"`
	AmountCents    int64  `json:"amount_cents"`
	Purpose        string `json:"purpose"`
	Creditor       string `json:"creditor"` // the organisation's account holder
	IBAN           string `json:"iban"`
	BIC            string `json:"bic,omitempty"`
	DueDate        string `json:"due_date"` // YYYY-MM-DD
	IdempotencyKey string `json:"idempotency_key"`
}

// BridgeMessage is the body of POST /v1/bridge/messages.
type BridgeMessage struct {
	Conversation string `json:"conversation"` // the handle from the launch token
	Text         string `json:"text"`
}

// BridgeFormRequest is the body of POST /v1/bridge/form-requests.
type BridgeFormRequest struct {
	Conversation string `json:"conversation"` // the handle from the launch token
	TemplateID   string `json:"template_id"`
	Title        string `json:"title"`
}

// clientApp authenticates the app's backend.
func (s *Service) clientApp(r *http.Request) (*App, error) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		return nil, fmt.Errorf("miniapps.bridge: %w", ErrClient)
	}
	return s.checkSecret(r.Context(), id, secret)
}

// bridgeCheck checks the consent to scope and the rate limits, and
// returns the audit entry to write with the call.
func (s *Service) bridgeCheck(ctx context.Context, a *App, account, scope string) error {
	if !slices.Contains(a.Manifest.Scopes, scope) {
		return fmt.Errorf("miniapps.bridge: %w: the manifest does not ask for %s", ErrConsent, scope)
	}
	granted, err := s.granted(ctx, account, a)
	if err != nil {
		return err
	}
	if !slices.Contains(granted, scope) || !slices.Contains(granted, ScopeOpenID) {
		return fmt.Errorf("miniapps.bridge: %w: the citizen has not granted %s", ErrConsent, scope)
	}
	since := s.now().Unix() - 60
	var perApp, perCitizen int
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM miniapps_audit WHERE app_id = $1 AND action LIKE 'bridge.%' AND at > $2`, a.ID, since).Scan(&perApp); err != nil {
		return err
	}
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM miniapps_audit WHERE app_id = $1 AND account_id = $2 AND action LIKE 'bridge.%' AND at > $3`,
		a.ID, account, since).Scan(&perCitizen); err != nil {
		return err
	}
	if perApp >= BridgeRate || perCitizen >= BridgeRatePerCitizen {
		return fmt.Errorf("miniapps.bridge: %w: at most %d calls a minute per app and %d per citizen", ErrRateLimited, BridgeRate, BridgeRatePerCitizen)
	}
	return nil
}

// handleOf resolves a conversation handle the app was given.
func (s *Service) handleOf(ctx context.Context, appID, handle string) (account, conversation string, err error) {
	err = s.db.QueryRow(ctx, `SELECT account_id, conversation FROM miniapps_handles WHERE handle = $1 AND app_id = $2`, handle, appID).
		Scan(&account, &conversation)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("miniapps.bridge: %w: unknown conversation handle", ErrNotFound)
	}
	return account, conversation, err
}

func (s *Service) handleBridgePayment(w http.ResponseWriter, r *http.Request, _ Actor) error {
	a, err := s.clientApp(r)
	if err != nil {
		return err
	}
	var req BridgePaymentRequest
	if err := web.DecodeJSON(w, r, &req, MaxBody); err != nil {
		return err
	}
	if req.AmountCents <= 0 || req.AmountCents > 99999999999 || strings.TrimSpace(req.Purpose) == "" || utf8.RuneCountInString(req.Purpose) > 140 ||
		req.IdempotencyKey == "" || len(req.IdempotencyKey) > 64 {
		return invalid("amount_cents must be positive, purpose 1 to 140 characters, idempotency_key 1 to 64 bytes")
	}
	account, err := s.accountOf(r.Context(), &a.Manifest, req.Subject)
	if err != nil {
		return err
	}
	if err := s.bridgeCheck(r.Context(), a, account, ScopePaymentsRequest); err != nil {
		return err
	}
	if s.bridge.RequestPayment == nil {
		return fmt.Errorf("miniapps.bridge: %w: payments", ErrNotConfigured)
	}
	id, err := s.bridge.RequestPayment(r.Context(), PaymentAsk{AppID: a.ID, OrgID: a.OrgID, AccountID: account, AmountCents: req.AmountCents,
		Purpose: req.Purpose, Creditor: req.Creditor, IBAN: req.IBAN, BIC: req.BIC, DueDate: req.DueDate, Key: a.ID + ":" + req.IdempotencyKey})
	if err != nil {
		return err
	}
	if err := s.auditNow(r.Context(), s.now(), a.ID, account, "app:"+a.ID, "bridge.payment", fmt.Sprintf("request %s, %d cents", id, req.AmountCents)); err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, map[string]string{"payment_request": id})
	return nil
}

func (s *Service) handleBridgePost(w http.ResponseWriter, r *http.Request, _ Actor) error {
	a, err := s.clientApp(r)
	if err != nil {
		return err
	}
	var req BridgeMessage
	if err := web.DecodeJSON(w, r, &req, MaxBody); err != nil {
		return err
	}
	if strings.TrimSpace(req.Text) == "" || !utf8.ValidString(req.Text) || utf8.RuneCountInString(req.Text) > MaxPost {
		return invalid("text must be 1 to %d characters", MaxPost)
	}
	account, conv, err := s.handleOf(r.Context(), a.ID, req.Conversation)
	if err != nil {
		return err
	}
	if err := s.bridgeCheck(r.Context(), a, account, ScopeChatPost); err != nil {
		return err
	}
	if s.bridge.Post == nil {
		return fmt.Errorf("miniapps.bridge: %w: chat", ErrNotConfigured)
	}
	if err := s.bridge.Post(r.Context(), Post{AppID: a.ID, AppName: a.Manifest.Name, OrgID: a.OrgID, AccountID: account, Conversation: conv, Text: req.Text}); err != nil {
		return err
	}
	if err := s.auditNow(r.Context(), s.now(), a.ID, account, "app:"+a.ID, "bridge.post", fmt.Sprintf("%d characters", utf8.RuneCountInString(req.Text))); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleBridgeForm(w http.ResponseWriter, r *http.Request, _ Actor) error {
	a, err := s.clientApp(r)
	if err != nil {
		return err
	}
	var req BridgeFormRequest
	if err := web.DecodeJSON(w, r, &req, MaxBody); err != nil {
		return err
	}
	if req.TemplateID == "" || len(req.TemplateID) > 64 || strings.TrimSpace(req.Title) == "" || utf8.RuneCountInString(req.Title) > 200 {
		return invalid("template_id (1 to 64 bytes) and title (1 to 200 characters) are required")
	}
	account, conv, err := s.handleOf(r.Context(), a.ID, req.Conversation)
	if err != nil {
		return err
	}
	if err := s.bridgeCheck(r.Context(), a, account, ScopeFormsRequest); err != nil {
		return err
	}
	if s.bridge.RequestForm == nil {
		return fmt.Errorf("miniapps.bridge: %w: forms", ErrNotConfigured)
	}
	if err := s.bridge.RequestForm(r.Context(), FormAsk{AppID: a.ID, OrgID: a.OrgID, AccountID: account, Conversation: conv,
		TemplateID: req.TemplateID, Title: req.Title}); err != nil {
		return err
	}
	if err := s.auditNow(r.Context(), s.now(), a.ID, account, "app:"+a.ID, "bridge.form", req.TemplateID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) auditNow(ctx context.Context, at time.Time, appID, account, actor, action, detail string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error { return audit(ctx, tx, at, appID, account, actor, action, detail) })
}
