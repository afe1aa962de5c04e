package cases

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/kanal-server/kanal/internal/web"
)

// Problem types of the cases API.
var (
	TypeUnknownForm      = web.NewType("unknown-form")
	TypeFormWithdrawn    = web.NewType("template-withdrawn") // as the catalogue says it
	TypeTemplateMismatch = web.NewType("template-mismatch")
	TypeInvalidStatus    = web.NewType("invalid-status-change")
	TypeTooManyCases     = web.NewType("too-many-cases")
	TypeNoFeeAccount     = web.NewType("no-fee-account")
)

// Auth is how the HTTP edge authenticates; kanald wires identity's.
type Auth struct {
	// Session protects a route with a session.
	Session func(h http.Handler) http.Handler
	// Caller returns the session's actor.
	Caller func(ctx context.Context) (Actor, bool)
}

type route struct {
	pattern string
	h       func(w http.ResponseWriter, r *http.Request, a Actor) error
}

func (s *Service) routes() []route {
	return []route{
		{"POST /v1/orgs/{org}/cases", s.handleOpen},
		{"GET /v1/orgs/{org}/cases", s.handleList},
		{"GET /v1/cases/{id}", s.handleGet},
		{"POST /v1/cases/{id}/assign", s.handleAssign},
		{"POST /v1/cases/{id}/status", s.handleStatus},
		{"GET /v1/orgs/{org}/fee-account", s.handleFeeAccount},
		{"PUT /v1/orgs/{org}/fee-account", s.handleSetFeeAccount},
	}
}

// Routes lists the patterns Register adds; every one needs a session.
func (s *Service) Routes() []string {
	var out []string
	for _, r := range s.routes() {
		out = append(out, r.pattern)
	}
	return out
}

// Register adds the cases routes to mux.
func (s *Service) Register(mux *http.ServeMux, auth Auth) {
	for _, rt := range s.routes() {
		f := rt.h
		mux.Handle(rt.pattern, auth.Session(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, ok := auth.Caller(r.Context())
			if !ok {
				web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required", "a session is required"))
				return
			}
			if err := f(w, r, a); err != nil {
				web.Fail(w, r, s.log, "cases", err, problem)
			}
		})))
	}
}

func problem(err error) *web.Problem {
	var p *web.Problem
	if errors.As(err, &p) {
		return p
	}
	detail := web.Detail(err)
	// The detail says why; the problem's type and title say what.
	for _, e := range []error{ErrInvalid, ErrNotFound, ErrForbidden, ErrConflict} {
		if errors.Is(err, e) {
			detail = strings.TrimPrefix(detail, e.Error()+": ")
		}
	}
	switch {
	case errors.Is(err, ErrInvalid):
		return web.Errorf(http.StatusUnprocessableEntity, web.TypeValidation, "Invalid request", "%s", detail)
	case errors.Is(err, ErrNotFound):
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "Not found", "%s", detail)
	case errors.Is(err, ErrForbidden):
		return web.Errorf(http.StatusForbidden, web.TypeForbidden, "Forbidden", "%s", detail)
	case errors.Is(err, ErrUnknownTemplate):
		return web.Errorf(http.StatusUnprocessableEntity, TypeUnknownForm, "Unknown form", "%s", detail)
	case errors.Is(err, ErrWithdrawn):
		return web.Errorf(http.StatusGone, TypeFormWithdrawn, "Template withdrawn", "%s", detail)
	case errors.Is(err, ErrTemplateMismatch):
		return web.Errorf(http.StatusUnprocessableEntity, TypeTemplateMismatch, "Template does not match", "%s", detail)
	case errors.Is(err, ErrTransition):
		return web.Errorf(http.StatusConflict, TypeInvalidStatus, "Status change not allowed", "%s", detail)
	case errors.Is(err, ErrConflict):
		return web.Errorf(http.StatusConflict, web.TypeConflict, "Conflict", "%s", detail)
	case errors.Is(err, ErrNoFeeAccount):
		return web.Errorf(http.StatusConflict, TypeNoFeeAccount, "No account for fees", "%s", detail)
	case errors.Is(err, ErrTooMany):
		return web.Errorf(http.StatusTooManyRequests, TypeTooManyCases, "Too many open cases", "%s", detail)
	case errors.Is(err, ErrLevel):
		return web.Errorf(http.StatusForbidden, web.TypeInsufficientLevel, "Level of assurance too low", "%s", detail)
	}
	return nil
}

// CaseResponse is a case with its history.
type CaseResponse struct {
	Case   *Case   `json:"case"`
	Events []Event `json:"events,omitempty"`
}

// CaseList is a page of the inbox; Next is the cursor of the next page.
type CaseList struct {
	Cases []Case `json:"cases"`
	Next  string `json:"next,omitempty"`
}

// AssignRequest is the body of POST /v1/cases/{id}/assign.
type AssignRequest struct {
	Assignee string `json:"assignee"`
}

// StatusRequest is the body of POST /v1/cases/{id}/status.
type StatusRequest struct {
	Status string `json:"status"`
}

func (s *Service) handleOpen(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in OpenRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	c, replay, err := s.Open(r.Context(), a, r.PathValue("org"), in)
	if err != nil {
		return err
	}
	if replay {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	web.WriteJSON(w, http.StatusCreated, CaseResponse{Case: c})
	return nil
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request, a Actor) error {
	q := r.URL.Query()
	f := Filter{Status: q.Get("status"), Assignee: q.Get("assignee"), After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return invalid("limit must be a number")
		}
		f.Limit = n
	}
	cs, err := s.List(r.Context(), a, r.PathValue("org"), f)
	if err != nil {
		return err
	}
	out := CaseList{Cases: cs}
	if f.Limit == 0 {
		f.Limit = DefaultList
	}
	if len(cs) == f.Limit {
		out.Next = cs[len(cs)-1].ID
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request, a Actor) error {
	c, evs, err := s.Get(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, CaseResponse{Case: c, Events: evs})
	return nil
}

func (s *Service) handleAssign(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in AssignRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	c, err := s.Assign(r.Context(), a, r.PathValue("id"), in.Assignee)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, CaseResponse{Case: c})
	return nil
}

func (s *Service) handleStatus(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in StatusRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	c, err := s.SetStatus(r.Context(), a, r.PathValue("id"), in.Status)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, CaseResponse{Case: c})
	return nil
}

func (s *Service) handleFeeAccount(w http.ResponseWriter, r *http.Request, a Actor) error {
	acct, err := s.FeeAccount(r.Context(), a, r.PathValue("org"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, acct)
	return nil
}

func (s *Service) handleSetFeeAccount(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in FeeAccount
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	acct, err := s.SetFeeAccount(r.Context(), a, r.PathValue("org"), in)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, acct)
	return nil
}
