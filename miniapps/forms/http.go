package forms

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/kanal-server/kanal/internal/web"
)

// Problem types of the forms domain.
var (
	TypeInvalidTemplate   = web.NewType("invalid-template")
	TypeTemplateLineage   = web.NewType("template-lineage")
	TypeTemplateWithdrawn = web.NewType("template-withdrawn")
	TypeTemplateExists    = web.NewType("template-exists")
)

// Auth is how kanald protects the catalogue's routes.
type Auth struct {
	// Session protects a route with a session of at least level low.
	Session func(h http.Handler) http.Handler
	// Caller returns the session's account and device.
	Caller func(ctx context.Context) (Actor, bool)
}

// Routes are the catalogue's routes, each behind a session.
func Routes() []string {
	return []string{
		"POST /v1/forms/templates",
		"GET /v1/forms/templates",
		"GET /v1/forms/templates/{id}/{version}",
		"POST /v1/forms/templates/{id}/{version}/withdraw",
	}
}

// Register mounts the catalogue's routes on mux.
func (c *Catalogue) Register(mux *http.ServeMux, auth Auth) {
	hs := map[string]func(w http.ResponseWriter, r *http.Request, a Actor) error{
		"POST /v1/forms/templates":                         c.handlePublish,
		"GET /v1/forms/templates":                          c.handleList,
		"GET /v1/forms/templates/{id}/{version}":           c.handleGet,
		"POST /v1/forms/templates/{id}/{version}/withdraw": c.handleWithdraw,
	}
	for _, pattern := range Routes() {
		f := hs[pattern]
		mux.Handle(pattern, auth.Session(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, ok := auth.Caller(r.Context())
			if !ok || a.AccountID == "" {
				web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required", "a session is required"))
				return
			}
			if err := f(w, r, a); err != nil {
				web.Fail(w, r, c.log, "forms", err, problem)
			}
		})))
	}
}

// PublishRequest is the body of POST /v1/forms/templates: a signed
// template with its lineage.
type PublishRequest = Signed

func (c *Catalogue) handlePublish(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in PublishRequest
	if err := web.DecodeJSON(w, r, &in, MaxSigned+MaxSigned/3); err != nil {
		return err
	}
	e, err := c.Publish(r.Context(), a, in)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, e)
	return nil
}

// ListResponse is the answer of GET /v1/forms/templates.
type ListResponse struct {
	Templates []Summary `json:"templates"`
}

func (c *Catalogue) handleList(w http.ResponseWriter, r *http.Request, _ Actor) error {
	q := r.URL.Query()
	o := ListOptions{ID: q.Get("id"), OrgID: q.Get("org"), After: q.Get("after"), Withdrawn: q.Get("withdrawn") == "true"}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Bad request", "limit must be a number from 1 to %d", MaxListLimit)
		}
		o.Limit = n
	}
	list, err := c.List(r.Context(), o)
	if err != nil {
		return err
	}
	if list == nil {
		list = []Summary{}
	}
	web.WriteJSON(w, http.StatusOK, ListResponse{Templates: list})
	return nil
}

func (c *Catalogue) handleGet(w http.ResponseWriter, r *http.Request, _ Actor) error {
	e, err := c.Get(r.Context(), r.PathValue("id"), r.PathValue("version"), r.URL.Query().Get("withdrawn") == "true")
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, e)
	return nil
}

func (c *Catalogue) handleWithdraw(w http.ResponseWriter, r *http.Request, a Actor) error {
	s, err := c.Withdraw(r.Context(), a, r.PathValue("id"), r.PathValue("version"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, s)
	return nil
}

// problem maps a domain error to its problem, or nil for an internal one.
func problem(err error) *web.Problem {
	var p *web.Problem
	if errors.As(err, &p) {
		return p
	}
	detail := web.Detail(err)
	switch {
	case errors.Is(err, ErrNotFound):
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "Not found", "%s", detail)
	case errors.Is(err, ErrWithdrawn):
		return web.Errorf(http.StatusGone, TypeTemplateWithdrawn, "Template withdrawn", "%s", detail)
	case errors.Is(err, ErrForbidden):
		return web.Errorf(http.StatusForbidden, web.TypeForbidden, "Forbidden", "%s", detail)
	case errors.Is(err, ErrExists):
		return web.Errorf(http.StatusConflict, TypeTemplateExists, "Template version exists", "%s", detail)
	case errors.Is(err, ErrVersion):
		return web.Errorf(http.StatusConflict, web.TypeConflict, "Version not after the latest", "%s", detail)
	case errors.Is(err, ErrLineage):
		return web.Errorf(http.StatusUnprocessableEntity, TypeTemplateLineage, "Not descended from its parent", "%s", detail)
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrInvalid), errors.Is(err, ErrSignature), errors.Is(err, ErrCertificate):
		return web.Errorf(http.StatusUnprocessableEntity, TypeInvalidTemplate, "Template refused", "%s", detail)
	}
	return nil
}
