package miniapps

import (
	"context"
	"errors"
	"net/http"

	"github.com/kanal-server/kanal/internal/web"
)

// Problem types of the miniapps API.
var (
	TypeInvalidManifest = web.NewType("invalid-manifest")
	TypeAppSuspended    = web.NewType("app-suspended")
	TypeAppNotApproved  = web.NewType("app-not-approved")
	TypeConsentRequired = web.NewType("consent-required")
	TypeNotConfigured   = web.NewType("not-configured")
)

// Auth is how the HTTP edge authenticates; kanald wires identity's.
type Auth struct {
	// Session protects a route with a session of at least level low.
	Session func(h http.Handler) http.Handler
	// Operator protects a route with the operator token.
	Operator func(h http.Handler) http.Handler
	// Caller returns the session's actor, or the operator.
	Caller func(ctx context.Context) (Actor, bool)
}

type route struct {
	pattern string
	auth    string // "session", "operator", "client" (the app's backend), "public"
	h       func(w http.ResponseWriter, r *http.Request, a Actor) error
}

func (s *Service) routes() []route {
	return []route{
		{"POST /v1/apps", "session", s.handleRegister},
		{"GET /v1/apps", "session", s.handleApps},
		{"GET /v1/apps/{app}", "session", s.handleApp},
		{"POST /v1/apps/{app}/consent", "session", s.handleConsent},
		{"DELETE /v1/apps/{app}/consent", "session", s.handleRevoke},
		{"GET /v1/consents", "session", s.handleConsents},
		{"POST /v1/apps/{app}/open", "session", s.handleOpen},
		{"GET /v1/admin/apps", "operator", s.handleAdminApps},
		{"POST /v1/admin/apps/{app}/approve", "operator", s.handleApprove},
		{"POST /v1/admin/apps/{app}/suspend", "operator", s.handleSuspend},
		{"POST /v1/bridge/payment-requests", "client", s.handleBridgePayment},
		{"POST /v1/bridge/messages", "client", s.handleBridgePost},
		{"POST /v1/bridge/form-requests", "client", s.handleBridgeForm},
	}
}

// Register adds the miniapps routes to mux, and the OpenID Provider under
// /oidc/.
func (s *Service) Register(mux *http.ServeMux, auth Auth) error {
	for _, rt := range s.routes() {
		h := s.handler(rt.h, auth, rt.auth == "session" || rt.auth == "operator")
		switch rt.auth {
		case "session":
			h = auth.Session(h)
		case "operator":
			h = auth.Operator(h)
		}
		mux.Handle(rt.pattern, h)
	}
	return s.mountProvider(mux, auth)
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
			web.Fail(w, r, s.log, "miniapps", err, problem)
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
	case errors.Is(err, ErrInvalidManifest):
		return web.Errorf(http.StatusUnprocessableEntity, TypeInvalidManifest, "Manifest refused", "%s", detail)
	case errors.Is(err, ErrInvalid):
		return web.Errorf(http.StatusUnprocessableEntity, web.TypeValidation, "Invalid request", "%s", detail)
	case errors.Is(err, ErrNotFound):
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "Not found", "%s", detail)
	case errors.Is(err, ErrSuspended):
		return web.Errorf(http.StatusForbidden, TypeAppSuspended, "App suspended", "%s", detail)
	case errors.Is(err, ErrNotApproved):
		return web.Errorf(http.StatusForbidden, TypeAppNotApproved, "App not approved", "%s", detail)
	case errors.Is(err, ErrConsent):
		return web.Errorf(http.StatusForbidden, TypeConsentRequired, "Consent required", "%s", detail)
	case errors.Is(err, ErrForbidden):
		return web.Errorf(http.StatusForbidden, web.TypeForbidden, "Forbidden", "%s", detail)
	case errors.Is(err, ErrClient):
		return web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Client authentication failed", "the app id and client secret do not match")
	case errors.Is(err, ErrConflict):
		return web.Errorf(http.StatusConflict, web.TypeConflict, "Conflict", "%s", detail)
	case errors.Is(err, ErrRateLimited):
		return web.Errorf(http.StatusTooManyRequests, web.TypeRateLimited, "Too many requests", "%s", detail)
	case errors.Is(err, ErrLaunch):
		return web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Launch token refused", "%s", detail)
	case errors.Is(err, ErrNotConfigured):
		return web.Errorf(http.StatusNotImplemented, TypeNotConfigured, "Not configured", "%s", detail)
	}
	return nil
}

// RegisterRequest is the body of POST /v1/apps.
type RegisterRequest struct {
	Manifest string `json:"manifest"` // compact JWS
}

func (s *Service) handleRegister(w http.ResponseWriter, r *http.Request, a Actor) error {
	var req RegisterRequest
	if err := web.DecodeJSON(w, r, &req, MaxManifest+1024); err != nil {
		return err
	}
	out, err := s.RegisterManifest(r.Context(), a, req.Manifest)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if out.ClientSecret != "" {
		status = http.StatusCreated
	}
	web.WriteJSON(w, status, out)
	return nil
}

func (s *Service) handleApps(w http.ResponseWriter, r *http.Request, a Actor) error {
	apps, err := s.Apps(r.Context(), false)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"apps": apps})
	return nil
}

func (s *Service) handleApp(w http.ResponseWriter, r *http.Request, a Actor) error {
	app, err := s.activeApp(r.Context(), r.PathValue("app"))
	if err != nil {
		return err
	}
	app.Pending = nil
	web.WriteJSON(w, http.StatusOK, app)
	return nil
}

func (s *Service) handleAdminApps(w http.ResponseWriter, r *http.Request, a Actor) error {
	apps, err := s.Apps(r.Context(), true)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"apps": apps})
	return nil
}

func (s *Service) handleApprove(w http.ResponseWriter, r *http.Request, a Actor) error {
	app, err := s.Approve(r.Context(), a, r.PathValue("app"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, app)
	return nil
}

func (s *Service) handleSuspend(w http.ResponseWriter, r *http.Request, a Actor) error {
	app, err := s.Suspend(r.Context(), a, r.PathValue("app"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, app)
	return nil
}

func (s *Service) handleConsent(w http.ResponseWriter, r *http.Request, a Actor) error {
	var req ConsentRequest
	if err := web.DecodeJSON(w, r, &req, MaxBody); err != nil {
		return err
	}
	st, err := s.Consent(r.Context(), a, r.PathValue("app"), req.Grant)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (s *Service) handleRevoke(w http.ResponseWriter, r *http.Request, a Actor) error {
	st, err := s.Revoke(r.Context(), a, r.PathValue("app"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (s *Service) handleConsents(w http.ResponseWriter, r *http.Request, a Actor) error {
	list, err := s.Consents(r.Context(), a.AccountID)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"consents": list})
	return nil
}
